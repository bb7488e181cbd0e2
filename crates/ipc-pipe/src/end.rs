//! The two ends of an anonymous pipe, [`PipeReader`] and [`PipeWriter`], and the functions that
//! make a pipe: [`pipe`] and [`packet_pipe`].

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use ipc_core::fd::{Interest, SigpipeGuard, wait};
use ipc_core::stream::{Nowait, write_iov};
use ipc_core::{Blocked, Deadline, Detail, Error, ErrorKind, Result};
use rustix::fs::{FileType, OFlags, fcntl_getfl, fstat};
use rustix::io::{Errno, ReadWriteFlags};
use rustix::pipe::PipeFlags;

/// Creates a pipe: `pipe2(2)` with `O_CLOEXEC`, so neither end leaks into a program this
/// process executes unless it is handed over on purpose ([`ChildPipes`](crate::ChildPipes)).
///
/// Both ends are blocking. Bytes written to the [`PipeWriter`] are read, in order, from the
/// [`PipeReader`]; the kernel buffers up to the pipe's [capacity](PipeWriter::capacity) (64 KiB
/// by default). A write of at most [`PIPE_BUF`](crate::PIPE_BUF) bytes is atomic.
///
/// Errors: [`ErrorKind::LimitExceeded`] when this process is out of descriptors (naming
/// `RLIMIT_NOFILE` and its value), the system is (`/proc/sys/fs/file-max`), or an unprivileged
/// user's pipes hold all the pages `/proc/sys/fs/pipe-user-pages-hard` allows.
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = ipc_pipe::pipe()?;
/// writer.write_all(b"through the kernel")?;
/// drop(writer); // the reader sees end-of-file once every writer is closed
/// let mut got = String::new();
/// reader.read_to_string(&mut got)?;
/// assert_eq!(got, "through the kernel");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
/// - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
/// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)
#[doc(alias = "pipe2")]
pub fn pipe() -> Result<(PipeReader, PipeWriter)> {
    make(PipeFlags::CLOEXEC)
}

/// Creates a pipe in packet mode: `pipe2(2)` with `O_CLOEXEC | O_DIRECT`.
///
/// In packet mode every `write` of at most [`PIPE_BUF`](crate::PIPE_BUF) bytes is one packet,
/// and every `read` returns at most one packet: the kernel keeps the boundaries, with no framing
/// in between. A read into a buffer smaller than the packet returns the start of the packet and
/// **discards the rest**, so read with a buffer of `PIPE_BUF` bytes. A write larger than
/// `PIPE_BUF` is split into several packets; a zero-length write sends nothing. Several writers
/// and several readers may share the pipe: each packet goes whole to one reader. Packet mode
/// belongs to the write end ([`PipeWriter::is_packet_mode`]): a write end handed to another
/// process keeps writing packets.
///
/// Errors: as [`pipe`]; [`ErrorKind::Unsupported`] on kernels without packet mode (before 3.4).
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = ipc_pipe::packet_pipe()?;
/// writer.write_all(b"one")?;
/// writer.write_all(b"two")?;
/// let mut buf = [0; ipc_pipe::PIPE_BUF];
/// assert_eq!(reader.read(&mut buf)?, 3); // one packet per read, although 6 bytes are queued
/// assert_eq!(&buf[..3], b"one");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
/// - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html) (`O_DIRECT`)
#[doc(alias = "O_DIRECT")]
pub fn packet_pipe() -> Result<(PipeReader, PipeWriter)> {
    make(PipeFlags::CLOEXEC | PipeFlags::DIRECT)
}

