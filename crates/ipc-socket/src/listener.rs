//! [`Listener`]: a listening socket that accepts many clients, each its own connected
//! endpoint; socket files created with an exact mode and reclaimed safely when stale.
//!
//! # Creating the socket file
//!
//! `bind(2)` creates the socket file with the process's umask applied, and `fchmod` on a
//! socket does not reach the file. So the listener binds in a private directory it creates
//! beside the target (mode `0o700`, set with `chmod` whatever the umask, so no one else can
//! reach the file meanwhile and the owner can always bind in it), listens, removes the
//! access ACL the file may have inherited from a default ACL on the directory and `chmod`s
//! the file to the exact mode (the mode alone decides who may connect), then moves it into
//! place with `renameat2(RENAME_NOREPLACE)` (or `link(2)` where the filesystem lacks it),
//! which never replaces an existing name. Clients can only ever find the finished socket, already
//! listening, with its final mode.
//!
//! # Stale socket files
//!
//! If the name exists, the listener replaces it only when it is a socket (checked with
//! `lstat`, never following a symbolic link) and nothing listens there (a probe `connect` is
//! refused with `ECONNREFUSED`): a file left by a server that died. A live server gives
//! [`ErrorKind::AlreadyExists`]; anything that is not a socket gives [`ErrorKind::WrongType`]
//! and is left alone. Reclaimers take turns, holding an exclusive `flock(2)` on the directory
//! from the probe to the placement (a few system calls; a lock held over 2 s by another
//! process is [`ErrorKind::TimedOut`], never waited for forever): a placement never replaces
//! a name and only a reclaimer removes one, so the file unlinked is the one found stale. Of
//! several servers reclaiming one stale name at once, one gets it and the others report
//! `AlreadyExists`. (Processes that are not this library are not held back by the lock, and a
//! directory this user may write but not read is not locked.)
//!
//! Dropping the listener removes the socket file, if the name still refers to the file it
//! created (a relative name as it was at bind time, whatever the working directory is now),
//! and then closes the socket: a server reclaiming the name meanwhile finds it live. Only the
//! process that bound it removes the file: a copy in a forked child (a pre-fork server's
//! worker) that is dropped leaves it to the process still listening.
//!
//! A process killed in the middle of a bind leaves its staging directory (`.ipc-sock.PID.N`);
//! a later bind in the same directory removes such leftovers of this user once their process
//! is gone and they are a minute old.

use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ipc_core::fd::Interest;
use ipc_core::pipe::descriptor_error;
use ipc_core::{Deadline, Error, ErrorKind, Removable, RemoveGuard, Result};
use rustix::fs::{FileType, Mode, RenameFlags};
use rustix::io::Errno;
use rustix::net::SocketFlags;

use crate::conn::{Connected, Kind, established, socket, wait_or_expire};
use crate::{Address, Options};

/// A listening socket of kind `K` ([`Seqpacket`](crate::Seqpacket) or
/// [`Stream`](crate::Stream)). [`accept`](Listener::accept) takes `&self`, so several threads
/// can accept from one listener.
///
/// # Accepting in a poll loop or an async runtime
///
/// A listener is not a message endpoint and has no [`Readiness`](crate::Readiness) of its
/// own: its descriptor ([`AsFd`]) is readable while a connection waits to be accepted. Wait
/// for that (`poll`/`epoll`, or tokio's `AsyncFd` around the listener or a duplicate of its
/// descriptor), then call `accept(Deadline::Now)`; [`ErrorKind::WouldBlock`] means another
/// thread took the connection first (clear the readiness and wait again), and
/// [`ErrorKind::PermissionDenied`] is one connection refused by the policy (the listener goes
/// on). Each accepted endpoint implements `Readiness`, so `AsyncEndpoint::new(conn)` (feature
/// `tokio`) serves it from a task.
#[derive(Debug)]
pub struct Listener<K: Kind> {
    /// The socket file, removed on drop if the name still refers to it (a replacement is
    /// someone else's and stays). Declared before `fd`, so dropped first: while the socket
    /// still listens, no other server reclaims the name, so the file checked is the file
    /// removed (closed first, a server reclaiming the then stale name could put its own file
    /// there between this check and the unlink, and lose it).
    file: Option<RemoveGuard>,
    fd: OwnedFd,
    addr: Address,
    label: Arc<str>,
    opts: Options,
    /// The process that bound it: only it removes the socket file (a copy in a forked child
    /// leaves it to the process still listening).
    binder: rustix::process::Pid,
    _kind: PhantomData<fn() -> K>,
}

