//! The one pipe end of the workspace, [`PipeEnd<D>`], generic over its direction
//! ([`Reading`] or [`Writing`]): what `ipc-pipe` returns for an anonymous pipe and `ipc-fifo`
//! for a FIFO opened at a path. Reads and writes with deadlines, non-blocking mode, capacity,
//! queued bytes, the fd traits, `SIGPIPE`-free writes and the message endpoints over it are
//! written here once.
//!
//! A pipe and a FIFO are the same kernel object once open (`S_IFIFO`, one buffer, `PIPE_BUF`
//! atomicity, end-of-file when the last writer closes, `EPIPE` when the last reader does); what
//! differs is how an end is obtained (`pipe2(2)` or a path-safe `open(2)`), which is what the
//! two mechanism crates add. An end opened at a path remembers it ([`PipeEnd::path`]) and names
//! it in errors; a FIFO reader may hold a write end of its own so that it does not see
//! end-of-file between writers ([`PipeReader::keep_open_with`]).
//!
//! ```
//! use std::io::{Read, Write};
//! use ipc_core::pipe::{self, PipeReader, PipeWriter};
//!
//! let (mut r, mut w): (PipeReader, PipeWriter) = pipe::pair(false)?;
//! w.write_all(b"one buffer, two ends")?;
//! drop(w);
//! let mut s = String::new();
//! r.read_to_string(&mut s)?;
//! assert_eq!(s, "one buffer, two ends");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::{FileType, OFlags, fcntl_getfl, fstat};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use crate::fd::{Interest, Nowait, SigpipeGuard, Stop, read_buf, retry, write_iov};
use crate::frame::{MAX_ATOMIC_PAYLOAD, PIPE_BUF};
use crate::stream::{FrameMode, FrameReceiver, FrameSender};
use crate::{Blocked, Deadline, Error, ErrorKind, Result, knob};

/// The kernel knob that caps the pages all pipes of one unprivileged user may use:
/// `/proc/sys/fs/pipe-user-pages-hard` (0 = no limit).
pub const USER_PAGES_HARD: &str = "/proc/sys/fs/pipe-user-pages-hard";

/// The pipe slots (pages) a stream sender asks for when its largest frame is longer than a page:
/// twice the 16 of a default pipe ([`PipeWriter::fit_frame`]).
///
/// The kernel merges only a write's sub-page remainder into the last page, so a frame of a page
/// and a bit (a 4096-byte message behind its 4-byte length prefix) takes one and a half slots
/// on average, and k pages and a bit take k + 1/2: in 16 slots a stream of 4096-byte messages
/// holds 10 or 11 frames where a raw loop's pipe holds 16 messages, and its writer and reader
/// wake each other more often. 32 slots hold at least as many such frames as 16 hold raw
/// messages of k pages, for every k.
pub const STREAM_SLOTS: usize = 32;

/// The kernel knob past which an unprivileged user's new pipes get 2 pages and no pipe of that
/// user may grow: `/proc/sys/fs/pipe-user-pages-soft` (0 = no limit).
pub const USER_PAGES_SOFT: &str = "/proc/sys/fs/pipe-user-pages-soft";

/// The system-wide limit on open files: `/proc/sys/fs/file-max`.
pub const FILE_MAX: &str = "/proc/sys/fs/file-max";

mod sealed {
    pub trait Sealed {}
}

/// The direction of a [`PipeEnd`]: [`Reading`] or [`Writing`] (sealed).
pub trait Direction: sealed::Sealed + fmt::Debug + Send + Sync + 'static {
    /// `"reading"` or `"writing"`, for messages.
    const NAME: &'static str;
    /// `"PipeReader"` or `"PipeWriter"`, for `Debug`.
    const TYPE: &'static str;
    /// Whether an open mode (`O_RDONLY`, `O_WRONLY`, `O_RDWR`) allows this direction.
    fn allows(mode: OFlags) -> bool;
}

/// The read direction: a [`PipeEnd<Reading>`] is a [`PipeReader`].
#[derive(Clone, Copy, Debug)]
pub struct Reading;

/// The write direction: a [`PipeEnd<Writing>`] is a [`PipeWriter`].
#[derive(Clone, Copy, Debug)]
pub struct Writing;

impl sealed::Sealed for Reading {}
impl sealed::Sealed for Writing {}

impl Direction for Reading {
    const NAME: &'static str = "reading";
    const TYPE: &'static str = "PipeReader";
    fn allows(mode: OFlags) -> bool {
        mode & OFlags::RWMODE != OFlags::WRONLY
    }
}

impl Direction for Writing {
    const NAME: &'static str = "writing";
    const TYPE: &'static str = "PipeWriter";
    fn allows(mode: OFlags) -> bool {
        mode & OFlags::RWMODE != OFlags::RDONLY
    }
}

/// The read end of a pipe or FIFO.
///
/// A byte stream: [`Read`](io::Read) reads what is there (at least one byte, waiting for it
/// unless the end is non-blocking) and returns 0 at end-of-file, which comes once every write
/// end, in every process, is closed and the pipe is drained.
/// [`read_deadline`](PipeReader::read_deadline) bounds the wait. For messages, turn it into a
/// receiver with [`into_receiver`](PipeReader::into_receiver).
pub type PipeReader = PipeEnd<Reading>;

/// The write end of a pipe or FIFO.
///
/// A byte stream: [`Write`](io::Write) writes all it is given, waiting for room unless the end
/// is non-blocking (a write of at most [`PIPE_BUF`] bytes goes in whole, never interleaved with
/// other writers'). [`write_deadline`](PipeWriter::write_deadline) bounds the wait, and
/// [`write_atomic`](PipeWriter::write_atomic) makes the atomicity a checked promise. For
/// messages, turn it into a sender with [`into_sender`](PipeWriter::into_sender).
///
/// A write when no process has the read end open fails with `EPIPE`
/// ([`io::ErrorKind::BrokenPipe`], or [`ErrorKind::Disconnected`]); the process is never killed
/// by `SIGPIPE`, whatever its disposition (see [`SigpipeGuard`]; the disposition is read when
/// the end is made, so a program that sets `SIGPIPE` to `SIG_DFL` does so before making its
/// ends).
pub type PipeWriter = PipeEnd<Writing>;