fn make(flags: PipeFlags) -> Result<(PipeReader, PipeWriter)> {
    let packet = flags.contains(PipeFlags::DIRECT);
    let (r, w) = rustix::pipe::pipe_with(flags).map_err(|e| {
        let err = match e {
            Errno::INVAL if packet => Error::with_note(
                ErrorKind::Unsupported,
                "packet mode (O_DIRECT pipes) needs Linux 3.4 or later",
            )
            .with_source(e.into()),
            // pipe2(2) also says ENFILE when an unprivileged user's pipes reached their page
            // budget.
            Errno::NFILE if !rustix::process::geteuid().is_root() => {
                match crate::capacity::read_knob(crate::capacity::USER_PAGES_HARD_KNOB) {
                    Ok(hard) if hard > 0 => {
                        Error::limit(crate::capacity::USER_PAGES_HARD_KNOB, Some(hard))
                            .with_source(e.into())
                    }
                    _ => descriptor_error(e),
                }
            }
            e => descriptor_error(e),
        };
        tracing::debug!(error = %err, "pipe2 failed");
        err.in_op("pipe2")
    })?;
    tracing::trace!(
        reader = r.as_raw_fd(),
        writer = w.as_raw_fd(),
        packet,
        "pipe created"
    );
    let mut reader = PipeReader::from_fd(r);
    reader.packet = packet;
    Ok((reader, PipeWriter::from_fd(w)))
}

/// The error for a failed descriptor allocation, naming the limit that stopped it.
pub(crate) fn descriptor_error(e: Errno) -> Error {
    let limit = match e {
        Errno::MFILE => {
            let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            Error::limit("RLIMIT_NOFILE", lim.current)
        }
        Errno::NFILE => Error::limit(
            crate::capacity::FILE_MAX_KNOB,
            crate::capacity::read_knob(crate::capacity::FILE_MAX_KNOB).ok(),
        ),
        e => return Error::from(e),
    };
    limit.with_source(e.into())
}

/// How a pipe is named in errors: `pipe:[inode]`, as `/proc/<pid>/fd` shows it, so the pipe
/// can be found with `ls -l /proc/*/fd`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Label {
    ino: Option<u64>,
    fd: RawFd,
}

impl Label {
    /// The label of `fd` (`fstat(2)`; done once per end, not per error).
    pub(crate) fn of(fd: BorrowedFd<'_>) -> Label {
        Label {
            ino: fstat(fd).ok().map(|st| st.st_ino),
            fd: fd.as_raw_fd(),
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ino {
            Some(ino) => write!(f, "pipe:[{ino}]"),
            None => write!(f, "pipe (fd {})", self.fd),
        }
    }
}

/// Logs an error at DEBUG as it is returned.
pub(crate) fn logged(err: Error) -> Error {
    tracing::debug!(error = %err, "pipe operation failed");
    err
}

/// Why a bounded I/O loop stopped without moving any bytes.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The OS said no.
    Os(Errno),
    /// The deadline passed (or was `Now`) before the descriptor was ready.
    Expired,
}

impl Stop {
    /// The error a caller of a `*_deadline` method sees.
    pub(crate) fn into_error(
        self,
        deadline: Deadline,
        blocked: Blocked,
        op: &'static str,
        label: Label,
    ) -> Error {
        match self {
            Stop::Expired => deadline.expired_error(blocked).in_op(op).on(label),
            Stop::Os(e) => {
                let mut err = Error::from(e);
                if e == Errno::PIPE {
                    err = err.with_detail(Detail::Note("no process has the read end open".into()));
                }
                logged(err.in_op(op).on(label))
            }
        }
    }

    /// The error a caller of `Read`/`Write` sees: the plain OS error, as `std::fs::File` gives.
    fn into_io(self) -> io::Error {
        match self {
            Stop::Os(e) => e.into(),
            Stop::Expired => io::ErrorKind::TimedOut.into(),
        }
    }
}

