//! File-descriptor helpers shared by the fd-based mechanisms: waiting for readiness until a
//! [`Deadline`], the one retry loop every bounded descriptor call goes through ([`retry`]:
//! `EINTR`, `EAGAIN`, readiness), per-call non-blocking I/O ([`Nowait`]), the non-blocking flag,
//! and writes that never raise `SIGPIPE`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;

use crate::{Blocked, Deadline, Detail, Error};

/// Why a bounded descriptor call ([`retry`]) stopped without moving any bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The OS said no (anything but `EINTR` and `EAGAIN`, which [`retry`] handles).
    Os(Errno),
    /// The deadline passed (or was [`Deadline::Now`]) before the descriptor was ready.
    Expired,
}

impl Stop {
    /// The error a `*_deadline` method reports: would-block or timed out (as
    /// [`Deadline::expired_error`] says, `blocked` telling which way), or the OS error; named
    /// after `object` and `op`. Neither allocates: the expected path of an endpoint stays off
    /// the heap. `EPIPE` gets a note saying no process has the read end open.
    pub fn into_error(
        self,
        deadline: Deadline,
        blocked: Blocked,
        op: &'static str,
        object: &Arc<str>,
    ) -> Error {
        match self {
            Stop::Expired => deadline.expired_error(blocked).in_op(op).on_shared(object),
            Stop::Os(e) => {
                let mut err = Error::from(e);
                if e == Errno::PIPE {
                    err = err.with_detail(Detail::Note("no process has the read end open".into()));
                }
                let err = err.in_op(op).on_shared(object);
                tracing::debug!(error = %err, "descriptor operation failed");
                err
            }
        }
    }
}

/// The one retry loop of the fd-based endpoints: runs `attempt` (one syscall that must not
/// block past `deadline`) until it moves bytes or fails for real. `EINTR` tries again;
/// `EAGAIN` waits (`poll(2)`) until every `(fd, interest)` in `ready` is ready, then tries
/// again, or stops with [`Stop::Expired`] when `deadline` passes first (at once for
/// [`Deadline::Now`]). Returns what the successful attempt returned (0 included: end-of-file).
///
/// Used by pipe and FIFO ends ([`crate::pipe`]), the framing endpoints ([`crate::stream`]) and
/// the splice family of `ipc-pipe`.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
#[inline]
pub fn retry(
    ready: &[(BorrowedFd<'_>, Interest)],
    deadline: Deadline,
    mut attempt: impl FnMut() -> Result<usize, Errno>,
) -> Result<usize, Stop> {
    loop {
        match attempt() {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if deadline == Deadline::Now {
                    return Err(Stop::Expired);
                }
                for &(fd, interest) in ready {
                    if !wait(fd, interest, deadline).map_err(Stop::Os)? {
                        return Err(Stop::Expired);
                    }
                }
            }
            Err(e) => return Err(Stop::Os(e)),
        }
    }
}

/// How calls with a deadline avoid blocking on a stream descriptor without relying on, or
/// touching, the `O_NONBLOCK` flag, which the open file description shares with every clone of
/// the descriptor and every process holding it: any of them may set or clear it at any time.
///
/// A call without a deadline is the plain syscall (blocking on a blocking descriptor; on a
/// non-blocking one `EAGAIN`, and [`retry`] polls). A call with a deadline uses
/// `preadv2`/`pwritev2` with `RWF_NOWAIT` (per call) whatever the flag says, and [`retry`]
/// polls for the time left: so it ends at its deadline also when another handle cleared
/// `O_NONBLOCK` under it. On kernels without `RWF_NOWAIT` for pipes, `O_NONBLOCK` is set once
/// ([`in_fallback`](Nowait::in_fallback): whoever sets the flag for this descriptor keeps it
/// set then) and every call relies on it.
///
/// The state is an atomic flag, so ends shared between threads (`&PipeReader` implements
/// `Read`) need no lock.
#[derive(Debug, Default)]
pub struct Nowait {
    /// `RWF_NOWAIT` is unsupported on this descriptor: `O_NONBLOCK` was set instead.
    fallback: AtomicBool,
}

impl Nowait {
    /// Whether this descriptor lacks `RWF_NOWAIT`, so that calls with a deadline rely on
    /// `O_NONBLOCK`, which this crate then set (and which must stay set).
    pub fn in_fallback(&self) -> bool {
        self.fallback.load(Ordering::Relaxed)
    }

    /// One I/O attempt: `io(false)` is the plain syscall (blocking on a blocking descriptor),
    /// `io(true)` the same with `RWF_NOWAIT`. Blocking is used only when `deadline` is `Never`.
    /// Falls back to `O_NONBLOCK` where `RWF_NOWAIT` is unsupported.
    #[inline]
    pub fn attempt(
        &self,
        fd: BorrowedFd<'_>,
        deadline: Deadline,
        mut io: impl FnMut(bool) -> Result<usize, Errno>,
    ) -> Result<usize, Errno> {
        if deadline == Deadline::Never || self.fallback.load(Ordering::Relaxed) {
            return io(false);
        }
        match io(true) {
            Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::SPIPE) => {
                tracing::debug!(
                    fd = fd.as_raw_fd(),
                    "RWF_NOWAIT unsupported here; setting O_NONBLOCK"
                );
                set_nonblocking(fd, true)?;
                self.fallback.store(true, Ordering::Relaxed);
                io(false)
            }
            r => r,
        }
    }
}