/// One end of a pipe or FIFO, reading or writing as `D` says: see [`PipeReader`] and
/// [`PipeWriter`].
///
/// Made by `ipc_pipe::pipe` (or [`pair`]), by `ipc_fifo`'s opens ([`PipeEnd::opened_at`]),
/// from any `OwnedFd` (`From<OwnedFd>`, unchecked) or checked with [`adopt`](PipeEnd::adopt)
/// and [`from_inherited`](PipeEnd::from_inherited).
pub struct PipeEnd<D: Direction> {
    fd: OwnedFd,
    /// How bounded calls avoid blocking (`RWF_NOWAIT` or `O_NONBLOCK`).
    nowait: Nowait,
    /// Set through [`PipeEnd::set_nonblocking`]: `Read`/`Write` then return `WouldBlock`.
    nonblocking: AtomicBool,
    /// The name errors use, formatted once: `pipe:[inode]`, or the path it was opened at.
    label: Arc<str>,
    sigpipe: SigpipeGuard,
    /// Read end of a packet-mode pipe (the kernel does not show packet mode on a read end).
    packet: bool,
    /// Where it was opened, for an end opened at a path (a FIFO).
    origin: Option<Box<Origin>>,
    _direction: PhantomData<D>,
}

/// What an end opened at a path keeps of it, and a reader's keep-open write end.
struct Origin {
    path: Option<PathBuf>,
    /// A write end held by a reader so that it does not see end-of-file between writers
    /// ([`PipeReader::keep_open_with`]). Behind a lock so it can be let go of through a shared
    /// reference (a receiver lends only those).
    keepalive: Mutex<Option<OwnedFd>>,
}

impl<D: Direction> fmt::Debug for PipeEnd<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(D::TYPE);
        d.field("fd", &self.fd.as_raw_fd())
            .field("name", &self.label)
            .field("nonblocking", &self.nonblocking.load(Ordering::Relaxed));
        if self.packet {
            d.field("packet", &true);
        }
        if let Some(o) = &self.origin {
            d.field("path", &o.path)
                .field("keeps_open", &self.keepalive().is_some());
        }
        d.finish()
    }
}

/// Creates a pipe: `pipe2(2)` with `O_CLOEXEC`, and `O_DIRECT` (packet mode) if `packet`.
/// `ipc_pipe::pipe` and `ipc_pipe::packet_pipe` document what the ends do.
///
/// Errors: [`ErrorKind::LimitExceeded`] when this process is out of descriptors (naming
/// `RLIMIT_NOFILE` and its value), the system is ([`FILE_MAX`]), or an unprivileged user's
/// pipes hold all the pages [`USER_PAGES_HARD`] allows; [`ErrorKind::Unsupported`] for packet
/// mode on kernels before 3.4.
///
/// # References
/// - [`pipe(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
#[doc(alias = "pipe2")]
pub fn pair(packet: bool) -> Result<(PipeReader, PipeWriter)> {
    let flags = if packet {
        PipeFlags::CLOEXEC | PipeFlags::DIRECT
    } else {
        PipeFlags::CLOEXEC
    };
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
                match knob::read(USER_PAGES_HARD) {
                    Some(hard) if hard > 0 => {
                        Error::limit(USER_PAGES_HARD, Some(hard)).with_source(e.into())
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
    let mut reader = PipeReader::from(r);
    reader.packet = packet;
    Ok((reader, PipeWriter::from(w)))
}

/// The error for a failed descriptor allocation (`EMFILE`, `ENFILE`), naming the limit that
/// stopped it; other errnos as they are.
pub fn descriptor_error(e: Errno) -> Error {
    let limit = match e {
        Errno::MFILE => {
            let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            Error::limit("RLIMIT_NOFILE", lim.current)
        }
        Errno::NFILE => knob::limit_error(FILE_MAX),
        e => return Error::from(e),
    };
    limit.with_source(e.into())
}

/// The largest capacity an unprivileged process may give a pipe: the value of
/// `/proc/sys/fs/pipe-max-size` ([`knob::PIPE_MAX_SIZE`]), read now. A process with
/// `CAP_SYS_RESOURCE` may go above it (see [`PipeEnd::set_capacity`]).
///
/// Errors: [`ErrorKind::NotFound`] when the knob cannot be read (no `/proc`).
///
/// # References
/// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html), "/proc files"
#[doc(alias = "pipe-max-size")]
pub fn max_capacity() -> Result<usize> {
    knob::read(knob::PIPE_MAX_SIZE)
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
        .ok_or_else(|| {
            Error::with_note(
                ErrorKind::NotFound,
                "cannot read the knob (is /proc mounted?)",
            )
            .in_op("read")
            .on(knob::PIPE_MAX_SIZE)
        })
}

/// The capacity the kernel makes of a request for `bytes`: one page at least, else the next
/// power of two (`round_pipe_size` in `fs/pipe.c`).
pub fn rounded_capacity(bytes: usize) -> u64 {
    let page = rustix::param::page_size() as u64;
    let bytes = bytes as u64;
    if bytes <= page {
        page
    } else {
        bytes.checked_next_power_of_two().unwrap_or(u64::MAX)
    }
}

/// The name of an anonymous pipe in errors: `pipe:[inode]`, as `/proc/<pid>/fd` shows it, so
/// the pipe can be found with `ls -l /proc/*/fd` (`fstat(2)`, once per end).
fn pipe_label(fd: BorrowedFd<'_>) -> Arc<str> {
    match fstat(fd) {
        Ok(st) => format!("pipe:[{}]", st.st_ino).into(),
        Err(_) => format!("pipe (fd {})", fd.as_raw_fd()).into(),
    }
}

/// Checks that `fd` is a pipe or FIFO open for `D`.
fn check_end<D: Direction>(fd: BorrowedFd<'_>) -> Result<()> {
    let st = fstat(fd).map_err(|e| Error::from(e).in_op("fstat").on(pipe_label(fd)))?;
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
    let mode = fcntl_getfl(fd).map_err(|e| Error::from(e).in_op("fcntl").on(pipe_label(fd)))?;
    if !D::allows(mode) {
        return Err(logged(
            Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "fd {} is not open for {}: it is the other end",
                    fd.as_raw_fd(),
                    D::NAME
                ),
            )
            .in_op("adopt")
            .on(pipe_label(fd)),
        ));
    }
    Ok(())
}