/// `true` if it is worth trying again: `deadline` allows waiting and every `(fd, interest)`
/// became ready before it passed.
pub(crate) fn wait_all(
    ready: &[(BorrowedFd<'_>, Interest)],
    deadline: Deadline,
) -> Result<bool, Stop> {
    if deadline == Deadline::Now {
        return Ok(false);
    }
    for &(fd, interest) in ready {
        if !wait(fd, interest, deadline).map_err(Stop::Os)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One read of up to `buf.len()` bytes, waiting for data until `deadline`.
fn read_until(
    fd: BorrowedFd<'_>,
    nowait: &mut Nowait,
    buf: &mut [u8],
    deadline: Deadline,
) -> Result<usize, Stop> {
    loop {
        let r = nowait.attempt(fd, deadline, |nowait| {
            if nowait {
                let iov = &mut [IoSliceMut::new(&mut *buf)];
                // Offset -1 (u64::MAX): the current position, as read(2) uses.
                rustix::io::preadv2(fd, iov, u64::MAX, ReadWriteFlags::NOWAIT)
            } else {
                rustix::io::read(fd, &mut *buf)
            }
        });
        match r {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if !wait_all(&[(fd, Interest::Readable)], deadline)? {
                    return Err(Stop::Expired);
                }
            }
            Err(e) => return Err(Stop::Os(e)),
        }
    }
}

/// Writes as much of `buf` as goes in before `deadline`; fails only if nothing went in.
fn write_until(
    fd: BorrowedFd<'_>,
    nowait: &mut Nowait,
    sigpipe: SigpipeGuard,
    buf: &[u8],
    deadline: Deadline,
) -> Result<usize, Stop> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &buf[done..];
        let r = nowait.attempt(fd, deadline, |nowait| {
            write_iov(sigpipe, fd, &[IoSlice::new(rest)], nowait)
        });
        let stop = match r {
            Ok(n) => {
                done += n;
                continue;
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => match wait_all(&[(fd, Interest::Writable)], deadline) {
                Ok(true) => continue,
                Ok(false) => Stop::Expired,
                Err(stop) => stop,
            },
            Err(e) => Stop::Os(e),
        };
        // Like write(2): a count if anything went in, the error otherwise (a later call sees
        // it again).
        return if done > 0 { Ok(done) } else { Err(stop) };
    }
    Ok(done)
}

/// The read end of a pipe.
///
/// A byte stream: [`Read`] reads what is there (at least one byte, waiting for it), and returns
/// 0 at end-of-file, which comes once every write end, in every process, is closed and the pipe
/// is drained. [`read_deadline`](PipeReader::read_deadline) bounds the wait. For messages, turn
/// it into a [`PipeReceiver`](crate::PipeReceiver) with
/// [`into_receiver`](PipeReader::into_receiver).
///
/// Made by [`pipe`], [`packet_pipe`], [`duplex`](crate::duplex), from any `OwnedFd`
/// (`From<OwnedFd>`, unchecked) or checked with [`adopt`](PipeReader::adopt) and
/// [`from_inherited`](PipeReader::from_inherited).
#[derive(Debug)]
pub struct PipeReader {
    fd: OwnedFd,
    nowait: Nowait,
    /// Set through [`PipeReader::set_nonblocking`]: `Read` then returns `WouldBlock`.
    nonblocking: bool,
    /// The pipe's inode, for errors.
    ino: Option<u64>,
    /// For `splice_to`, which can write into a pipe or socket whose reader is gone.
    pub(crate) sigpipe: SigpipeGuard,
    /// Made by [`packet_pipe`]. (The kernel does not show packet mode on a read end: a reader
    /// that came another way is not known to be one.)
    pub(crate) packet: bool,
}

/// The write end of a pipe.
///
/// A byte stream: [`Write`] writes all it is given, waiting for room (a write of at most
/// [`PIPE_BUF`](crate::PIPE_BUF) bytes goes in whole, never interleaved with other writers').
/// [`write_deadline`](PipeWriter::write_deadline) bounds the wait. For messages, turn it into a
/// [`PipeSender`](crate::PipeSender) with [`into_sender`](PipeWriter::into_sender).
///
/// A write when no process has the read end open fails with `EPIPE`
/// ([`io::ErrorKind::BrokenPipe`], or [`ErrorKind::Disconnected`]); the process is never killed
/// by `SIGPIPE`, whatever its disposition (see [`SigpipeGuard`]; the disposition is read when
/// the end is made, so a program that sets `SIGPIPE` to `SIG_DFL` does so before making its
/// ends).
#[derive(Debug)]
pub struct PipeWriter {
    fd: OwnedFd,
    nowait: Nowait,
    /// Set through [`PipeWriter::set_nonblocking`]: `Write` then returns `WouldBlock`.
    nonblocking: bool,
    /// The pipe's inode, for errors.
    ino: Option<u64>,
    pub(crate) sigpipe: SigpipeGuard,
}

/// Which end a checked adoption expects.
#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

/// Checks that `fd` is a pipe (or FIFO) open for `side`.
fn check_end(fd: BorrowedFd<'_>, side: Side) -> Result<()> {
    let what = || Label::of(fd);
    let st = fstat(fd).map_err(|e| Error::from(e).in_op("fstat").on(what()))?;
    let ty = FileType::from_raw_mode(st.st_mode);
    if ty != FileType::Fifo {
        return Err(logged(
            Error::with_note(
                ErrorKind::WrongType,
                format!("fd {} is a {ty:?}, not a pipe", fd.as_raw_fd()),
            )
            .in_op("adopt"),
        ));
    }
    let mode =
        fcntl_getfl(fd).map_err(|e| Error::from(e).in_op("fcntl").on(what()))? & OFlags::RWMODE;
    let (ok, want) = match side {
        Side::Read => (mode != OFlags::WRONLY, "read"),
        Side::Write => (mode != OFlags::RDONLY, "write"),
    };
    if !ok {
        return Err(logged(
            Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "fd {} is not open for {want}ing: it is the other end",
                    fd.as_raw_fd()
                ),
            )
            .in_op("adopt")
            .on(what()),
        ));
    }
    Ok(())
}