/// `writev` or `pwritev2(RWF_NOWAIT)` at the current position, without `SIGPIPE`: the `io`
/// of a write through [`Nowait::attempt`]. A single slice without `nowait` goes out with plain
/// `write`, which the kernel handles measurably faster than a `writev` of one slice.
#[inline]
pub fn write_iov(
    sigpipe: SigpipeGuard,
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    nowait: bool,
) -> Result<usize, Errno> {
    sigpipe.run(|| match iov {
        _ if nowait => rustix::io::pwritev2(fd, iov, u64::MAX, rustix::io::ReadWriteFlags::NOWAIT),
        [one] => rustix::io::write(fd, one),
        _ => rustix::io::writev(fd, iov),
    })
}

/// `read` or `preadv2(RWF_NOWAIT)` at the current position: the `io` of a read through
/// [`Nowait::attempt`].
#[inline]
pub fn read_buf(fd: BorrowedFd<'_>, buf: &mut [u8], nowait: bool) -> Result<usize, Errno> {
    if nowait {
        let iov = &mut [std::io::IoSliceMut::new(buf)];
        // Offset -1 (u64::MAX): the current position, as read(2) uses.
        rustix::io::preadv2(fd, iov, u64::MAX, rustix::io::ReadWriteFlags::NOWAIT)
    } else {
        rustix::io::read(fd, buf)
    }
}

/// `readv` or `preadv2(RWF_NOWAIT)` at the current position: a scattered read through
/// [`Nowait::attempt`] (the kernel fills the slices in order).
#[inline]
pub fn read_iov(
    fd: BorrowedFd<'_>,
    iov: &mut [std::io::IoSliceMut<'_>],
    nowait: bool,
) -> Result<usize, Errno> {
    if nowait {
        rustix::io::preadv2(fd, iov, u64::MAX, rustix::io::ReadWriteFlags::NOWAIT)
    } else {
        rustix::io::readv(fd, iov)
    }
}

/// Which readiness to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Data to read, or end-of-file.
    Readable,
    /// Room to write, or the reader gone.
    Writable,
}

