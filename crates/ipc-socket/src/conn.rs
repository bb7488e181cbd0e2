//! What every socket endpoint shares: [`Options`], making a socket, connecting with a deadline,
//! waiting for readiness, and the [`Kind`] trait a [`Listener`](crate::Listener) is generic
//! over.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use ipc_core::fd::{Interest, set_nonblocking, wait};
use ipc_core::pipe::descriptor_error;
use ipc_core::{Blocked, Deadline, Error, ErrorKind, Result};
use rustix::io::Errno;
use rustix::net::{SocketFlags, SocketType};

use crate::{Address, PeerCred, PeerPolicy};

/// The default largest message: 64 KiB.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 10;

/// How sockets are made: the socket file's mode, the peer policy, the largest message, the
/// listen backlog. `Options::default()` is mode `0o600`, [`PeerPolicy::SameUser`], 64 KiB
/// messages, a backlog of 128.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub(crate) mode: u32,
    pub(crate) peer: PeerPolicy,
    pub(crate) max_message: usize,
    pub(crate) backlog: i32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: 0o600,
            peer: PeerPolicy::SameUser,
            max_message: DEFAULT_MAX_MESSAGE,
            backlog: 128,
        }
    }
}

impl Options {
    /// The defaults.
    pub fn new() -> Options {
        Options::default()
    }

    /// The permission bits of a listener's socket file (connecting needs write permission on
    /// it). Exact: the umask does not apply. Default `0o600`.
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode & 0o7777;
        self
    }

    /// Which peers to accept (Unix-domain only). Default [`PeerPolicy::SameUser`].
    #[must_use]
    pub fn peer(mut self, policy: PeerPolicy) -> Options {
        self.peer = policy;
        self
    }

    /// The largest message an endpoint sends or receives. Default 64 KiB.
    #[must_use]
    pub fn max_message(mut self, max: usize) -> Options {
        self.max_message = max;
        self
    }

    /// The `listen(2)` backlog. Default 128 (the kernel caps it at `net.core.somaxconn`).
    #[must_use]
    pub fn backlog(mut self, backlog: i32) -> Options {
        self.backlog = backlog;
        self
    }

    /// The largest message.
    pub fn max_message_size(&self) -> usize {
        self.max_message
    }
}

/// A kind of connected endpoint a [`Listener`](crate::Listener) accepts and a client connects:
/// [`Seqpacket`](crate::Seqpacket) or [`Stream`](crate::Stream). Sealed.
pub trait Kind: Sized + sealed::Sealed {
    /// The socket type.
    #[doc(hidden)]
    const TYPE: SocketType;
    /// Short name for labels ("seqpacket", "stream").
    #[doc(hidden)]
    const NAME: &'static str;

    /// Wraps a connected socket.
    #[doc(hidden)]
    fn from_connected(fd: OwnedFd, conn: Connected) -> Result<Self>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// What a freshly connected (or accepted) socket comes with.
#[doc(hidden)]
#[derive(Debug)]
pub struct Connected {
    pub(crate) label: Arc<str>,
    pub(crate) peer: Option<PeerCred>,
    pub(crate) max_message: usize,
}

/// `socket(2)` of `ty` for `addr`'s family, close-on-exec, non-blocking if asked.
pub(crate) fn socket(addr: &Address, ty: SocketType, nonblocking: bool) -> Result<OwnedFd> {
    let mut flags = SocketFlags::CLOEXEC;
    if nonblocking {
        flags |= SocketFlags::NONBLOCK;
    }
    rustix::net::socket_with(addr.family(), ty, flags, None)
        .map_err(|e| descriptor_error(e).in_op("socket").on(addr))
}

/// A connected Unix-domain pair of `ty` (`socketpair(2)`, close-on-exec).
pub(crate) fn socketpair(ty: SocketType, what: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        ty,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| descriptor_error(e).in_op("socketpair").on(what))
}

