//! Opening an existing FIFO safely: [`OpenOptions`], the checks that refuse what is not ours
//! (symlinks, other file types, other owners), and the waits for the other end with deadlines.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc_core::fd::set_nonblocking;
use ipc_core::pipe::descriptor_error;
use ipc_core::{Blocked, Deadline, Error, ErrorKind, Owner, Result};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{CWD, FileType, Mode, OFlags, Stat, fstat, openat};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, tee};

use crate::{FifoReader, FifoWriter};

/// The first pause between two checks for the other end of a FIFO.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_micros(50);
/// The longest pause between two checks for the other end of a FIFO: also the longest a bounded
/// open can lag behind the peer's arrival.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_millis(5);

/// How long an open waits for the other end, as given to [`OpenOptions::wait`] or
/// [`OpenOptions::timeout`]: a timeout starts counting when the open is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Deadline(Deadline),
    Timeout(Duration),
}

/// Options for opening an existing FIFO for reading ([`open_read`](OpenOptions::open_read)) or
/// writing ([`open_write`](OpenOptions::open_write)).
///
/// # How an open works
///
/// 1. `open(path, O_PATH | O_NOFOLLOW)`: takes a handle on whatever is at the path without
///    opening it for I/O. This never blocks and has no side effects, even on a device, and on a
///    symbolic link it yields the link itself.
/// 2. `fstat` on that handle: it must be a FIFO, owned by the expected user.
/// 3. The handle is reopened for reading or writing through its `/proc/self/fd/N` magic link,
///    which names the inode already checked: no second lookup of the path, so nothing can be
///    swapped in between. (Where `/proc` is not mounted, the path is opened again with
///    `O_NOFOLLOW | O_NONBLOCK` and the result must be the same inode, or the open fails.)
/// 4. The wait for the other end: the kernel's blocking open for [`Deadline::Never`]; otherwise
///    a non-blocking open and a bounded wait (see [`OpenOptions::wait`]).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use ipc_fifo::ErrorKind;
/// use ipc_fifo::{Fifo, OpenOptions};
///
/// let dir = std::env::temp_dir().join(format!("ipc-fifo-doc-open-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// let fifo = Fifo::create(dir.join("jobs"))?;
///
/// // No reader yet: a writer that may not wait is told so, one that may wait gives up in time.
/// let e = OpenOptions::new().nonblocking(true).open_write(&fifo).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::NoPeer);
/// let e = OpenOptions::new()
///     .timeout(Duration::from_millis(20))
///     .open_write(&fifo)
///     .unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::TimedOut);
///
/// // A reader that does not wait opens at once; now the writer finds it.
/// let reader = OpenOptions::new().nonblocking(true).open_read(&fifo)?;
/// let writer = OpenOptions::new().nonblocking(true).open_write(&fifo)?;
/// # drop((reader, writer, fifo));
/// # std::fs::remove_dir(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    wait: Wait,
    nonblocking: bool,
    owner: Owner,
    keep_open: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// The defaults: wait for the other end as long as it takes (the kernel's blocking open),
    /// blocking I/O afterwards, the FIFO must belong to this process's effective uid, and a
    /// reader sees end-of-file when the last writer closes.
    pub fn new() -> OpenOptions {
        OpenOptions {
            wait: Wait::Deadline(Deadline::Never),
            nonblocking: false,
            owner: Owner::Me,
            keep_open: false,
        }
    }

    /// How long the open waits for the other end.
    ///
    /// - [`Deadline::Never`] (the default): the kernel's blocking `open(2)`, which returns when
    ///   the other end is opened.
    /// - [`Deadline::Now`]: no waiting, as `O_NONBLOCK` opens do. A reader opens at once, with
    ///   or without a writer (and until one comes, a read sees end-of-file); a writer with no
    ///   reader fails with [`ErrorKind::NoPeer`] (`ENXIO`).
    /// - [`Deadline::At`]: wait for the other end until then, then fail with
    ///   [`ErrorKind::TimedOut`]. The kernel has no bounded open, so this opens without
    ///   blocking and checks for the peer with growing pauses of at most 5 ms (a reader also
    ///   wakes at once when data arrives). A writer checks by retrying its non-blocking open; a
    ///   reader checks with a non-consuming `tee(2)` of one byte, which tells "no writer"
    ///   (end-of-file) from "a writer, no data yet" (`EAGAIN`) without taking any data.
    pub fn wait(&mut self, deadline: Deadline) -> &mut OpenOptions {
        self.wait = Wait::Deadline(deadline);
        self
    }

    /// Waits at most `timeout` for the other end, counted from the call to `open_*` (see
    /// [`wait`](OpenOptions::wait)).
    pub fn timeout(&mut self, timeout: Duration) -> &mut OpenOptions {
        self.wait = Wait::Timeout(timeout);
        self
    }

    /// Whether the open does not wait and the descriptor is left non-blocking (`O_NONBLOCK`)
    /// for I/O: reads and writes then fail with `WouldBlock` instead of waiting.
    ///
    /// `nonblocking(true)` also sets the wait to [`Deadline::Now`]; call
    /// [`wait`](OpenOptions::wait) afterwards to wait for the peer but still get a
    /// non-blocking descriptor. Each `open` of a FIFO has its own open file description, so
    /// the flag is this endpoint's alone.
    pub fn nonblocking(&mut self, nonblocking: bool) -> &mut OpenOptions {
        self.nonblocking = nonblocking;
        if nonblocking {
            self.wait = Wait::Deadline(Deadline::Now);
        }
        self
    }

    /// The user the FIFO must belong to (default [`Owner::Me`]).
    pub fn owner(&mut self, owner: Owner) -> &mut OpenOptions {
        self.owner = owner;
        self
    }

    /// For a reader: keep the FIFO open while writers come and go.
    ///
    /// A FIFO reader normally sees end-of-file (and a message receiver
    /// [`ErrorKind::Disconnected`]) when the last writer closes. A server that serves writer
    /// after writer does not want that: with `keep_open(true)` the reader also holds a write end
    /// of its own (opened right after the read end, so it never waits), the writer count never
    /// drops to zero, and reads wait for the next writer instead. The price: the reader never
    /// sees end-of-file while it holds that end; [`FifoReader::stop_keeping_open`] lets go of it
    /// (for a graceful shutdown: drain, then see end-of-file).
    ///
    /// With the default wait the open still waits for a first writer; a server that wants to
    /// open at once combines this with [`wait(Deadline::Now)`](OpenOptions::wait).
    ///
    /// A keep-open reader becomes a receiver of atomic records only (at most
    /// [`MAX_ATOMIC_PAYLOAD`](crate::MAX_ATOMIC_PAYLOAD) bytes each): see
    /// [`FifoReader::into_receiver`](crate::FifoReader::into_receiver) for why.
    ///
    /// Refused with [`ErrorKind::InvalidInput`] by [`open_write`](OpenOptions::open_write).
    pub fn keep_open(&mut self, keep_open: bool) -> &mut OpenOptions {
        self.keep_open = keep_open;
        self
    }

    /// Opens the FIFO at `path` for reading (`open(2)` with `O_RDONLY`).
    ///
    /// Blocks as [`wait`](OpenOptions::wait) says, until a writer has the FIFO open. The path is
    /// checked first, without blocking and without opening it for I/O (see the
    /// [crate docs](crate#safety-of-paths)).
    ///
    /// # Errors
    /// - [`ErrorKind::NotFound`]: nothing at `path`.
    /// - [`ErrorKind::WrongType`]: `path` is a symbolic link (never followed) or not a FIFO.
    /// - [`ErrorKind::PermissionDenied`]: the FIFO belongs to another user than
    ///   [`owner`](OpenOptions::owner) says (the message names both uids), or its mode does not
    ///   let this process read.
    /// - [`ErrorKind::TimedOut`]: no writer came before the deadline.
    /// - [`ErrorKind::LimitExceeded`]: the process is out of descriptors (naming
    ///   `RLIMIT_NOFILE` and its value), or the system is (`/proc/sys/fs/file-max`).
    ///
    /// # References
    /// - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html)
    /// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)
    #[doc(alias = "open")]
    pub fn open_read(&self, path: impl AsRef<Path>) -> Result<FifoReader> {
        let path = path.as_ref();
        let deadline = self.deadline();
        let target = Target::resolve(path, self.owner, "open FIFO for reading")?;
        self.read_target(target, deadline)
    }

    /// Opens `target` for reading; see [`open_read`](OpenOptions::open_read).
    pub(crate) fn read_target(&self, target: Target, deadline: Deadline) -> Result<FifoReader> {
        let path = target.path.as_path();
        let fd = target
            .open_reader(deadline)
            .map_err(|e| debug_err(e.in_op("open FIFO for reading").on(path.display())))?;
        let keepalive = if self.keep_open {
            Some(
                target
                    .reopen(OFlags::WRONLY | OFlags::NONBLOCK)
                    .map_err(|e| {
                        debug_err(e.in_op("open keep-open write end").on(path.display()))
                    })?,
            )
        } else {
            None
        };
        set_nonblocking(&fd, self.nonblocking)
            .map_err(|e| debug_err(Error::from(e).in_op("fcntl(F_SETFL)").on(path.display())))?;
        tracing::trace!(path = %path.display(), keep_open = self.keep_open, "FIFO opened for reading");
        let reader = FifoReader::opened_at(fd, target.path);
        Ok(match keepalive {
            Some(w) => reader.keep_open_with(w),
            None => reader,
        })
    }

    /// Opens the FIFO at `path` for writing (`open(2)` with `O_WRONLY`).
    ///
    /// Blocks as [`wait`](OpenOptions::wait) says, until a reader has the FIFO open. The path is
    /// checked first, without blocking and without opening it for I/O.
    ///
    /// # Errors
    /// - [`ErrorKind::NoPeer`]: no reader, and the open may not wait (`ENXIO`).
    /// - [`ErrorKind::TimedOut`]: no reader came before the deadline.
    /// - [`ErrorKind::NotFound`], [`ErrorKind::WrongType`], [`ErrorKind::PermissionDenied`],
    ///   [`ErrorKind::LimitExceeded`]: as for [`open_read`](OpenOptions::open_read).
    /// - [`ErrorKind::InvalidInput`]: [`keep_open`](OpenOptions::keep_open) was set (it is for
    ///   readers).
    ///
    /// # References
    /// - [`fifo(7)`](https://man7.org/linux/man-pages/man7/fifo.7.html)
    /// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html)
    #[doc(alias = "open")]
    pub fn open_write(&self, path: impl AsRef<Path>) -> Result<FifoWriter> {
        let path = path.as_ref();
        if self.keep_open {
            return Err(debug_err(
                Error::with_note(
                    ErrorKind::InvalidInput,
                    "keep_open is an option for readers",
                )
                .in_op("open FIFO for writing")
                .on(path.display()),
            ));
        }
        let deadline = self.deadline();
        let target = Target::resolve(path, self.owner, "open FIFO for writing")?;
        self.write_target(target, deadline)
    }

    /// Opens `target` for writing; see [`open_write`](OpenOptions::open_write).
    pub(crate) fn write_target(&self, target: Target, deadline: Deadline) -> Result<FifoWriter> {
        let path = target.path.as_path();
        let fd = target
            .open_writer(deadline, &[])
            .map_err(|e| debug_err(e.in_op("open FIFO for writing").on(path.display())))?;
        set_nonblocking(&fd, self.nonblocking)
            .map_err(|e| debug_err(Error::from(e).in_op("fcntl(F_SETFL)").on(path.display())))?;
        tracing::trace!(path = %path.display(), "FIFO opened for writing");
        Ok(FifoWriter::opened_at(fd, target.path))
    }

    pub(crate) fn owner_setting(&self) -> Owner {
        self.owner
    }

    pub(crate) fn deadline(&self) -> Deadline {
        match self.wait {
            Wait::Deadline(d) => d,
            Wait::Timeout(t) => Deadline::after(t),
        }
    }
}