/// What both ends share: descriptor traits and the descriptor-level controls.
macro_rules! common {
    ($T:ident, $side:expr, $other:literal $(, $extra:ident)*) => {
        impl $T {
            fn from_fd(fd: OwnedFd) -> $T {
                // A descriptor that cannot be queried is treated as blocking; its first bounded
                // call reports the real problem.
                let nonblocking = ipc_core::fd::is_nonblocking(&fd).unwrap_or(false);
                $T {
                    ino: Label::of(fd.as_fd()).ino,
                    nowait: if nonblocking {
                        Nowait::Descriptor
                    } else {
                        Nowait::PerCall
                    },
                    nonblocking,
                    sigpipe: SigpipeGuard::detect(),
                    fd,
                    $($extra: false,)*
                }
            }

            /// How this pipe is named in errors.
            pub(crate) fn label(&self) -> Label {
                Label {
                    ino: self.ino,
                    fd: self.fd.as_raw_fd(),
                }
            }

            /// Takes `fd` after checking that it is a pipe (`fstat(2)`: a FIFO qualifies) open
            #[doc = concat!("for ", $other, " (`fcntl(F_GETFL)`).")]
            ///
            /// Errors: [`ErrorKind::WrongType`] when it is not a pipe, or is the other end;
            /// the descriptor is closed. `From<OwnedFd>` takes it unchecked.
            ///
            /// # References
            /// - [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
            pub fn adopt(fd: OwnedFd) -> Result<$T> {
                check_end(fd.as_fd(), $side)?;
                Ok($T::from_fd(fd))
            }

            /// In a child process: adopts the end the parent handed over under `name`
            /// ([`ChildPipes::pass`](crate::ChildPipes::pass), or `ipc_core::inherit::ChildFds`),
            #[doc = concat!("checking that it is a pipe open for ", $other, " (see [`adopt`](", stringify!($T), "::adopt)).")]
            ///
            /// The descriptor becomes close-on-exec again, so it does not leak further.
            ///
            /// Errors: [`ErrorKind::NotFound`] when the parent passed nothing under `name`;
            /// [`ErrorKind::AlreadyExists`] when it was taken already; [`ErrorKind::WrongType`]
            /// as for `adopt`.
            ///
            /// # References
            /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
            ///   (`F_SETFD`, `FD_CLOEXEC`), [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
            pub fn from_inherited(name: &str) -> Result<$T> {
                let fd = ipc_core::inherit::take(name)?;
                tracing::trace!(name, fd = fd.as_raw_fd(), "inherited pipe end adopted");
                $T::adopt(fd).map_err(|e| e.in_op(format!("adopt inherited fd {name:?}")))
            }

            /// Another descriptor for this end (`fcntl(F_DUPFD_CLOEXEC)`): for example one per
            /// thread, or one to hand to a child while keeping this one.
            ///
            /// Errors: [`ErrorKind::LimitExceeded`] when out of descriptors.
            ///
            /// # References
            /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
            #[doc(alias = "dup")]
            pub fn try_clone(&self) -> Result<$T> {
                let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(|e| {
                    logged(descriptor_error(e).in_op("dup").on(self.label()))
                })?;
                Ok($T::from_fd(fd))
            }

            /// Sets or clears `O_NONBLOCK` (`fcntl(F_SETFL)`). When set,
            #[doc = concat!("`", stringify!($T), "`'s `Read`/`Write` fail with `io::ErrorKind::WouldBlock` instead of waiting;")]
            /// the `*_deadline` methods wait as their deadline says either way.
            ///
            /// The flag belongs to the open file description: every descriptor for this end,
            /// in every process (a child it was handed to), sees the change.
            ///
            /// # References
            /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
            #[doc(alias = "O_NONBLOCK")]
            pub fn set_nonblocking(&mut self, nonblocking: bool) -> Result<()> {
                ipc_core::fd::set_nonblocking(&self.fd, nonblocking).map_err(|e| {
                    logged(Error::from(e).in_op("fcntl(F_SETFL)").on(self.label()))
                })?;
                self.nonblocking = nonblocking;
                self.nowait = if nonblocking {
                    Nowait::Descriptor
                } else {
                    Nowait::PerCall
                };
                Ok(())
            }

            /// Whether `O_NONBLOCK` is set on the open file description now
            /// (`fcntl(F_GETFL)`), by this process or another.
            ///
            /// # References
            /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
            pub fn is_nonblocking(&self) -> Result<bool> {
                ipc_core::fd::is_nonblocking(&self.fd).map_err(|e| {
                    logged(Error::from(e).in_op("fcntl(F_GETFL)").on(self.label()))
                })
            }

            /// Bytes in the pipe, written and not yet read (`ioctl(FIONREAD)`).
            ///
            /// # References
            /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)
            #[doc(alias = "FIONREAD")]
            pub fn queued_bytes(&self) -> Result<usize> {
                let n = rustix::io::ioctl_fionread(&self.fd).map_err(|e| {
                    logged(Error::from(e).in_op("ioctl(FIONREAD)").on(self.label()))
                })?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }

            /// The pipe's capacity in bytes (`fcntl(F_GETPIPE_SZ)`): how much it holds before
            /// a writer waits. 64 KiB unless changed.
            ///
            /// The kernel keeps the bytes in pages, and a write of at most `PIPE_BUF` bytes that
            /// does not fit in the last page's free space starts a new one: many small writes
            /// can fill the pipe before `capacity` bytes are in it.
            ///
            /// # References
            /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
            #[doc(alias = "F_GETPIPE_SZ")]
            pub fn capacity(&self) -> Result<usize> {
                crate::capacity::get(self.fd.as_fd(), self.label())
            }

            /// Sets the pipe's capacity (`fcntl(F_SETPIPE_SZ)`) and returns the capacity it got:
            /// the kernel rounds up to a power-of-two number of pages.
            ///
            /// Errors:
            /// - [`ErrorKind::LimitExceeded`] above `/proc/sys/fs/pipe-max-size`, naming the
            ///   knob and its value. The check is made for every caller, root included: the
            ///   kernel lets a process with `CAP_SYS_RESOURCE` go above the knob, this method
            ///   does not, so a program behaves the same whoever runs it. (To go above it,
            ///   raise the knob, or call `rustix::pipe::fcntl_setpipe_size` yourself.) Also
            ///   when an unprivileged user's pipes exceed `/proc/sys/fs/pipe-user-pages-hard`.
            /// - [`ErrorKind::InvalidInput`] when the pipe holds more data than the requested
            ///   capacity (`EBUSY`): drain it first.
            ///
            /// ```
            /// let (reader, _writer) = ipc_pipe::pipe()?;
            /// assert_eq!(reader.set_capacity(100_000)?, 128 * 1024);
            /// assert_eq!(reader.capacity()?, 128 * 1024);
            ///
            /// let max = ipc_pipe::max_capacity()?;
            /// let err = reader.set_capacity(max + 1).unwrap_err();
            /// assert_eq!(err.kind(), ipc_core::ErrorKind::LimitExceeded);
            /// assert!(err.to_string().contains("/proc/sys/fs/pipe-max-size is"), "{err}");
            /// # Ok::<(), ipc_core::Error>(())
            /// ```
            ///
            /// # References
            /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
            /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html), "/proc files"
            #[doc(alias = "F_SETPIPE_SZ")]
            pub fn set_capacity(&self, bytes: usize) -> Result<usize> {
                crate::capacity::set(self.fd.as_fd(), bytes, self.label())
            }
        }

        impl AsFd for $T {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }

        impl AsRawFd for $T {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }

        impl From<OwnedFd> for $T {
            /// Takes `fd` as it is, unchecked (see `adopt` for the checked form). Its
            /// `O_NONBLOCK` flag is read once, here.
            fn from(fd: OwnedFd) -> $T {
                $T::from_fd(fd)
            }
        }

        impl From<$T> for OwnedFd {
            fn from(end: $T) -> OwnedFd {
                end.fd
            }
        }

        impl From<$T> for std::process::Stdio {
            /// Hands the end to a child as its stdin, stdout or stderr
            /// (`Command::stdin(end)`). Note that the `Command` keeps it open until the
            /// `Command` is dropped; [`ChildPipes`](crate::ChildPipes) closes it at spawn.
            fn from(end: $T) -> std::process::Stdio {
                std::process::Stdio::from(end.fd)
            }
        }
    };
}