/// Logs an error at DEBUG as it is returned.
fn logged(err: Error) -> Error {
    tracing::debug!(error = %err, "pipe operation failed");
    err
}

/// A failed `Read`/`Write` as an `io::Error`: bare for what callers branch on in loops
/// (would-block, interrupted, timed out), otherwise an [`Error`] naming the pipe.
fn io_error(stop: Stop, op: &'static str, label: &Arc<str>) -> io::Error {
    match stop {
        Stop::Expired => io::ErrorKind::TimedOut.into(),
        Stop::Os(e @ (Errno::AGAIN | Errno::INTR)) => e.into(),
        Stop::Os(e) => Error::from(e).in_op(op).on_shared(label).into(),
    }
}

impl<D: Direction> PipeEnd<D> {
    fn with_label(fd: OwnedFd, label: Arc<str>) -> PipeEnd<D> {
        // A descriptor that cannot be queried is treated as blocking; its first bounded call
        // reports the real problem.
        let nonblocking = crate::fd::is_nonblocking(&fd).unwrap_or(false);
        PipeEnd {
            fd,
            nowait: Nowait::default(),
            nonblocking: AtomicBool::new(nonblocking),
            label,
            sigpipe: SigpipeGuard::detect(),
            packet: false,
            origin: None,
            _direction: PhantomData,
        }
    }