/// Waits until `fd` is ready for `interest` or `deadline` passes (`poll(2)`).
///
/// Returns `Ok(true)` when the fd is ready, hung up or in error (the next read or write tells
/// which), and `Ok(false)` when the deadline passed first. Interrupted waits (`EINTR`) resume
/// with the time that is left.
///
/// # References
/// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
#[doc(alias = "poll")]
pub fn wait(fd: BorrowedFd<'_>, interest: Interest, deadline: Deadline) -> Result<bool, Errno> {
    let events = match interest {
        Interest::Readable => PollFlags::IN,
        Interest::Writable => PollFlags::OUT,
    };
    loop {
        let timeout = deadline.timespec();
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {
                if deadline.has_passed() {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The credentials the kernel recorded for the peer of the Unix-domain socket `fd`
/// (`getsockopt(SO_PEERCRED)`): pid, effective uid and gid, translated into this process's
/// namespaces. The pid is 0 when the peer's process is not visible in this pid namespace (a
/// server in a container, its client outside), which rustix's `socket_peercred` cannot
/// represent (its `Pid` is non-zero): hence this call through libc.
///
/// # References
/// - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html), `SO_PEERCRED`
#[doc(alias = "SO_PEERCRED")]
pub fn peer_credentials(fd: BorrowedFd<'_>) -> Result<(i32, u32, u32), Errno> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable `ucred` of `len` bytes owned by this frame; the kernel
    // writes at most `len` bytes and stores the length it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(Errno::INVAL);
    }
    Ok((cred.pid, cred.uid, cred.gid))
}

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
///
/// The flag belongs to the open file description, so every descriptor that shares it (a
/// `dup`, or the copy a child inherited) sees the change.
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> Result<(), Errno> {
    let fd = fd.as_fd();
    let flags = fcntl_getfl(fd)?;
    let new = if nonblocking {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    if new != flags {
        fcntl_setfl(fd, new)?;
    }
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd`.
pub fn is_nonblocking(fd: impl AsFd) -> Result<bool, Errno> {
    Ok(fcntl_getfl(fd)?.contains(OFlags::NONBLOCK))
}

/// How a writer avoids being killed by `SIGPIPE` when the reader is gone.
///
/// A write to a pipe or FIFO with no reader fails with `EPIPE` *and* raises `SIGPIPE`, whose
/// default action ends the process. Rust programs ignore `SIGPIPE` from startup, but a library
/// cannot count on that: it may be called from a C program, or from a process that reset the
/// disposition. [`SigpipeGuard::detect`] looks at the disposition once, when an endpoint is made:
///
/// - ignored or handled: writes are plain writes, at no extra cost;
/// - default: each write blocks `SIGPIPE` for the calling thread, and consumes the `SIGPIPE`
///   it may have raised before unblocking (three extra syscalls). A write raises it with
///   `EPIPE`, and also when it wrote part of its bytes, blocked, and the reader left: the
///   kernel then returns the partial count, and the signal is taken all the same. When the
///   calling thread has `SIGPIPE` blocked already (a mask inherited across `exec`, a section
///   that blocks signals), the mask is left alone and the signal the write raised is taken
///   all the same (one `sigpending` more), so it does not kill the process when the program
///   unblocks it; a `SIGPIPE` that was pending before the write is the program's and left.
///
/// Either way the caller sees `EPIPE` or a short count, never a dead process.
///
/// The disposition is read when the endpoint is made, not per write (that would cost a
/// syscall per message on the fast path): a program that sets `SIGPIPE` to its default action
/// after making an endpoint is not covered by that endpoint. Set the disposition first, or
/// make the endpoint again. (A `SIGPIPE` sent to the process by another process during a
/// guarded write may be taken as well.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigpipeGuard {
    /// The disposition is not the default: nothing to do.
    NotNeeded,
    /// The disposition is the default: guard each write.
    PerWrite,
}

impl SigpipeGuard {
    /// Reads the process's current `SIGPIPE` disposition (`sigaction(2)`, query only).
    pub fn detect() -> SigpipeGuard {
        // SAFETY: `sigaction` with a null new action only reads the current disposition into
        // `old`, a properly sized, writable `sigaction` struct owned by this frame.
        let handler = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) != 0 {
                // Cannot tell: take the safe path.
                return SigpipeGuard::PerWrite;
            }
            old.sa_sigaction
        };
        if handler == libc::SIG_DFL {
            SigpipeGuard::PerWrite
        } else {
            SigpipeGuard::NotNeeded
        }
    }

    /// Runs `write`, a write syscall, so that it cannot raise `SIGPIPE` (see the type's
    /// documentation).
    #[inline]
    pub fn run(self, write: impl FnOnce() -> Result<usize, Errno>) -> Result<usize, Errno> {
        match self {
            SigpipeGuard::NotNeeded => write(),
            SigpipeGuard::PerWrite => with_sigpipe_blocked(write),
        }
    }

    /// `write(2)` on `fd`, without `SIGPIPE`.
    pub fn write(self, fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
        self.run(|| rustix::io::write(fd, buf))
    }

    /// `writev(2)` on `fd`, without `SIGPIPE`.
    pub fn writev(self, fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> Result<usize, Errno> {
        self.run(|| rustix::io::writev(fd, bufs))
    }
}

/// Runs `write` with `SIGPIPE` blocked for this thread; if it failed with `EPIPE`, takes the
/// `SIGPIPE` it raised off the thread's pending set before restoring the mask.
fn with_sigpipe_blocked(write: impl FnOnce() -> Result<usize, Errno>) -> Result<usize, Errno> {
    // SAFETY: `sigemptyset`/`sigaddset` initialise a local `sigset_t`; `pthread_sigmask` reads
    // `set` and writes the previous mask into the local `old`. No pointer outlives this block.
    let (set, old) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        (set, old)
    };
    // SAFETY: `old` was filled by `pthread_sigmask` above.
    let already_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
    // Blocked by the caller already: a SIGPIPE this write raises would stay pending and kill
    // the process when the caller unblocks it (or a thread that inherited the mask does). It is
    // taken below like any other, unless one was pending before the write: that one is the
    // caller's, and told apart from the write's it cannot be, so both are left.
    let theirs = already_blocked && sigpipe_pending();
    let result = write();
    if !theirs {
        // A write raises SIGPIPE whenever it finds no reader: with `EPIPE` when nothing went
        // in, and also when it wrote part of its bytes, blocked, and the reader left (the
        // kernel then returns the partial count, not `EPIPE`). In either case the signal is
        // pending for this thread now (none was before: it was not blocked, or it was and
        // none was pending); take it without waiting. A full count raised nothing, but the
        // caller's length is not known here, so this is checked after every successful write:
        // this mode is the slow path, for programs that run with SIGPIPE at its default action.
        if matches!(result, Ok(_) | Err(Errno::PIPE)) {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `set` is an initialised signal set and `zero` a valid timespec; a null
            // `siginfo` pointer is allowed.
            unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
        }
    }
    if !already_blocked {
        // SAFETY: restores the mask read above; `old` is an initialised signal set.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    result
}

/// Whether a `SIGPIPE` is pending for this thread or the process (`sigpending(2)`).
fn sigpipe_pending() -> bool {
    // SAFETY: `pending` is a local signal set that `sigpending` fills before `sigismember`
    // reads it; an all-zero `sigset_t` is a valid value of that plain C type.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1
    }
}

/// An exclusive `flock(2)` on a directory, held while a stale file in it (a socket file, a
/// FIFO of a dead listener) is replaced, so processes replacing the same one take turns:
/// released on drop, or when the process dies.
#[derive(Debug)]
pub struct DirLock {
    _fd: std::os::fd::OwnedFd,
}

impl DirLock {
    /// How long to wait for another replacer's turn: one takes a few system calls, so a longer
    /// hold is a stuck or hostile process, reported rather than waited for forever.
    pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

    /// The lock on `dir`; `None` when this user cannot open it (a directory it may write but
    /// not read: there replacers cannot take turns).
    ///
    /// Errors: [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) after [`PATIENCE`](Self::PATIENCE)
    /// held by another process; the descriptor limit; others as the kernel says.
    pub fn new(dir: &std::path::Path) -> crate::Result<Option<DirLock>> {
        use rustix::fs::{FlockOperation, Mode, OFlags};
        let fd = match rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ACCESS | Errno::PERM) => {
                tracing::debug!(dir = %dir.display(), "cannot open the directory to lock it");
                return Ok(None);
            }
            Err(e) => {
                return Err(crate::pipe::descriptor_error(e).in_op("open (directory to lock)"));
            }
        };
        let start = std::time::Instant::now();
        loop {
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(DirLock { _fd: fd })),
                Err(Errno::INTR) => {}
                Err(Errno::WOULDBLOCK) if start.elapsed() < Self::PATIENCE => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(Errno::WOULDBLOCK) => {
                    return Err(Error::with_note(
                        crate::ErrorKind::TimedOut,
                        format!(
                            "another process has held a lock (flock) on {} for {:?}: this \
                             library holds it only while it replaces a stale file there",
                            dir.display(),
                            Self::PATIENCE
                        ),
                    )
                    .in_op("flock"));
                }
                Err(e) => return Err(Error::from(e).in_op("flock")),
            }
        }
    }
}

/// Where `shm_open` (glibc's and rustix's) and `sem_open` keep their files.
pub const SHM_DIR: &str = "/dev/shm";

/// Makes an unnamed file of `size` bytes in [`SHM_DIR`] (`O_TMPFILE`, close-on-exec) with
/// exactly `mode` (`fchmod`: the umask does not apply), every block of it reserved, for a
/// POSIX segment or a named semaphore to be made whole before [`link_unnamed`] names it.
///
/// tmpfs lets a file grow past the mount's free space, and a page it then has no room for is a
/// `SIGBUS` in the process that touches it; so the blocks are reserved here (`fallocate`, in
/// slices of 8 MiB, each tried again when a signal interrupts it: tmpfs gives a reservation up,
/// undoing it, whenever a signal is pending).
///
/// Errors: [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) naming `/dev/shm`'s
/// free bytes ([`knob::shm_space_error`](crate::knob::shm_space_error)), the descriptor
/// limit, or `RLIMIT_FSIZE` ([`knob::check_file_size`](crate::knob::check_file_size), checked
/// first: past it the kernel sends `SIGXFSZ`); others as the kernel says, each with the call
/// that failed.
pub fn create_unnamed_shm(mode: u32, size: u64) -> crate::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{FallocateFlags, Mode, OFlags};
    const SLICE: u64 = 8 << 20;
    crate::knob::check_file_size(size).map_err(|e| e.in_op("ftruncate"))?;
    let fd = rustix::fs::open(
        SHM_DIR,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| crate::knob::shm_file_error(e).in_op("open(O_TMPFILE)"))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
        .map_err(|e| Error::from(e).in_op("fchmod"))?;
    rustix::fs::ftruncate(&fd, size)
        .map_err(|e| crate::knob::shm_space_error(e).in_op("ftruncate"))?;
    let mut at = 0;
    while at < size {
        let len = SLICE.min(size - at);
        match rustix::fs::fallocate(&fd, FallocateFlags::empty(), at, len) {
            Ok(()) => at += len,
            Err(Errno::INTR) => {}
            Err(e) => return Err(crate::knob::shm_space_error(e).in_op("fallocate")),
        }
    }
    Ok(fd)
}

/// Gives the unnamed file open at `fd` (made with `O_TMPFILE`) the name `path`: `linkat` of
/// `/proc/self/fd/N`, or, without `/proc`, of the descriptor itself (`AT_EMPTY_PATH`, which
/// needs `CAP_DAC_READ_SEARCH`). Fails if anything is at `path` (a symbolic link there is not
/// followed), so a file made whole in private appears under its name at once, or not at all.
///
/// Errors: [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) if the name is
/// taken; [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) without `/proc` and
/// without that capability; others as the kernel says.
///
/// # References
/// - [`open(2)`, `O_TMPFILE`](https://man7.org/linux/man-pages/man2/open.2.html)
/// - [`linkat(2)`](https://man7.org/linux/man-pages/man2/linkat.2.html)
pub fn link_unnamed(fd: BorrowedFd<'_>, path: &std::path::Path) -> crate::Result<()> {
    use rustix::fs::{AtFlags, CWD, linkat};
    let via_proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let linked = match linkat(CWD, via_proc.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Err(Errno::NOENT) if !std::path::Path::new("/proc/self/fd").exists() => {
            linkat(fd, "", CWD, path, AtFlags::EMPTY_PATH).map_err(|e| match e {
                Errno::NOENT | Errno::PERM => Error::with_note(
                    crate::ErrorKind::Unsupported,
                    "naming a file made unnamed (O_TMPFILE) needs /proc mounted, or \
                     CAP_DAC_READ_SEARCH",
                )
                .with_source(e.into()),
                e => Error::from(e),
            })
        }
        other => other.map_err(Error::from),
    };
    linked.map_err(|e| e.in_op("linkat"))
}

/// Tries `attempt` until it finds what it looks for or `deadline` passes, trying again each
/// time a name is made in `dir` (created, linked or renamed there: `inotify`,
/// `IN_CREATE | IN_MOVED_TO`), for an open that waits for another process to make its object.
/// `attempt` returns `Ok(None)` for "not there yet", which it must say by looking anew each
/// time; anything else ends the wait. The watch is set before the first attempt, so a name
/// made between an attempt and the wait is not missed. Returns `Ok(None)` when `deadline`
/// passes first.
///
/// Where no watch can be set (no inotify instance or watch left: `fs.inotify.max_user_instances`,
/// `max_user_watches`; a directory that cannot be watched), it tries again in growing sleeps
/// of 1 to 50 ms instead, which costs more wake-ups but finds the same.
///
/// # References
/// - [`inotify(7)`](https://man7.org/linux/man-pages/man7/inotify.7.html)
pub fn wait_for_name<T>(
    dir: &std::path::Path,
    deadline: Deadline,
    mut attempt: impl FnMut() -> crate::Result<Option<T>>,
) -> crate::Result<Option<T>> {
    use rustix::fs::inotify;
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .and_then(|fd| {
            inotify::add_watch(
                &fd,
                dir,
                inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
            )
            .map(|_| fd)
        })
        .inspect_err(
            |e| tracing::debug!(error = %e, dir = %dir.display(), "no inotify watch; polling"),
        )
        .ok();
    let mut nap = std::time::Duration::from_millis(1);
    loop {
        if let Some(found) = attempt()? {
            return Ok(Some(found));
        }
        if deadline.has_passed() {
            return Ok(None);
        }
        match &watch {
            Some(fd) => {
                if !wait(fd.as_fd(), Interest::Readable, deadline)
                    .map_err(|e| Error::from(e).in_op("poll(inotify)"))?
                {
                    return attempt();
                }
                // Drain what came: each batch of names is one more look.
                let mut events = [0u8; 4096];
                while matches!(rustix::io::read(fd, &mut events), Ok(n) if n > 0) {}
            }
            None => {
                let left = deadline.remaining().unwrap_or(nap);
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(std::time::Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wait_for_a_name_wakes_when_it_is_made_and_ends_at_its_deadline() {
        let dir = std::env::temp_dir().join(format!("ipc-core-wait-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("made");
        let look =
            |f: &std::path::Path| -> crate::Result<Option<()>> { Ok(f.exists().then_some(())) };
        let maker = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                std::fs::write(file, b"x").unwrap();
            })
        };
        let found = wait_for_name(&dir, Deadline::after(Duration::from_secs(60)), || {
            look(&file)
        });
        maker.join().unwrap();
        assert_eq!(found.unwrap(), Some(()));
        let none = wait_for_name(&dir, Deadline::after(Duration::from_millis(20)), || {
            look(&dir.join("never"))
        });
        assert_eq!(none.unwrap(), None);
        // An error from the attempt ends the wait at once.
        let e = wait_for_name(&dir, Deadline::Never, || -> crate::Result<Option<()>> {
            Err(Error::new(crate::ErrorKind::WrongType))
        });
        assert_eq!(e.unwrap_err().kind(), crate::ErrorKind::WrongType);
        std::fs::remove_dir_all(&dir).unwrap();
        // A directory that cannot be watched (here: none): the same, by sleeps.
        let mut tries = 0;
        let found = wait_for_name(&dir, Deadline::after(Duration::from_secs(60)), || {
            tries += 1;
            Ok((tries == 5).then_some(()))
        });
        assert_eq!((found.unwrap(), tries), (Some(()), 5));
    }

    #[test]
    fn wait_times_out_on_an_empty_pipe_and_wakes_on_data() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let d = Deadline::after(Duration::from_millis(20));
        assert!(!wait(r.as_fd(), Interest::Readable, d).unwrap());
        assert!(!wait(r.as_fd(), Interest::Readable, Deadline::Now).unwrap());
        rustix::io::write(&w, b"x").unwrap();
        assert!(wait(r.as_fd(), Interest::Readable, Deadline::Never).unwrap());
    }

    #[test]
    fn guarded_write_to_a_closed_pipe_is_epipe() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        drop(r);
        for guard in [SigpipeGuard::PerWrite, SigpipeGuard::NotNeeded] {
            assert_eq!(guard.write(w.as_fd(), b"x"), Err(Errno::PIPE));
        }
    }

    #[test]
    fn nonblocking_flag_round_trips() {
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        set_nonblocking(&r, true).unwrap();
        assert!(is_nonblocking(&r).unwrap());
        set_nonblocking(&r, false).unwrap();
        assert!(!is_nonblocking(&r).unwrap());
    }
}