common!(PipeReader, Side::Read, "reading", packet);
common!(PipeWriter, Side::Write, "writing");

impl PipeReader {
    /// Reads what is in the pipe into `buf`, waiting for data until `deadline`; returns the
    /// number of bytes read, 0 at end-of-file (every write end closed and the pipe drained) or
    /// when `buf` is empty.
    ///
    /// The wait uses `preadv2(RWF_NOWAIT)` and `poll(2)`, so the `O_NONBLOCK` flag, which other
    /// processes holding this end share, is left alone (on kernels without `RWF_NOWAIT` for
    /// pipes it is set once). It works the same whether the end is non-blocking or not.
    ///
    /// Errors: [`ErrorKind::WouldBlock`] (empty) for [`Deadline::Now`] and
    /// [`ErrorKind::TimedOut`] for a deadline that passed, with nothing read.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipc_core::{Deadline, ErrorKind};
    ///
    /// let (mut reader, writer) = ipc_pipe::pipe()?;
    /// let mut buf = [0; 16];
    /// let e = reader.read_deadline(&mut buf, Deadline::after(Duration::from_millis(10)));
    /// assert_eq!(e.unwrap_err().kind(), ErrorKind::TimedOut);
    /// drop(writer);
    /// assert_eq!(reader.read_deadline(&mut buf, Deadline::Now)?, 0); // end-of-file
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    ///
    /// # References
    /// - [`read(2)`](https://man7.org/linux/man-pages/man2/read.2.html),
    ///   [`preadv2(2)`](https://man7.org/linux/man-pages/man2/preadv2.2.html),
    ///   [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
    #[doc(alias = "read", alias = "preadv2")]
    pub fn read_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        read_until(self.fd.as_fd(), &mut self.nowait, buf, deadline)
            .map_err(|s| s.into_error(deadline, Blocked::Empty, "read", self.label()))
    }
}