    /// Maps an errno of `op` on this end to an error naming it (logged at DEBUG).
    fn os_error(&self, op: &'static str) -> impl Fn(Errno) -> Error + '_ {
        move |e| logged(Error::from(e).in_op(op).on_shared(&self.label))
    }

    /// An end opened at `path` (a FIFO, by `ipc_fifo`): errors name the path, and
    /// [`path`](PipeEnd::path) returns it. Nothing is checked; `O_NONBLOCK` is read once.
    pub fn opened_at(fd: OwnedFd, path: PathBuf) -> PipeEnd<D> {
        let mut end = PipeEnd::with_label(fd, path.display().to_string().into());
        end.origin = Some(Box::new(Origin {
            path: Some(path),
            keepalive: Mutex::new(None),
        }));
        end
    }

    /// The path it was opened at: `Some` for a FIFO opened by path, `None` for an anonymous
    /// pipe or an adopted descriptor.
    pub fn path(&self) -> Option<&Path> {
        self.origin.as_ref().and_then(|o| o.path.as_deref())
    }

    /// How the end is named in errors: `pipe:[inode]` (as `/proc/<pid>/fd` shows it), or the
    /// path it was opened at. Shared: errors take a reference count, not a copy.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// How writes through this end avoid `SIGPIPE` (read when the end was made).
    pub fn sigpipe(&self) -> SigpipeGuard {
        self.sigpipe
    }

    /// Takes `fd` after checking that it is a pipe (`fstat(2)`: a FIFO qualifies) open for
    /// this end's direction (`fcntl(F_GETFL)`).
    ///
    /// Errors: [`ErrorKind::WrongType`] when it is not a pipe, or is the other end; the
    /// descriptor is closed. `From<OwnedFd>` takes it unchecked.
    ///
    /// # References
    /// - [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
    pub fn adopt(fd: OwnedFd) -> Result<PipeEnd<D>> {
        check_end::<D>(fd.as_fd())?;
        Ok(PipeEnd::from(fd))
    }

    /// In a child process: adopts the end the parent handed over under `name`
    /// (`ipc_pipe::ChildPipes::pass`, or [`ChildFds`](crate::inherit::ChildFds)), checking that
    /// it is a pipe open for this end's direction (see [`adopt`](PipeEnd::adopt)).
    ///
    /// The descriptor becomes close-on-exec again, so it does not leak further. It is checked
    /// before it is adopted ([`take_checked`](crate::inherit::take_checked)): one of the wrong
    /// type, which a mistaken list may name, is left open and untouched rather than closed.
    ///
    /// Errors: [`ErrorKind::NotFound`] when the parent passed nothing under `name`;
    /// [`ErrorKind::AlreadyExists`] when it was taken already; [`ErrorKind::WrongType`] as for
    /// `adopt`.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html) (`F_SETFD`,
    ///   `FD_CLOEXEC`), [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
    pub fn from_inherited(name: &str) -> Result<PipeEnd<D>> {
        let fd = crate::inherit::take_checked(name, check_end::<D>)
            .map_err(|e| e.in_op(format!("adopt inherited fd {name:?}")))?;
        tracing::trace!(name, fd = fd.as_raw_fd(), "inherited pipe end adopted");
        Ok(PipeEnd::from(fd))
    }

    /// Another descriptor for this end (`fcntl(F_DUPFD_CLOEXEC)`): for example one per thread,
    /// or one to hand to a child while keeping this one. It shares the open file description
    /// (and so the `O_NONBLOCK` flag); a keep-open write end is not duplicated.
    ///
    /// Errors: [`ErrorKind::LimitExceeded`] when out of descriptors.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    #[doc(alias = "dup")]
    pub fn try_clone(&self) -> Result<PipeEnd<D>> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| logged(descriptor_error(e).in_op("dup").on_shared(&self.label)))?;
        let mut end = PipeEnd::with_label(fd, Arc::clone(&self.label));
        end.packet = self.packet;
        end.origin = self.origin.as_ref().map(|o| {
            Box::new(Origin {
                path: o.path.clone(),
                keepalive: Mutex::new(None),
            })
        });
        Ok(end)
    }

    /// Sets or clears `O_NONBLOCK` (`fcntl(F_SETFL)`). When set, `Read`/`Write` fail with
    /// `io::ErrorKind::WouldBlock` instead of waiting; the `*_deadline` methods wait as their
    /// deadline says either way.
    ///
    /// The flag belongs to the open file description: every descriptor for this end, in every
    /// process (a child it was handed to, a `dup`), sees the change. Each `open` of a FIFO has
    /// its own.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    #[doc(alias = "O_NONBLOCK", alias = "fcntl")]
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        // Where the kernel lacks `RWF_NOWAIT` for pipes, the calls with a deadline rely on the
        // flag (`Nowait::in_fallback`): it stays set, and `Read`/`Write` wait by polling.
        let flag = nonblocking || self.nowait.in_fallback();
        crate::fd::set_nonblocking(&self.fd, flag).map_err(self.os_error("fcntl(F_SETFL)"))?;
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `O_NONBLOCK` is set on the open file description now (`fcntl(F_GETFL)`), by
    /// this process or another.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    pub fn is_nonblocking(&self) -> Result<bool> {
        crate::fd::is_nonblocking(&self.fd).map_err(self.os_error("fcntl(F_GETFL)"))
    }

    /// Bytes in the pipe, written and not yet read (`ioctl(FIONREAD)`).
    ///
    /// # References
    /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html)
    #[doc(alias = "FIONREAD")]
    pub fn queued_bytes(&self) -> Result<usize> {
        let n = rustix::io::ioctl_fionread(&self.fd).map_err(self.os_error("ioctl(FIONREAD)"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The pipe's capacity in bytes (`fcntl(F_GETPIPE_SZ)`): how much it holds before a writer
    /// waits. 64 KiB unless changed.
    ///
    /// The kernel keeps the bytes in pages, and a write of at most `PIPE_BUF` bytes that does
    /// not fit in the last page's free space starts a new one: many small writes can fill the
    /// pipe before `capacity` bytes are in it.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    #[doc(alias = "F_GETPIPE_SZ")]
    pub fn capacity(&self) -> Result<usize> {
        rustix::pipe::fcntl_getpipe_size(&self.fd).map_err(self.os_error("fcntl(F_GETPIPE_SZ)"))
    }

    /// Sets the pipe's capacity (`fcntl(F_SETPIPE_SZ)`) and returns the capacity it got: the
    /// kernel rounds up to a power-of-two number of pages ([`rounded_capacity`]).
    ///
    /// The kernel decides what is allowed: an unprivileged process may not go above
    /// `/proc/sys/fs/pipe-max-size` ([`max_capacity`]), a process with `CAP_SYS_RESOURCE` (root)
    /// may. One policy for pipes and FIFOs.
    ///
    /// Errors:
    /// - [`ErrorKind::LimitExceeded`] when the kernel refuses (`EPERM`): above
    ///   `/proc/sys/fs/pipe-max-size` without `CAP_SYS_RESOURCE`, naming the knob and its
    ///   value; or, within that knob, when an unprivileged user's pipes would take more pages
    ///   than [`USER_PAGES_SOFT`] (or [`USER_PAGES_HARD`] when the soft limit is 0) allows,
    ///   naming that knob.
    /// - [`ErrorKind::InvalidInput`] when the pipe holds more data than the requested capacity
    ///   (`EBUSY`): drain it first.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html), "/proc files"
    #[doc(alias = "F_SETPIPE_SZ")]
    pub fn set_capacity(&self, bytes: usize) -> Result<usize> {
        let fail = |e: Error| {
            let err = e
                .in_op(format!("set capacity ({bytes} bytes) of"))
                .on_shared(&self.label);
            tracing::debug!(error = %err, "pipe capacity change refused");
            err
        };
        match rustix::pipe::fcntl_setpipe_size(&self.fd, bytes) {
            Ok(got) => {
                tracing::trace!(object = %self.label, requested = bytes, capacity = got, "pipe capacity set");
                Ok(got)
            }
            Err(Errno::PERM) => {
                // Above the size knob, or (unprivileged) over the per-user page budget: growth
                // is refused past the soft limit already (`pipe_set_size` in fs/pipe.c).
                let max = knob::read(knob::PIPE_MAX_SIZE);
                let budget = [USER_PAGES_SOFT, USER_PAGES_HARD]
                    .into_iter()
                    .find_map(|k| knob::read(k).filter(|&v| v > 0).map(|v| (k, v)));
                let e = match budget {
                    Some((k, pages)) if max.is_none_or(|m| rounded_capacity(bytes) <= m) => {
                        Error::limit(k, Some(pages))
                    }
                    _ => Error::limit(knob::PIPE_MAX_SIZE, max),
                };
                Err(fail(e.with_source(Errno::PERM.into())))
            }
            Err(Errno::BUSY) => Err(fail(
                Error::with_note(
                    ErrorKind::InvalidInput,
                    "the pipe holds more data than the requested capacity; drain it first",
                )
                .with_source(Errno::BUSY.into()),
            )),
            Err(e) => Err(fail(Error::from(e))),
        }
    }

    /// Sizes the pipe for a stream of frames of up to `max_message` bytes of payload (plus the
    /// 4-byte length prefix) and returns the capacity (`fcntl(F_SETPIPE_SZ)`):
    ///
    /// - one frame of the largest message fits whole, so a writer of such a message never
    ///   stops halfway for the reader, and the reader wakes once per message instead of twice
    ///   (a 65,536-byte message is a 65,540-byte frame, which the default 64 KiB pipe cannot
    ///   hold);
    /// - when that frame is longer than a page, the pipe gets at least [`STREAM_SLOTS`] (32)
    ///   pages, so that it holds as many frames of a page and a bit as a default pipe holds
    ///   pages (see [`STREAM_SLOTS`] for why frames take more slots than their bytes).
    ///
    /// Does nothing when the pipe is already that large. Growing never loses what is queued.
    ///
    /// The pages count against the user's pipe budget (`/proc/sys/fs/pipe-user-pages-soft`,
    /// 16,384 pages by default: 1,024 default pipes, 512 of 32 slots); once a user is past it,
    /// the kernel gives that user's new pipes 2 pages and refuses growth. When the kernel
    /// refuses the extra slots but one frame already fits, the pipe keeps its capacity and
    /// still works (a DEBUG event "pipe kept its capacity" says so), and the capacity is
    /// returned; [`PipeWriter::into_sender_keeping_capacity`] spends nothing.
    ///
    /// [`PipeWriter::into_sender`] calls it for [`FrameMode::Stream`] and keeps the capacity
    /// the pipe has if it fails.
    ///
    /// Errors: [`ErrorKind::LimitExceeded`] naming `/proc/sys/fs/pipe-max-size` and its value
    /// when one frame needs more than it allows (checked before asking the kernel, so a
    /// privileged process does not silently take more; the pipe still gets its
    /// [`STREAM_SLOTS`] pages when allowed, for the smaller messages of such a stream), or what
    /// [`set_capacity`](PipeEnd::set_capacity) reports when one frame does not fit and the
    /// kernel refuses to grow the pipe (the per-user page budget).
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html), `F_SETPIPE_SZ`
    /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html), "/proc files"
    pub fn fit_frame(&self, max_message: usize) -> Result<usize> {
        let frame = max_message.saturating_add(crate::frame::FRAME_HEADER_LEN);
        let page = rustix::param::page_size();
        let have = self.capacity()?;
        let slots = if frame > page { STREAM_SLOTS * page } else { 0 };
        if frame.max(slots) <= have {
            return Ok(have);
        }
        let max = max_capacity()?;
        if rounded_capacity(frame) > max as u64 {
            // The largest frame cannot fit whole; the smaller messages such a stream carries
            // still get the slots.
            if slots > have && slots <= max {
                self.keep_or_grow(slots, have);
            }
            return Err(logged(
                Error::limit(knob::PIPE_MAX_SIZE, Some(max as u64))
                    .in_op(format!(
                        "fit a {frame}-byte frame (a {max_message}-byte message) whole in"
                    ))
                    .on_shared(&self.label),
            ));
        }
        // The extra slots stay within the size knob (it may be set below 32 pages).
        let want = frame.max(slots.min(max));
        if frame <= have {
            return Ok(self.keep_or_grow(want, have));
        }
        match self.set_capacity(want) {
            Ok(got) => Ok(got),
            Err(e) if want > frame => self.set_capacity(frame).map_err(|_| e),
            Err(e) => Err(e),
        }
    }

    /// Grows the pipe to `want` bytes for the slots of [`fit_frame`](PipeEnd::fit_frame), or,
    /// refused, keeps `have` and says so in a DEBUG event. Returns the capacity.
    fn keep_or_grow(&self, want: usize, have: usize) -> usize {
        self.set_capacity(want).unwrap_or_else(|e| {
            tracing::debug!(
                object = %self.label,
                error = %e,
                capacity = have,
                requested = want,
                "pipe kept its capacity: the extra slots for a stream were refused"
            );
            have
        })
    }

    /// The keep-open write end, locked (`None` for an end with no origin); a poisoned lock
    /// still holds a valid `Option` (nothing can panic while it is held).
    fn keepalive(&self) -> Option<MutexGuard<'_, Option<OwnedFd>>> {
        let o = self.origin.as_ref()?;
        Some(o.keepalive.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl PipeReader {
    /// Makes this reader hold `writer`, a write end of its own pipe, so that it does not see
    /// end-of-file while writers come and go (a FIFO server: `ipc_fifo::OpenOptions::keep_open`).
    /// Let go of it with [`stop_keeping_open`](PipeReader::stop_keeping_open).
    pub fn keep_open_with(mut self, writer: OwnedFd) -> PipeReader {
        let origin = self.origin.get_or_insert_with(|| {
            Box::new(Origin {
                path: None,
                keepalive: Mutex::new(None),
            })
        });
        *origin
            .keepalive
            .get_mut()
            .unwrap_or_else(|p| p.into_inner()) = Some(writer);
        self
    }

    /// Whether this reader holds a write end of its own, so it does not see end-of-file while
    /// writers come and go ([`keep_open_with`](PipeReader::keep_open_with)).
    pub fn keeps_open(&self) -> bool {
        self.keepalive().is_some_and(|k| k.is_some())
    }

    /// Closes the write end held by [`keep_open_with`](PipeReader::keep_open_with): from now
    /// on the reader sees end-of-file once the other writers have closed and their data is
    /// read. For a graceful shutdown of a server; callable through a receiver's
    /// [`get_ref`](FrameReceiver::get_ref).
    pub fn stop_keeping_open(&self) {
        if self.keepalive().is_some_and(|mut k| k.take().is_some()) {
            tracing::trace!(object = %self.label, "keep-open write end closed");
        }
    }

    /// Reads what is in the pipe into `buf`, waiting for data until `deadline`; returns the
    /// number of bytes read, 0 at end-of-file (every write end closed and the pipe drained) or
    /// when `buf` is empty.
    ///
    /// The wait uses `preadv2(RWF_NOWAIT)` and `poll(2)`, so the `O_NONBLOCK` flag, which other
    /// processes holding this end share, is left alone (on kernels without `RWF_NOWAIT` for
    /// pipes it is set once). It works the same whether the end is non-blocking or not.
    ///
    /// Errors: [`ErrorKind::WouldBlock`] (empty) for [`Deadline::Now`] and
    /// [`ErrorKind::TimedOut`] for a deadline that passed, with nothing read; neither
    /// allocates.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipc_core::{Deadline, ErrorKind, pipe};
    ///
    /// let (mut reader, writer) = pipe::pair(false)?;
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
        self.read_until(buf, deadline)
            .map_err(|s| s.into_error(deadline, Blocked::Empty, "read", &self.label))
    }

    fn read_until(&self, buf: &mut [u8], deadline: Deadline) -> Result<usize, Stop> {
        let fd = self.fd.as_fd();
        retry(&[(fd, Interest::Readable)], deadline, || {
            self.nowait
                .attempt(fd, deadline, |nowait| read_buf(fd, &mut *buf, nowait))
        })
    }

    /// Turns this end into a message receiver accepting messages of at most `max_message`
    /// bytes (a frame announcing more is [`ErrorKind::MessageTooLarge`] and dropped, or
    /// [`ErrorKind::Corrupted`] when it cannot be, see [`FrameReceiver`]); errors name the
    /// pipe.
    ///
    /// The receiver reports [`ErrorKind::Disconnected`] when the last writer has closed and
    /// every complete message was received. One receiver per pipe: two readers would split
    /// frames between them.
    ///
    /// Errors, [`ErrorKind::InvalidInput`]:
    /// - for the read end of a packet-mode pipe: a read there returns at most one packet and
    ///   drops what does not fit, which would cut frames (a packet-mode pipe keeps boundaries
    ///   by itself; read its packets directly). The kernel does not show packet mode on a read
    ///   end, so one that came from elsewhere is not caught.
    /// - for a reader that [keeps the pipe open](PipeReader::keep_open_with) when
    ///   `max_message` is above [`MAX_ATOMIC_PAYLOAD`]. A message larger than that takes
    ///   several writes, and two things then break it with no way for the reader to tell: a
    ///   writer killed in the middle of it leaves a partial frame that no end-of-file ever cuts
    ///   off (the reader's own write end keeps the pipe open), so the next writer's frames would
    ///   be read as the rest of it; and any other writer's frames can land between its writes.
    ///   Records of at most `MAX_ATOMIC_PAYLOAD` bytes are one atomic write each: a killed
    ///   writer leaves either a whole record or nothing. A keep-open receiver that meets a
    ///   larger frame anyway (a writer that broke this rule) reports [`ErrorKind::Corrupted`],
    ///   never a message, and keeps reporting it: what the pipe holds cannot be split into
    ///   messages any more. Without keep-open, or after
    ///   [`stop_keeping_open`](PipeReader::stop_keeping_open), messages of any size are fine
    ///   with one writer: a writer that dies mid-message closes the stream, and the partial
    ///   message is dropped.
    pub fn into_receiver(self, max_message: usize) -> Result<FrameReceiver<PipeReader>> {
        let refuse = |note: std::borrow::Cow<'static, str>| {
            Err(logged(
                Error::with_note(ErrorKind::InvalidInput, note)
                    .in_op("make a message receiver")
                    .on_shared(&self.label),
            ))
        };
        if self.packet {
            return refuse(PACKET_FRAMING.into());
        }
        if max_message > MAX_ATOMIC_PAYLOAD && self.keeps_open() {
            return refuse(
                format!(
                    "a keep_open reader takes messages of at most {MAX_ATOMIC_PAYLOAD} bytes \
                     (one atomic write each), not {max_message}: a larger message from a \
                     writer killed mid-message would have no end-of-file to end it"
                )
                .into(),
            );
        }
        let label = Arc::clone(&self.label);
        FrameReceiver::new(self, max_message, label)
    }

    /// A message receiver for atomic records (at most [`MAX_ATOMIC_PAYLOAD`] = 4092 bytes), the
    /// counterpart of [`PipeWriter::into_atomic_sender`].
    pub fn into_atomic_receiver(self) -> Result<FrameReceiver<PipeReader>> {
        self.into_receiver(MAX_ATOMIC_PAYLOAD)
    }
}