/// Logs an error at DEBUG on its way out.
pub(crate) fn debug_err(e: Error) -> Error {
    tracing::debug!(error = %e, "ipc-fifo error");
    e
}

/// A checked FIFO: an `O_PATH` handle on it and its `fstat`, from which the FIFO is opened for
/// I/O without looking the path up again.
#[derive(Debug)]
pub(crate) struct Target {
    handle: OwnedFd,
    stat: Stat,
    path: PathBuf,
    /// Whether reopening goes through `/proc/self/fd` (cleared if `/proc` turns out missing).
    via_proc: bool,
    /// Whether [`open_writer`](Target::open_writer) stops waiting once the checked FIFO has no
    /// name left (see [`Target::give_up_if_unlinked`]).
    give_up_if_unlinked: bool,
}

impl Target {
    /// Takes an `O_PATH | O_NOFOLLOW` handle on `path` and checks type and owner on it.
    pub(crate) fn resolve(path: &Path, owner: Owner, op: &'static str) -> Result<Target> {
        let handle = openat(
            CWD,
            path,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| debug_err(descriptor_error(e).in_op(op).on(path.display())))?;
        Target::from_handle(handle, path, owner, op)
    }

    /// Checks type and owner on an `O_PATH` `handle` for the FIFO at `path`.
    pub(crate) fn from_handle(
        handle: OwnedFd,
        path: &Path,
        owner: Owner,
        op: &'static str,
    ) -> Result<Target> {
        let stat =
            fstat(&handle).map_err(|e| debug_err(Error::from(e).in_op(op).on(path.display())))?;
        check_fifo(&stat, owner).map_err(|e| debug_err(e.in_op(op).on(path.display())))?;
        // The magic link is there unless /proc is not mounted (some containers, early boot).
        let via_proc = match rustix::fs::stat(proc_fd_path(handle.as_fd())) {
            Ok(st) => (st.st_dev, st.st_ino) == (stat.st_dev, stat.st_ino),
            Err(_) => false,
        };
        if !via_proc {
            tracing::debug!(path = %path.display(), "/proc/self/fd is not usable; reopening by path");
        }
        Ok(Target {
            handle,
            stat,
            path: path.to_path_buf(),
            via_proc,
            give_up_if_unlinked: false,
        })
    }