impl<K: Kind> Drop for Listener<K> {
    fn drop(&mut self) {
        if rustix::process::getpid() != self.binder {
            // A forked copy: the file is its binder's (the fields then drop as usual).
            if let Some(file) = self.file.take() {
                file.disarm();
            }
        }
    }
}

impl<K: Kind> Listener<K> {
    /// Binds and listens at `addr`: a socket file (created with `opts`' exact mode; a stale one
    /// reclaimed, see the [module documentation](self)), an abstract name, or an IP address and
    /// port (port 0 picks a free one: see [`local_addr`](Listener::local_addr)).
    ///
    /// Calls `socket(2)`, `bind(2)`, `listen(2)`; for a path also `mkdir`, `chmod`,
    /// `lremovexattr(system.posix_acl_access)`, `renameat2(RENAME_NOREPLACE)` and `rmdir`
    /// (over a stale file: `flock` on the directory, `lstat`, a probe `connect`, `unlink`);
    /// for TCP `SO_REUSEADDR`.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] (a server listens there), [`ErrorKind::WrongType`] (the
    /// path is not a socket), [`ErrorKind::InvalidName`] (too long for `sun_path`, or empty),
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Unsupported`] (seqpacket over TCP),
    /// [`ErrorKind::TimedOut`] (another process held the directory's lock for 2 s while a stale
    /// file was to be reclaimed).
    ///
    /// # References
    /// - [`bind(2)`](https://man7.org/linux/man-pages/man2/bind.2.html),
    ///   [`listen(2)`](https://man7.org/linux/man-pages/man2/listen.2.html),
    ///   [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html)
    #[doc(alias = "listen")]
    pub fn bind(addr: &Address, opts: &Options) -> Result<Listener<K>> {
        let label: Arc<str> = Arc::from(format!("{} listener {addr}", K::NAME));
        if K::TYPE == rustix::net::SocketType::SEQPACKET && !addr.is_unix() {
            return Err(Error::with_note(
                ErrorKind::Unsupported,
                "SOCK_SEQPACKET is Unix-domain only; use a Stream for TCP",
            )
            .on_shared(&label));
        }
        // Non-blocking: accept polls first and retries on EAGAIN (another thread or process may
        // take the connection between the two); accepted sockets do not inherit the flag.
        let fd = socket(addr, K::TYPE, true)?;
        let fail = |e: Errno, op: &'static str| match e {
            Errno::ADDRINUSE => Error::with_note(ErrorKind::AlreadyExists, "address in use")
                .with_source(e.into())
                .in_op(op)
                .on_shared(&label),
            e => Error::from(e).in_op(op).on_shared(&label),
        };
        let file = match addr {
            Address::Path(path) => Some(bind_path(&fd, path, opts, &label)?),
            Address::Abstract(_) => {
                rustix::net::bind(&fd, &addr.unix()?).map_err(|e| fail(e, "bind"))?;
                rustix::net::listen(&fd, opts.backlog).map_err(|e| fail(e, "listen"))?;
                None
            }
            Address::Inet(a) => {
                rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
                    .map_err(|e| fail(e, "setsockopt(SO_REUSEADDR)"))?;
                rustix::net::bind(&fd, a).map_err(|e| fail(e, "bind"))?;
                rustix::net::listen(&fd, opts.backlog).map_err(|e| fail(e, "listen"))?;
                None
            }
        };
        tracing::trace!(listener = %label, "listening");
        Ok(Listener {
            fd,
            addr: addr.clone(),
            label,
            opts: opts.clone(),
            file,
            binder: rustix::process::getpid(),
            _kind: PhantomData,
        })
    }

    /// The address asked for at bind time.
    pub fn address(&self) -> &Address {
        &self.addr
    }

    /// The address the socket is bound to (`getsockname(2)`): for TCP, with the port the kernel
    /// picked when port 0 was asked for.
    pub fn local_addr(&self) -> Result<Address> {
        match &self.addr {
            Address::Inet(_) => {
                let a = rustix::net::getsockname(&self.fd)
                    .map_err(|e| Error::from(e).in_op("getsockname").on_shared(&self.label))?;
                let a = std::net::SocketAddr::try_from(a).map_err(|_| {
                    Error::with_note(ErrorKind::Io, "not an IP address").on_shared(&self.label)
                })?;
                Ok(Address::Inet(a))
            }
            a => Ok(a.clone()),
        }
    }

    /// The options endpoints accepted here get.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Accepts the next connection before `deadline` (`poll(2)`, then `accept4(2)` with
    /// `SOCK_CLOEXEC`), reads the peer's credentials and checks them against the
    /// [`PeerPolicy`](crate::PeerPolicy) (Unix), or sets `TCP_NODELAY` (TCP).
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] / [`ErrorKind::TimedOut`] when no client came;
    /// [`ErrorKind::PermissionDenied`] naming the peer's uid when the policy refuses it (that
    /// connection is closed; the listener goes on), and so for any other failure of that one
    /// connection's setup (its credentials unreadable, say); [`ErrorKind::LimitExceeded`] at
    /// `RLIMIT_NOFILE`.
    ///
    /// # References
    /// - [`accept(2)`](https://man7.org/linux/man-pages/man2/accept.2.html)
    #[doc(alias = "accept4")]
    pub fn accept(&self, deadline: Deadline) -> Result<K> {
        self.accept_one(deadline)?
    }

    /// [`accept`](Listener::accept)'s work, its errors in two layers: the outer one the
    /// listener's (no client came, `accept4` failed, an endpoint cannot be made as
    /// configured), the inner one a single connection's, taken off the queue and closed (its
    /// peer refused by the policy, its credentials unreadable): a server goes on after it.
    pub(crate) fn accept_one(&self, deadline: Deadline) -> Result<Result<K>> {
        loop {
            match rustix::net::accept_with(&self.fd, SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    let peer = match established(fd.as_fd(), &self.addr, &self.label, &self.opts) {
                        Ok(peer) => peer,
                        Err(e) => return Ok(Err(e)),
                    };
                    tracing::trace!(listener = %self.label, ?peer, "accepted");
                    let label: Arc<str> = Arc::from(match peer {
                        Some(p) => format!("{} socket {} (peer pid {})", K::NAME, self.addr, p.pid),
                        None => match rustix::net::getpeername(&fd).ok().flatten() {
                            Some(a) => match std::net::SocketAddr::try_from(a) {
                                Ok(a) => format!("{} socket {} (peer {a})", K::NAME, self.addr),
                                Err(_) => format!("{} socket {}", K::NAME, self.addr),
                            },
                            None => format!("{} socket {}", K::NAME, self.addr),
                        },
                    });
                    return K::from_connected(
                        fd,
                        Connected {
                            label,
                            peer,
                            max_message: self.opts.max_message,
                        },
                    )
                    .map(Ok);
                }
                Err(Errno::INTR | Errno::CONNABORTED) => {}
                Err(Errno::AGAIN) => wait_or_expire(
                    self.fd.as_fd(),
                    Interest::Readable,
                    deadline,
                    "accept",
                    &self.label,
                )?,
                // EMFILE, ENFILE: the connection stays queued for a later accept.
                Err(e) => {
                    return Err(descriptor_error(e).in_op("accept").on_shared(&self.label));
                }
            }
        }
    }
}

impl<K: Kind> AsFd for Listener<K> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<K: Kind> AsRawFd for Listener<K> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Binds `fd` at `path` with the exact mode, race-free (see the module documentation); returns
/// the guard that removes the file, only while the name still refers to it.
fn bind_path(fd: &OwnedFd, path: &Path, opts: &Options, label: &Arc<str>) -> Result<RemoveGuard> {
    let fail = |e: Errno, op: &'static str| Error::from(e).in_op(op).on_shared(label);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.file_name().is_none() {
        return Err(Error::with_note(ErrorKind::InvalidName, "no file name").on_shared(label));
    }
    // Check the final name fits before any work (the private directory's name is shorter
    // or equal in most cases; a too-long one is reported by bind below).
    Address::Path(path.to_path_buf()).unix()?;
    sweep_staging(&dir);
    let tmp = PrivateDir::new(&dir).map_err(|e| e.on_shared(label))?;
    let staged = tmp.0.join("s");
    let addr = rustix::net::SocketAddrUnix::new(staged.as_path()).map_err(|_| {
        Error::with_note(
            ErrorKind::InvalidName,
            format!(
                "the staging path {} does not fit in sun_path (107 bytes): use a shorter \
                 directory",
                staged.display()
            ),
        )
        .on_shared(label)
    })?;
    rustix::net::bind(fd, &addr).map_err(|e| fail(e, "bind"))?;
    rustix::net::listen(fd, opts.backlog).map_err(|e| fail(e, "listen"))?;
    // A default ACL on the directory gives a new file an access ACL of its own (named users
    // and groups beyond the mode, the owning group's entry apart from the mode's group bits):
    // removed, so that the mode alone decides, exactly.
    match rustix::fs::lremovexattr(&staged, "system.posix_acl_access") {
        Ok(()) | Err(Errno::NODATA | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(fail(e, "removexattr(system.posix_acl_access)")),
    }
    rustix::fs::chmod(&staged, Mode::from_raw_mode(opts.mode)).map_err(|e| fail(e, "chmod"))?;
    let st = rustix::fs::lstat(&staged).map_err(|e| fail(e, "lstat"))?;
    let mut reclaimed = false;
    loop {
        match place(&staged, path) {
            Ok(()) => break,
            Err(Errno::EXIST) if !reclaimed => {
                reclaimed = true;
                // Reclaimers take turns (see the module documentation): the name's file
                // cannot change between the probe and the unlink, as only a reclaimer
                // removes one and a placement never replaces one.
                let _turn = ipc_core::fd::DirLock::new(&dir).map_err(|e| e.on_shared(label))?;
                if find_stale(path, label)? {
                    tracing::trace!(path = %path.display(), "reclaiming a stale socket file");
                    match rustix::fs::unlink(path) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(e) => return Err(fail(e, "unlink")),
                    }
                }
                match place(&staged, path) {
                    Ok(()) => break,
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(fail(e, "rename")),
                }
            }
            Err(Errno::EXIST) => {
                return Err(Error::with_note(
                    ErrorKind::AlreadyExists,
                    "another server took the name while this one reclaimed it",
                )
                .in_op("bind")
                .on_shared(label));
            }
            Err(e) => return Err(fail(e, "rename")),
        }
    }
    drop(tmp);
    tracing::trace!(path = %path.display(), mode = format_args!("{:o}", opts.mode), "socket file created");
    // Removed by an absolute name: after a change of working directory a relative one would
    // name another file (left alone), and the socket file would stay.
    let path = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    Ok(RemoveGuard::new(Removable::SameFile {
        path,
        dev: st.st_dev,
        ino: st.st_ino,
    }))
}

/// Moves `from` to `to` unless `to` exists: `renameat2(RENAME_NOREPLACE)`, or `link` +
/// `unlink` where the filesystem does not support the flag.
fn place(from: &Path, to: &Path) -> std::result::Result<(), Errno> {
    use rustix::fs::CWD;
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => {
            rustix::fs::link(from, to)?;
            let _ = rustix::fs::unlink(from);
            Ok(())
        }
        r => r,
    }
}

/// Whether the file at `path` is a socket nothing listens on (a stale file); `false` when the
/// name is gone; refuses anything else.
fn find_stale(path: &Path, label: &Arc<str>) -> Result<bool> {
    let st = match rustix::fs::lstat(path) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(Error::from(e).in_op("lstat").on_shared(label)),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            "the path exists and is not a socket: refusing to replace it",
        )
        .in_op("bind")
        .on_shared(label));
    }
    // A file no process holds a socket for refuses every connect with ECONNREFUSED, whatever
    // the probe's type; a live socket of another type answers EPROTOTYPE.
    let addr = Address::Path(path.to_path_buf());
    let probe = socket(&addr, rustix::net::SocketType::STREAM, true)?;
    match rustix::net::connect(&probe, &addr.unix()?) {
        Err(Errno::CONNREFUSED) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Ok(()) | Err(Errno::AGAIN | Errno::INPROGRESS | Errno::PROTOTYPE) => Err(Error::with_note(
            ErrorKind::AlreadyExists,
            "a server is listening there",
        )
        .in_op("bind")
        .on_shared(label)),
        Err(e) => Err(Error::from(e).in_op("connect (probe)").on_shared(label)),
    }
}

/// How long a staging directory of a process that no longer exists stays before a bind in
/// the same directory removes it: a bind holds one for microseconds, so an older one was left
/// by a process killed in the middle of its bind (a process of another PID namespace, whose
/// pid means nothing here, binding now has a younger one).
const STAGING_LEFT_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the staging directories processes killed in the middle of a bind left in `dir`:
/// named `.ipc-sock.PID.N`, this user's, the process gone (`kill(PID, 0)` says `ESRCH`) and
/// untouched for [`STAGING_LEFT_AFTER`]. Best effort: what cannot be removed stays.
fn sweep_staging(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, n)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".ipc-sock."))
            .and_then(|r| r.split_once('.'))
        else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<i32>(), n.parse::<u64>().is_ok()) else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let idle = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|d| d >= STAGING_LEFT_AFTER);
        let gone = rustix::process::Pid::from_raw(pid)
            .is_some_and(|p| rustix::process::test_kill_process(p) == Err(Errno::SRCH));
        if meta.is_dir() && meta.uid() == me && idle && gone {
            tracing::debug!(path = %path.display(), "removing a staging directory left by a killed bind");
            let _ = rustix::fs::unlink(path.join("s"));
            let _ = rustix::fs::rmdir(&path);
        }
    }
}

/// A directory of mode 0o700 beside the socket file, removed (with what is left in it) on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new(parent: &Path) -> Result<PrivateDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let mode = Mode::from_raw_mode(0o700);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = parent.join(format!(".ipc-sock.{pid}.{n}"));
            match rustix::fs::mkdir(&dir, mode) {
                Ok(()) => {
                    let dir = PrivateDir(dir);
                    // `mkdir` applies the umask, which may take the owner's own bits (0o277
                    // leaves r-x: no socket could be bound in it); the mode is exact, as the
                    // socket file's is.
                    rustix::fs::chmod(&dir.0, mode)
                        .map_err(|e| Error::from(e).in_op("chmod (staging directory)"))?;
                    return Ok(dir);
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::from(e).in_op("mkdir (staging directory)")),
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = rustix::fs::unlink(self.0.join("s"));
        let _ = rustix::fs::rmdir(&self.0);
    }
}