const PACKET_FRAMING: &str =
    "a packet-mode pipe keeps message boundaries itself; framing over it could lose data";

impl PipeWriter {
    /// Whether this end writes packets (`O_DIRECT`, see `ipc_pipe::packet_pipe`), by
    /// `fcntl(F_GETFL)`.
    ///
    /// Packet mode belongs to the write end: each write through it becomes packets, and the
    /// read end (whose flags do not show it) returns one packet per read.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    pub fn is_packet_mode(&self) -> Result<bool> {
        let flags = fcntl_getfl(&self.fd).map_err(self.os_error("fcntl(F_GETFL)"))?;
        Ok(flags.contains(OFlags::DIRECT))
    }

    /// Writes as much of `buf` as goes into the pipe before `deadline`, waiting for room;
    /// returns the number of bytes written: all of `buf`, or fewer if the deadline passed (or
    /// the reader went away) after some went in.
    ///
    /// A `buf` of at most [`PIPE_BUF`] bytes goes in whole or not at all. The wait uses
    /// `pwritev2(RWF_NOWAIT)` and `poll(2)` (see [`PipeReader::read_deadline`]). Never raises
    /// `SIGPIPE`.
    ///
    /// Errors, with nothing written: [`ErrorKind::WouldBlock`] (full) for [`Deadline::Now`],
    /// [`ErrorKind::TimedOut`] for a deadline that passed (neither allocates),
    /// [`ErrorKind::Disconnected`] when no process has the read end open (`EPIPE`).
    ///
    /// ```
    /// use ipc_core::{Deadline, ErrorKind, pipe};
    ///
    /// let (reader, mut writer) = pipe::pair(false)?;
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
        self.write_until(buf, deadline)
            .map_err(|s| s.into_error(deadline, Blocked::Full, "write", &self.label))
    }

    /// Writes as much of `buf` as goes in before `deadline`; fails only if nothing went in.
    fn write_until(&self, buf: &[u8], deadline: Deadline) -> Result<usize, Stop> {
        let fd = self.fd.as_fd();
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            let r = retry(&[(fd, Interest::Writable)], deadline, || {
                self.nowait.attempt(fd, deadline, |nowait| {
                    write_iov(self.sigpipe, fd, &[IoSlice::new(rest)], nowait)
                })
            });
            match r {
                Ok(n) => done += n,
                // Like write(2): a count if anything went in, the error otherwise (a later
                // call sees it again).
                Err(_) if done > 0 => break,
                Err(stop) => return Err(stop),
            }
        }
        Ok(done)
    }

    /// Writes `record` with one `write(2)`, which the kernel makes atomic: the reader gets it
    /// in one piece, never mixed with other writers' bytes. Blocks until there is room for all
    /// of it (unless non-blocking).
    ///
    /// # Errors
    /// - [`ErrorKind::MessageTooLarge`]: `record` is longer than `PIPE_BUF` (4096) bytes;
    ///   nothing was written.
    /// - [`ErrorKind::WouldBlock`]: non-blocking and no room for the whole record; nothing was
    ///   written.
    /// - [`ErrorKind::Disconnected`]: no process has the pipe open for reading (`EPIPE`).
    ///
    /// # References
    /// - [`pipe(7)`](https://man7.org/linux/man-pages/man7/pipe.7.html) (`PIPE_BUF`)
    #[doc(alias = "write")]
    pub fn write_atomic(&mut self, record: &[u8]) -> Result<()> {
        if record.len() > PIPE_BUF {
            return Err(logged(
                Error::message_too_large(record.len(), PIPE_BUF, "PIPE_BUF: atomic pipe writes")
                    .in_op("write")
                    .on_shared(&self.label),
            ));
        }
        let deadline = if self.nonblocking.load(Ordering::Relaxed) {
            Deadline::Now
        } else {
            Deadline::Never
        };
        match self.write_until(record, deadline) {
            Ok(n) if n == record.len() => Ok(()),
            Ok(n) => Err(logged(
                Error::with_note(
                    ErrorKind::Io,
                    format!("short write of {n} of {} bytes", record.len()),
                )
                .in_op("write")
                .on_shared(&self.label),
            )),
            Err(stop) => Err(stop.into_error(deadline, Blocked::Full, "write", &self.label)),
        }
    }

    /// Turns this end into a message sender framing messages as `mode` says: in
    /// [`FrameMode::Atomic`] every message is one frame of at most `PIPE_BUF` bytes written
    /// with one `write`, so messages from any number of writers never interleave (messages
    /// above [`MAX_ATOMIC_PAYLOAD`] are refused with [`ErrorKind::MessageTooLarge`]); in
    /// [`FrameMode::Stream`] messages may be large, and there must be one writer only. Errors
    /// name the pipe.
    ///
    /// In [`FrameMode::Stream`] the pipe is sized for the stream first
    /// ([`fit_frame`](PipeEnd::fit_frame): one frame of the largest message, and 32 pages when
    /// that frame is longer than a page, spending the user's pipe page budget); if the kernel
    /// refuses, the pipe keeps its capacity and the sender works as well, only slower.
    /// [`into_sender_keeping_capacity`](PipeWriter::into_sender_keeping_capacity) leaves the
    /// capacity alone.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a packet-mode end (see
    /// [`PipeReader::into_receiver`]).
    pub fn into_sender(self, mode: FrameMode) -> Result<FrameSender<PipeWriter>> {
        let stream = match mode {
            FrameMode::Stream { max_message } if !self.is_packet_mode()? => Some(max_message),
            _ => None,
        };
        if let Some(max_message) = stream {
            // Sized as `fit_frame` says when the kernel allows it; otherwise the pipe keeps
            // its capacity and a large message takes several wake-ups of the reader, which is
            // correct, only slower.
            if let Err(e) = self.fit_frame(max_message) {
                tracing::debug!(object = %self.label, error = %e, "pipe kept its capacity");
            }
        }
        self.into_sender_keeping_capacity(mode)
    }

    /// [`into_sender`](PipeWriter::into_sender) without touching the pipe's capacity: no
    /// `F_SETPIPE_SZ`, no pages of the user's pipe budget spent (see
    /// [`fit_frame`](PipeEnd::fit_frame) for what a stream sender otherwise asks for). For a
    /// program that keeps many pipes near `/proc/sys/fs/pipe-user-pages-soft`, or that sized
    /// the pipe itself. A stream of messages larger than a page is then slower on one core.
    ///
    /// Errors: as [`into_sender`](PipeWriter::into_sender).
    pub fn into_sender_keeping_capacity(self, mode: FrameMode) -> Result<FrameSender<PipeWriter>> {
        if self.is_packet_mode()? {
            return Err(logged(
                Error::with_note(ErrorKind::InvalidInput, PACKET_FRAMING)
                    .in_op("make a message sender")
                    .on_shared(&self.label),
            ));
        }
        let label = Arc::clone(&self.label);
        FrameSender::new(self, mode, label)
    }

    /// A message sender for several writers: [`into_sender`](PipeWriter::into_sender) in
    /// [`FrameMode::Atomic`] (messages of at most [`MAX_ATOMIC_PAYLOAD`] = 4092 bytes).
    pub fn into_atomic_sender(self) -> Result<FrameSender<PipeWriter>> {
        self.into_sender(FrameMode::Atomic)
    }

    /// A message sender for a single writer: [`into_sender`](PipeWriter::into_sender) in
    /// [`FrameMode::Stream`], messages of up to `max_message` bytes. Larger than `PIPE_BUF`, a
    /// message takes several writes, so this must be the pipe's only writer.
    pub fn into_stream_sender(self, max_message: usize) -> Result<FrameSender<PipeWriter>> {
        self.into_sender(FrameMode::Stream { max_message })
    }
}