impl Read for PipeReader {
    /// `read(2)`: waits for data unless the end was made non-blocking; 0 at end-of-file.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.nonblocking {
            return rustix::io::read(&self.fd, buf).map_err(io::Error::from);
        }
        read_until(self.fd.as_fd(), &mut self.nowait, buf, Deadline::Never).map_err(Stop::into_io)
    }
}

impl PipeWriter {
    /// Whether this end writes packets (`O_DIRECT`, see [`packet_pipe`]), by
    /// `fcntl(F_GETFL)`.
    ///
    /// Packet mode belongs to the write end: each write through it becomes packets, and the
    /// read end (whose flags do not show it) returns one packet per read.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    pub fn is_packet_mode(&self) -> Result<bool> {
        let flags = fcntl_getfl(&self.fd)
            .map_err(|e| logged(Error::from(e).in_op("fcntl(F_GETFL)").on(self.label())))?;
        Ok(flags.contains(OFlags::DIRECT))
    }

    /// Writes as much of `buf` as goes into the pipe before `deadline`, waiting for room; returns
    /// the number of bytes written: all of `buf`, or fewer if the deadline passed (or the reader
    /// went away) after some went in.
    ///
    /// A `buf` of at most [`PIPE_BUF`](crate::PIPE_BUF) bytes goes in whole or not at all. The
    /// wait uses `pwritev2(RWF_NOWAIT)` and `poll(2)` (see
    /// [`PipeReader::read_deadline`]). Never raises `SIGPIPE`.
    ///
    /// Errors, with nothing written: [`ErrorKind::WouldBlock`] (full) for [`Deadline::Now`],
    /// [`ErrorKind::TimedOut`] for a deadline that passed, [`ErrorKind::Disconnected`] when no
    /// process has the read end open (`EPIPE`).
    ///
    /// ```
    /// use ipc_core::{Deadline, ErrorKind};
    ///
    /// let (reader, mut writer) = ipc_pipe::pipe()?;
    /// let big = vec![7u8; 1 << 20];
    /// // The pipe holds 64 KiB: a non-waiting write puts in what fits.
    /// let n = writer.write_deadline(&big, Deadline::Now)?;
    /// assert_eq!(n, reader.capacity()?);
    /// let e = writer.write_deadline(b"more", Deadline::Now).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::WouldBlock);
    /// drop(reader);
    /// let e = writer.write_deadline(b"more", Deadline::Never).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Disconnected);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    ///
    /// # References
    /// - [`write(2)`](https://man7.org/linux/man-pages/man2/write.2.html),
    ///   [`pwritev2(2)`](https://man7.org/linux/man-pages/man2/pwritev2.2.html),
    ///   [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
    #[doc(alias = "write", alias = "pwritev2")]
    pub fn write_deadline(&mut self, buf: &[u8], deadline: Deadline) -> Result<usize> {
        write_until(
            self.fd.as_fd(),
            &mut self.nowait,
            self.sigpipe,
            buf,
            deadline,
        )
        .map_err(|s| s.into_error(deadline, Blocked::Full, "write", self.label()))
    }
}

