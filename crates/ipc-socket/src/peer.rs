//! Peer credentials ([`PeerCred`], read with `SO_PEERCRED`) and the policy deciding which peers
//! an endpoint accepts ([`PeerPolicy`]).

use std::fmt;
use std::os::fd::BorrowedFd;

use ipc_core::{Error, ErrorKind, Result};

/// Who is at the other end of a Unix-domain socket, as the kernel recorded it when the
/// connection was made (`SO_PEERCRED`): the peer process's pid, effective uid and gid, at the
/// time it called `connect` (or `listen`), translated into this process's namespaces.
///
/// The pid is for logging and diagnosis: the process may have exited since, and its pid been
/// reused. The uid and gid are what to base decisions on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// The peer's process id; 0 when its process is not visible in this process's pid
    /// namespace (a server in a container, its client outside it).
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

impl fmt::Display for PeerCred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} uid {} gid {}", self.pid, self.uid, self.gid)
    }
}

impl PeerCred {
    /// Reads the credentials of the peer connected to `fd` (`getsockopt(SO_PEERCRED)`).
    ///
    /// # References
    /// - [`unix(7)`](https://man7.org/linux/man-pages/man7/unix.7.html), `SO_PEERCRED`
    #[doc(alias = "SO_PEERCRED")]
    pub fn of(fd: BorrowedFd<'_>) -> Result<PeerCred> {
        let (pid, uid, gid) = ipc_core::fd::peer_credentials(fd)
            .map_err(|e| Error::from(e).in_op("getsockopt(SO_PEERCRED)"))?;
        Ok(PeerCred { pid, uid, gid })
    }
}

/// Which peers a Unix-domain endpoint accepts, checked on the credentials the kernel reports
/// (`SO_PEERCRED`) when a [`Listener`](crate::Listener) accepts a connection and when a client
/// connects (a client checks the *server*, which guards against a socket squatted by another
/// user).
///
/// The default is [`PeerPolicy::SameUser`]: the socket file's mode already keeps other users
/// out of a path socket, but an abstract name has no mode at all, and a policy costs one
/// `getsockopt` per connection. Widen it explicitly when other users are meant to connect.
///
/// TCP peers have no kernel credentials: the policy does not apply to them (authenticate at
/// the application level, or use a Unix socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PeerPolicy {
    /// Any peer.
    Any,
    /// Only peers running as this process's effective uid.
    #[default]
    SameUser,
    /// Only peers running as this uid.
    Uid(u32),
}

impl PeerPolicy {
    /// Checks `peer` against the policy.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] naming the peer's uid and pid and the policy.
    pub fn check(self, peer: &PeerCred, object: &str) -> Result<()> {
        let want = match self {
            PeerPolicy::Any => return Ok(()),
            PeerPolicy::SameUser => rustix::process::geteuid().as_raw(),
            PeerPolicy::Uid(u) => u,
        };
        if peer.uid == want {
            return Ok(());
        }
        let e = Error::with_note(
            ErrorKind::PermissionDenied,
            format!(
                "peer uid {} (pid {}) refused: the policy accepts uid {want} only; use \
                 PeerPolicy::Uid({}) or PeerPolicy::Any if that user is trusted",
                peer.uid, peer.pid, peer.uid
            ),
        )
        .in_op("check peer")
        .on(object);
        tracing::debug!(error = %e, "peer refused");
        Err(e)
    }
}