/// `connect(2)` on `fd` (a fresh non-blocking socket) until `deadline`.
///
/// A Unix-domain connect to a listener whose backlog is full fails with `EAGAIN` and must be
/// retried (the kernel offers nothing to wait on): retried with a short sleep. A TCP connect
/// in progress is waited for with `poll` (writable), then `SO_ERROR` says how it ended.
/// Nothing listening is [`ErrorKind::NoPeer`]; a listener of the other socket type at a path,
/// [`ErrorKind::WrongType`].
fn connect_fd(fd: BorrowedFd<'_>, addr: &Address, deadline: Deadline) -> Result<()> {
    let fail = |e: Error| e.in_op("connect").on(addr);
    let mut pause = Duration::from_micros(100);
    loop {
        let r = match addr {
            Address::Inet(a) => rustix::net::connect(fd, a),
            _ => rustix::net::connect(fd, &addr.unix()?),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if deadline.has_passed() {
                    return Err(fail(deadline.expired_error(Blocked::Full)));
                }
                let left = deadline.remaining().unwrap_or(pause);
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(Errno::INPROGRESS) => {
                if !wait(fd, Interest::Writable, deadline).map_err(|e| fail(e.into()))? {
                    return Err(fail(deadline.expired_error(Blocked::Full)));
                }
                return match rustix::net::sockopt::socket_error(fd) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) | Err(e) => Err(fail(connect_error(e))),
                };
            }
            Err(e) => return Err(fail(connect_error(e))),
        }
    }
}

fn connect_error(e: Errno) -> Error {
    match e {
        Errno::CONNREFUSED => {
            Error::with_note(ErrorKind::NoPeer, "nothing listens there").with_source(e.into())
        }
        Errno::PROTOTYPE => Error::with_note(
            ErrorKind::WrongType,
            "the socket listening there is of another type (seqpacket / stream): connect with \
             the listener's kind",
        )
        .with_source(e.into()),
        e => e.into(),
    }
}

/// Connects a new socket of kind `K` to `addr` before `deadline`, checks the server against
/// the peer policy (Unix-domain), and wraps it.
pub(crate) fn connect<K: Kind>(addr: &Address, opts: &Options, deadline: Deadline) -> Result<K> {
    if K::TYPE == SocketType::SEQPACKET && !addr.is_unix() {
        return Err(Error::with_note(
            ErrorKind::Unsupported,
            "SOCK_SEQPACKET is Unix-domain only; use a Stream for TCP",
        )
        .on(addr));
    }
    let fd = socket(addr, K::TYPE, true)?;
    connect_fd(fd.as_fd(), addr, deadline)?;
    // The socket is new and not shared with anyone yet: blocking from here on, so a call
    // without deadline is the plain syscall; calls with one use MSG_DONTWAIT / RWF_NOWAIT.
    set_nonblocking(&fd, false).map_err(|e| Error::from(e).in_op("fcntl").on(addr))?;
    let label: Arc<str> = Arc::from(format!("{} socket {addr}", K::NAME));
    let peer = established(fd.as_fd(), addr, &label, opts)?;
    tracing::trace!(socket = %label, ?peer, "connected");
    K::from_connected(
        fd,
        Connected {
            label,
            peer,
            max_message: opts.max_message,
        },
    )
}

/// After connect or accept: the peer's credentials, checked against the policy (Unix), or
/// `TCP_NODELAY` (TCP).
pub(crate) fn established(
    fd: BorrowedFd<'_>,
    addr: &Address,
    label: &Arc<str>,
    opts: &Options,
) -> Result<Option<PeerCred>> {
    if addr.is_unix() {
        let peer = PeerCred::of(fd).map_err(|e| e.on_shared(label))?;
        opts.peer.check(&peer, label)?;
        Ok(Some(peer))
    } else {
        rustix::net::sockopt::set_tcp_nodelay(fd, true).map_err(|e| {
            Error::from(e)
                .in_op("setsockopt(TCP_NODELAY)")
                .on_shared(label)
        })?;
        Ok(None)
    }
}

/// After an attempt found the socket not ready: fails with would-block / timed out when the
/// deadline allows no (more) waiting, else waits for `interest` and returns to retry.
#[inline]
pub(crate) fn wait_or_expire(
    fd: BorrowedFd<'_>,
    interest: Interest,
    deadline: Deadline,
    op: &'static str,
    label: &Arc<str>,
) -> Result<()> {
    let blocked = match interest {
        Interest::Readable => Blocked::Empty,
        Interest::Writable => Blocked::Full,
    };
    let ready = deadline != Deadline::Now
        && wait(fd, interest, deadline)
            .map_err(|e| Error::from(e).in_op("poll").on_shared(label))?;
    if ready {
        Ok(())
    } else {
        Err(deadline.expired_error(blocked).in_op(op).on_shared(label))
    }
}