impl Write for PipeWriter {
    /// `write(2)` without `SIGPIPE`: writes all of `buf`, waiting for room, unless the end was
    /// made non-blocking. `EPIPE` (no reader) is `io::ErrorKind::BrokenPipe`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.nonblocking {
            return self
                .sigpipe
                .write(self.fd.as_fd(), buf)
                .map_err(io::Error::from);
        }
        write_until(
            self.fd.as_fd(),
            &mut self.nowait,
            self.sigpipe,
            buf,
            Deadline::Never,
        )
        .map_err(Stop::into_io)
    }

    /// Nothing to do: writes go straight to the kernel.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ends_are_close_on_exec_and_blocking() {
        let (r, w) = pipe().unwrap();
        for fd in [r.as_fd(), w.as_fd()] {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
        assert!(!r.is_nonblocking().unwrap());
        assert!(!w.is_packet_mode().unwrap());
        assert!(packet_pipe().unwrap().1.is_packet_mode().unwrap());
    }

    #[test]
    fn bounded_calls_leave_o_nonblock_alone() {
        // RWF_NOWAIT works on pipes here, so no fallback to O_NONBLOCK: the flag, which a child
        // holding the same end would share, stays as it was.
        let (mut r, mut w) = pipe().unwrap();
        let d = Deadline::after(Duration::from_millis(1));
        assert_eq!(
            r.read_deadline(&mut [0; 4], d).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        assert_eq!(w.write_deadline(b"abc", Deadline::Now).unwrap(), 3);
        assert_eq!(r.read_deadline(&mut [0; 4], Deadline::Now).unwrap(), 3);
        assert!(!r.is_nonblocking().unwrap());
        assert!(!w.is_nonblocking().unwrap());
    }

    #[test]
    fn nonblocking_read_and_write_say_would_block() {
        let (mut r, mut w) = pipe().unwrap();
        r.set_nonblocking(true).unwrap();
        assert!(r.is_nonblocking().unwrap());
        let e = r.read(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        w.set_nonblocking(true).unwrap();
        let cap = w.capacity().unwrap();
        assert_eq!(w.write(&vec![1; cap + 10]).unwrap(), cap);
        assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // The deadline methods still wait as told.
        assert_eq!(
            w.write_deadline(b"x", Deadline::after(Duration::from_millis(5)))
                .unwrap_err()
                .kind(),
            ErrorKind::TimedOut
        );
        let mut buf = vec![0; cap];
        assert_eq!(r.read_deadline(&mut buf, Deadline::Never).unwrap(), cap);
    }

    #[test]
    fn a_bounded_write_wakes_when_a_reader_makes_room() {
        let (mut r, mut w) = pipe().unwrap();
        let cap = w.capacity().unwrap();
        w.write_all(&vec![0; cap]).unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = vec![0; cap];
            let mut got = 0;
            while got < cap + 3 {
                got += r.read(&mut buf).unwrap();
            }
            got
        });
        let n = w
            .write_deadline(b"abc", Deadline::after(Duration::from_secs(60)))
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(t.join().unwrap(), cap + 3);
    }

    #[test]
    fn write_without_reader_is_broken_pipe_and_disconnected() {
        let (r, mut w) = pipe().unwrap();
        drop(r);
        assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let e = w.write_deadline(b"x", Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(e.to_string().contains("pipe:["), "{e}");
    }

    #[test]
    fn adopt_checks_type_and_direction() {
        let (r, w) = pipe().unwrap();
        let e = PipeReader::adopt(OwnedFd::from(w)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);
        assert!(e.to_string().contains("other end"), "{e}");
        let r = PipeReader::adopt(OwnedFd::from(r)).unwrap();
        let e = PipeWriter::adopt(OwnedFd::from(r)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let e = PipeReader::adopt(OwnedFd::from(file)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);
        assert!(e.to_string().contains("not a pipe"), "{e}");
    }

    #[test]
    fn clones_share_the_pipe() {
        let (mut r, w) = pipe().unwrap();
        let mut w2 = w.try_clone().unwrap();
        drop(w);
        w2.write_all(b"hi").unwrap();
        assert_eq!(w2.queued_bytes().unwrap(), 2);
        drop(w2);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
    }
}