impl io::Read for PipeReader {
    /// `read(2)`: waits for data unless the end was made non-blocking; 0 at end-of-file.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl io::Read for &PipeReader {
    /// `read(2)`: waits for data unless the end was made non-blocking; 0 at end-of-file.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return rustix::io::read(&self.fd, buf)
                .map_err(|e| io_error(Stop::Os(e), "read", &self.label));
        }
        self.read_until(buf, Deadline::Never)
            .map_err(|s| io_error(s, "read", &self.label))
    }
}

impl io::Write for PipeWriter {
    /// `write(2)` without `SIGPIPE`: writes all of `buf`, waiting for room, unless the end was
    /// made non-blocking. `EPIPE` (no reader) is `io::ErrorKind::BrokenPipe`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    /// Nothing to do: writes go straight to the kernel.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &PipeWriter {
    /// `write(2)` without `SIGPIPE`: writes all of `buf`, waiting for room, unless the end was
    /// made non-blocking. `EPIPE` (no reader) is `io::ErrorKind::BrokenPipe`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return self
                .sigpipe
                .write(self.fd.as_fd(), buf)
                .map_err(|e| io_error(Stop::Os(e), "write", &self.label));
        }
        self.write_until(buf, Deadline::Never)
            .map_err(|s| io_error(s, "write", &self.label))
    }

    /// Nothing to do: writes go straight to the kernel.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<D: Direction> AsFd for PipeEnd<D> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<D: Direction> AsRawFd for PipeEnd<D> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<D: Direction> From<OwnedFd> for PipeEnd<D> {
    /// Takes `fd` as it is, unchecked (see [`adopt`](PipeEnd::adopt) for the checked form),
    /// named `pipe:[inode]` in errors. Its `O_NONBLOCK` flag is read once, here.
    fn from(fd: OwnedFd) -> PipeEnd<D> {
        let label = pipe_label(fd.as_fd());
        PipeEnd::with_label(fd, label)
    }
}