    /// Makes [`open_writer`](Target::open_writer) fail with [`ErrorKind::Disconnected`] once the
    /// FIFO it waits on has no name left (`st_nlink` 0 on the checked handle): no process can
    /// open it by path any more, so no reader will come. A duplex client waits so for the
    /// server, which removes the connection's names when it gives the handshake up without
    /// being able to open them.
    pub(crate) fn give_up_if_unlinked(mut self) -> Target {
        self.give_up_if_unlinked = true;
        self
    }

    /// Whether the checked inode has no name left. An `fstat` that fails says nothing: false.
    fn unlinked(&self) -> bool {
        fstat(&self.handle).is_ok_and(|st| st.st_nlink == 0)
    }

    /// Opens the checked FIFO with `flags` (`O_CLOEXEC` added). Through `/proc/self/fd/N` when
    /// `/proc` is there; otherwise by path with `O_NOFOLLOW | O_NONBLOCK` added, and only if it
    /// is still the same inode.
    pub(crate) fn reopen(&self, flags: OFlags) -> Result<OwnedFd> {
        if self.via_proc {
            return openat(
                CWD,
                proc_fd_path(self.handle.as_fd()),
                flags | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(descriptor_error);
        }
        let fd = openat(
            CWD,
            &self.path,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(descriptor_error)?;
        let now = fstat(&fd)?;
        if (now.st_dev, now.st_ino) != (self.stat.st_dev, self.stat.st_ino) {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                "the path was replaced by another file while it was being opened",
            ));
        }
        Ok(fd)
    }