impl<D: Direction> From<PipeEnd<D>> for OwnedFd {
    /// The descriptor. A keep-open write end is closed.
    fn from(end: PipeEnd<D>) -> OwnedFd {
        end.fd
    }
}

impl<D: Direction> From<PipeEnd<D>> for std::process::Stdio {
    /// Hands the end to a child as its stdin, stdout or stderr (`Command::stdin(end)`). Note
    /// that the `Command` keeps it open until the `Command` is dropped; `ipc_pipe::ChildPipes`
    /// closes it at spawn.
    fn from(end: PipeEnd<D>) -> std::process::Stdio {
        std::process::Stdio::from(end.fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageReceiver, MessageSender};
    use std::io::{Read, Write};
    use std::time::Duration;

    /// A stream sender makes room for one frame of its largest message when the knob allows;
    /// above `pipe-max-size` it is a typed error naming the knob, the pipe gets the
    /// [`STREAM_SLOTS`] pages of a stream of frames longer than a page (or keeps its capacity
    /// when the knob is below them), and the sender works.
    #[test]
    fn stream_senders_fit_one_frame_of_the_largest_message_or_keep_the_capacity() {
        let (r, w) = pair(false).unwrap();
        let before = r.capacity().unwrap();
        let tx = w.into_stream_sender(before).unwrap();
        assert!(r.capacity().unwrap() >= before + 4);
        drop(tx);

        let Ok(max) = max_capacity() else { return };
        let (r, w) = pair(false).unwrap();
        let before = r.capacity().unwrap();
        let e = w.fit_frame(max).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
        assert!(e.to_string().contains("pipe-max-size"), "{e}");
        assert!(e.to_string().contains(&max.to_string()), "{e}");
        let slots = STREAM_SLOTS * rustix::param::page_size();
        let expected = if slots <= max { slots } else { before };
        assert_eq!(r.capacity().unwrap(), expected);
        let mut tx = w.into_stream_sender(max).unwrap();
        assert_eq!(r.capacity().unwrap(), expected);
        let mut rx = r.into_receiver(max).unwrap();
        tx.send(b"still works").unwrap();
        let mut buf = [0; 16];
        assert_eq!(rx.recv(&mut buf).unwrap(), 11);
    }

    #[test]
    fn ends_are_close_on_exec_and_blocking() {
        let (r, w) = pair(false).unwrap();
        for fd in [r.as_fd(), w.as_fd()] {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        }
        assert!(!r.is_nonblocking().unwrap());
        assert!(!w.is_packet_mode().unwrap());
        assert!(pair(true).unwrap().1.is_packet_mode().unwrap());
    }

    #[test]
    fn bounded_calls_leave_o_nonblock_alone() {
        // RWF_NOWAIT works on pipes here, so no fallback to O_NONBLOCK: the flag, which a child
        // holding the same end would share, stays as it was.
        let (mut r, mut w) = pair(false).unwrap();
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
        let (mut r, mut w) = pair(false).unwrap();
        r.set_nonblocking(true).unwrap();
        assert!(r.is_nonblocking().unwrap());
        let e = r.read(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        w.set_nonblocking(true).unwrap();
        let cap = w.capacity().unwrap();
        assert_eq!(w.write(&vec![1; cap + 10]).unwrap(), cap);
        assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let e = w.write_atomic(b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
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
        let (mut r, mut w) = pair(false).unwrap();
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
        let (r, mut w) = pair(false).unwrap();
        drop(r);
        assert_eq!(w.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let e = w.write_deadline(b"x", Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        assert!(e.to_string().contains("pipe:["), "{e}");
    }

    #[test]
    fn adopt_checks_type_and_direction() {
        let (r, w) = pair(false).unwrap();
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
        let (mut r, w) = pair(false).unwrap();
        let mut w2 = w.try_clone().unwrap();
        drop(w);
        w2.write_all(b"hi").unwrap();
        assert_eq!(w2.queued_bytes().unwrap(), 2);
        drop(w2);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
    }

    #[test]
    fn a_keep_open_reader_waits_instead_of_end_of_file() {
        let (r, w) = pair(false).unwrap();
        let keep = rustix::io::fcntl_dupfd_cloexec(&w, 0).unwrap();
        let keep_w = rustix::io::fcntl_dupfd_cloexec(&w, 0).unwrap();
        let mut r = r.keep_open_with(keep);
        assert!(r.keeps_open());
        assert_eq!(r.path(), None, "an anonymous pipe has no path");
        drop(w);
        let e = r.read_deadline(&mut [0; 4], Deadline::Now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        let keep = rustix::io::fcntl_dupfd_cloexec(&keep_w, 0).unwrap();
        let e = r
            .try_clone()
            .unwrap()
            .keep_open_with(keep)
            .into_receiver(5000);
        assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidInput);
        // A clone holds no write end of its own.
        assert!(!r.try_clone().unwrap().keeps_open());
        drop(keep_w);
        r.stop_keeping_open();
        assert!(!r.keeps_open());
        assert_eq!(r.read_deadline(&mut [0; 4], Deadline::Now).unwrap(), 0);
    }

    #[test]
    fn requests_round_like_the_kernel() {
        let page = rustix::param::page_size() as u64;
        assert_eq!(rounded_capacity(0), page);
        assert_eq!(rounded_capacity(1), page);
        assert_eq!(rounded_capacity(page as usize + 1), 2 * page);
        assert_eq!(rounded_capacity(100_000), 131_072);
        assert_eq!(rounded_capacity(1 << 20), 1 << 20);
        assert_eq!(rounded_capacity(usize::MAX), u64::MAX);
        let (r, _w) = pair(false).unwrap();
        for req in [1, 5000, 65_536, 100_000, 300_000] {
            let got = r.set_capacity(req).unwrap();
            assert_eq!(got as u64, rounded_capacity(req), "request {req}");
            assert_eq!(r.capacity().unwrap(), got);
        }
    }
}