    /// What `fstat` said of the checked inode when it was resolved.
    pub(crate) fn stat(&self) -> &Stat {
        &self.stat
    }

    /// The checked inode: device and inode number.
    pub(crate) fn identity(&self) -> (u64, u64) {
        (self.stat.st_dev, self.stat.st_ino)
    }

    /// Whether the kernel's blocking open may be used: only when reopening goes through the
    /// checked handle (a path could have been swapped for something a blocking open hangs on).
    fn can_block(&self) -> bool {
        self.via_proc
    }

    /// Opens the read end, waiting for a writer until `deadline`. The descriptor comes back
    /// non-blocking unless the kernel's blocking open was used.
    pub(crate) fn open_reader(&self, deadline: Deadline) -> Result<OwnedFd> {
        if deadline == Deadline::Never && self.can_block() {
            loop {
                match self.reopen(OFlags::RDONLY) {
                    Err(e) if e.errno() == Some(Errno::INTR) => continue,
                    r => return r,
                }
            }
        }
        let fd = self.reopen(OFlags::RDONLY | OFlags::NONBLOCK)?;
        if deadline != Deadline::Now {
            wait_for_writer(fd.as_fd(), deadline, None)?;
        }
        Ok(fd)
    }

    /// Opens the write end, waiting for a reader until `deadline`. While waiting, the
    /// descriptors in `watch` are polled for errors and hang-ups: the wait ends with
    /// [`ErrorKind::Disconnected`] if one reports one. The descriptor comes back non-blocking unless the kernel's blocking
    /// open was used.
    pub(crate) fn open_writer(
        &self,
        deadline: Deadline,
        watch: &[BorrowedFd<'_>],
    ) -> Result<OwnedFd> {
        if deadline == Deadline::Never
            && watch.is_empty()
            && !self.give_up_if_unlinked
            && self.can_block()
        {
            loop {
                match self.reopen(OFlags::WRONLY) {
                    Err(e) if e.errno() == Some(Errno::INTR) => continue,
                    r => return r,
                }
            }
        }
        let mut backoff = FIRST_BACKOFF;
        // Set once `watch` reported a peer gone: one more attempt, then give up.
        let mut peer_left = false;
        loop {
            match self.reopen(OFlags::WRONLY | OFlags::NONBLOCK) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.errno() == Some(Errno::NXIO) => {
                    if deadline == Deadline::Now {
                        return Err(e.with_detail(ipc_core::Detail::Note(
                            "no process has the FIFO open for reading".into(),
                        )));
                    }
                }
                Err(e) if e.errno() == Some(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
            if peer_left {
                return Err(peer_gone());
            }
            if self.give_up_if_unlinked && self.unlinked() {
                return Err(Error::with_note(
                    ErrorKind::Disconnected,
                    "the FIFO was removed while this end waited for a reader: no reader can \
                     open it any more",
                ));
            }
            if deadline.has_passed() {
                return Err(Error::with_note(
                    ErrorKind::TimedOut,
                    "no process opened the FIFO for reading before the deadline",
                ));
            }
            let slice = Deadline::after(backoff).min(deadline);
            peer_left = poll_pair(None, watch, slice)? == Woke::Watch;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// `/proc/self/fd/N` for `fd`.
fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    let mut s = b"/proc/self/fd/".to_vec();
    s.extend_from_slice(fd.as_raw_fd().to_string().as_bytes());
    PathBuf::from(OsString::from_vec(s))
}

/// Checks that `stat` is a FIFO belonging to `owner`.
pub(crate) fn check_fifo(stat: &Stat, owner: Owner) -> Result<()> {
    let ty = FileType::from_raw_mode(stat.st_mode);
    if ty != FileType::Fifo {
        let what = match ty {
            FileType::Symlink => {
                "is a symbolic link; FIFOs are opened without following links".to_string()
            }
            other => format!("is {}, not a FIFO", describe(other)),
        };
        return Err(Error::with_note(ErrorKind::WrongType, what));
    }
    owner.check(stat.st_uid, "FIFO")?;
    Ok(())
}

fn describe(ty: FileType) -> &'static str {
    match ty {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

/// Waits until the FIFO read end `fd` (non-blocking) has a writer, or data, or has seen a
/// writer come and go; fails with [`ErrorKind::TimedOut`] at `deadline`, or with
/// [`ErrorKind::Disconnected`] if `watch` reports an error or hang-up first.
///
/// The check is a one-byte `tee(2)` into a scratch pipe: it copies without consuming, returns
/// 0 on an empty FIFO with no writer and `EAGAIN` on an empty FIFO with a writer. Between
/// checks, `poll(2)` on the FIFO wakes at once on data, and on `POLLHUP`, which the kernel
/// reports to a non-blocking reader only once a writer has come since it opened (fifo(7)).
pub(crate) fn wait_for_writer(
    fd: BorrowedFd<'_>,
    deadline: Deadline,
    watch: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let (_scratch_r, scratch_w) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(|e| descriptor_error(e).in_op("pipe2 (scratch for tee)"))?;
    let mut backoff = FIRST_BACKOFF;
    // Set once `watch` reported its peer gone: one more check, then give up.
    let mut peer_left = false;
    loop {
        if writer_present(fd, scratch_w.as_fd())? {
            return Ok(());
        }
        if peer_left {
            return Err(peer_gone());
        }
        if deadline.has_passed() {
            return Err(deadline_error(deadline));
        }
        let slice = Deadline::after(backoff).min(deadline);
        match poll_pair(Some(fd), watch.as_slice(), slice)? {
            // Data, or POLLHUP: a writer came (and maybe went already).
            Woke::Ready => return Ok(()),
            Woke::Watch => peer_left = true,
            Woke::Timeout => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether the FIFO read end `fd` (non-blocking) has a writer or data queued: a one-byte
/// `tee(2)` into the scratch pipe whose write end is `scratch` (see [`wait_for_writer`]). A
/// byte it copied stays in the scratch pipe: make a new one per wait, or drain it.
pub(crate) fn writer_present(fd: BorrowedFd<'_>, scratch: BorrowedFd<'_>) -> Result<bool> {
    loop {
        match tee(fd, scratch, 1, SpliceFlags::NONBLOCK) {
            Ok(0) => return Ok(false),                    // no writer, nothing queued
            Ok(_) | Err(Errno::AGAIN) => return Ok(true), // data queued, or a writer is there
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::from(e).in_op("tee")),
        }
    }
}

fn deadline_error(deadline: Deadline) -> Error {
    match deadline {
        Deadline::Now => Error::would_block(Blocked::Empty),
        _ => Error::with_note(
            ErrorKind::TimedOut,
            "no process opened the FIFO for writing before the deadline",
        ),
    }
}

/// What ended a [`poll_pair`].
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    /// The FIFO has input or a hang-up.
    Ready,
    /// The watched descriptor reported an error or hang-up (and the FIFO nothing).
    Watch,
    /// Neither, before the time slice ended (or a signal interrupted the wait).
    Timeout,
}

/// Waits until `slice` for input on `fd` (if any) and for an error or hang-up on any of
/// `watch`; with neither, just sleeps. Readiness of `fd` wins over `watch`: a peer that finished
/// its part and closed at once is not a peer that went away.
fn poll_pair(
    fd: Option<BorrowedFd<'_>>,
    watch: &[BorrowedFd<'_>],
    slice: Deadline,
) -> Result<Woke> {
    let mut fds = Vec::with_capacity(1 + watch.len());
    if let Some(fd) = fd {
        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
    }
    for &w in watch {
        fds.push(PollFd::from_borrowed_fd(w, PollFlags::empty()));
    }
    if fds.is_empty() {
        if let Some(d) = slice.remaining() {
            std::thread::sleep(d);
        }
        return Ok(Woke::Timeout);
    }
    match poll(&mut fds, slice.timespec().as_ref()) {
        Ok(0) | Err(Errno::INTR) => Ok(Woke::Timeout),
        Ok(_) => {
            if fd.is_some() && !fds[0].revents().is_empty() {
                Ok(Woke::Ready)
            } else {
                Ok(Woke::Watch)
            }
        }
        Err(e) => Err(Error::from(e).in_op("poll")),
    }
}

fn peer_gone() -> Error {
    Error::with_note(
        ErrorKind::Disconnected,
        "the peer closed its end while this end was waiting",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Fifo;

    fn scratch() -> ipc_testkit::TempDir {
        ipc_testkit::TempDir::new("fifo-open-unit")
    }

    #[test]
    fn path_fallback_reopens_the_same_inode_and_refuses_a_swap() {
        let dir = scratch();
        let fifo = Fifo::create(dir.join("f")).unwrap();
        let mut t = Target::resolve(fifo.path(), Owner::Me, "test").unwrap();
        t.via_proc = false;
        let r = t.reopen(OFlags::RDONLY | OFlags::NONBLOCK).unwrap();
        assert_eq!(fstat(&r).unwrap().st_ino, t.stat.st_ino);
        // Swap the path for another FIFO: the fallback must notice.
        let path = fifo.keep();
        std::fs::remove_file(&path).unwrap();
        let _other = Fifo::create(&path).unwrap();
        let e = t.reopen(OFlags::RDONLY | OFlags::NONBLOCK).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType, "{e}");
        // Through /proc the checked inode is still reachable, unlinked or not.
        t.via_proc = true;
        let r = t.reopen(OFlags::RDONLY | OFlags::NONBLOCK).unwrap();
        assert_eq!(fstat(&r).unwrap().st_ino, t.stat.st_ino);
    }

    #[test]
    fn path_fallback_waits_for_peers_with_deadlines() {
        let dir = scratch();
        let fifo = Fifo::create(dir.join("f")).unwrap();
        let mut t = Target::resolve(fifo.path(), Owner::Me, "test").unwrap();
        t.via_proc = false;
        let e = t
            .open_writer(Deadline::after(Duration::from_millis(10)), &[])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let r = t.open_reader(Deadline::Now).unwrap();
        let w = t.open_writer(Deadline::Never, &[]).unwrap();
        rustix::io::write(&w, b"x").unwrap();
        let mut b = [0u8; 1];
        assert_eq!(rustix::io::read(&r, &mut b).unwrap(), 1);
    }

    #[test]
    fn tee_probe_tells_no_writer_from_writer_without_consuming() {
        let dir = scratch();
        let fifo = Fifo::create(dir.join("f")).unwrap();
        let t = Target::resolve(fifo.path(), Owner::Me, "test").unwrap();
        let r = t.open_reader(Deadline::Now).unwrap();
        let e = wait_for_writer(r.as_fd(), Deadline::after(Duration::from_millis(10)), None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let w = t.open_writer(Deadline::Now, &[]).unwrap();
        wait_for_writer(r.as_fd(), Deadline::Now, None).unwrap();
        rustix::io::write(&w, b"abc").unwrap();
        wait_for_writer(r.as_fd(), Deadline::Now, None).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(
            rustix::io::read(&r, &mut b).unwrap(),
            3,
            "tee consumed nothing"
        );
        assert_eq!(&b[..3], b"abc");
    }

    #[test]
    fn watch_fd_error_ends_a_writer_wait() {
        let dir = scratch();
        let fifo = Fifo::create(dir.join("f")).unwrap();
        let t = Target::resolve(fifo.path(), Owner::Me, "test").unwrap();
        // A pipe whose reader is gone: its write end reports POLLERR.
        let (pr, pw) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        drop(pr);
        let e = t
            .open_writer(Deadline::after(Duration::from_secs(30)), &[pw.as_fd()])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }
}
