//! [`Address`]: where a socket listens or connects (a filesystem path, an abstract Unix name, or
//! an IP address and port), and its conversion to the kernel's address types.

use std::fmt;
use std::path::{Path, PathBuf};

use ipc_core::{Error, ErrorKind, Result};
use rustix::net::{AddressFamily, SocketAddrUnix};

/// Where a socket listens or connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix-domain socket file at this path. It has an owner and a mode, like any file: the
    /// [`Listener`](crate::Listener) creates it with the exact mode asked for, and removes it
    /// when dropped.
    Path(PathBuf),
    /// A Unix-domain name in the abstract namespace (Linux): no file, gone when the last
    /// descriptor closes, visible to every process in the same *network* namespace, with no
    /// permission check at all. Check the peer's credentials instead
    /// ([`PeerPolicy`](crate::PeerPolicy)). The name is given without its leading NUL byte.
    Abstract(Vec<u8>),
    /// An IPv4 or IPv6 address and a TCP port (stream sockets only).
    Inet(std::net::SocketAddr),
}

impl Address {
    /// A socket file at `path`.
    pub fn path(path: impl AsRef<Path>) -> Address {
        Address::Path(path.as_ref().to_path_buf())
    }

    /// A name in the abstract namespace.
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Address {
        Address::Abstract(name.as_ref().to_vec())
    }

    /// Whether this is a Unix-domain address (path or abstract).
    pub fn is_unix(&self) -> bool {
        !matches!(self, Address::Inet(_))
    }

    pub(crate) fn family(&self) -> AddressFamily {
        match self {
            Address::Path(_) | Address::Abstract(_) => AddressFamily::UNIX,
            Address::Inet(a) if a.is_ipv4() => AddressFamily::INET,
            Address::Inet(_) => AddressFamily::INET6,
        }
    }

    /// The kernel's form of a Unix-domain address; `InvalidName` when it does not fit in
    /// `sun_path` (108 bytes), contains a NUL byte, or is an empty path.
    pub(crate) fn unix(&self) -> Result<SocketAddrUnix> {
        let r = match self {
            // An empty `sun_path` is the abstract name "" to the kernel, not a file.
            Address::Path(p) if p.as_os_str().is_empty() => {
                return Err(Error::with_note(ErrorKind::InvalidName, "an empty path").on(self));
            }
            Address::Path(p) => SocketAddrUnix::new(p.as_path()),
            Address::Abstract(n) => SocketAddrUnix::new_abstract_name(n),
            Address::Inet(_) => {
                return Err(
                    Error::with_note(ErrorKind::InvalidInput, "not a Unix-domain address").on(self),
                );
            }
        };
        r.map_err(|_| {
            Error::with_note(
                ErrorKind::InvalidName,
                "a Unix socket address holds at most 107 bytes (sun_path) and no NUL byte",
            )
            .on(self)
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Path(p) => write!(f, "{}", p.display()),
            Address::Abstract(n) => write!(f, "@{}", String::from_utf8_lossy(n)),
            Address::Inet(a) => write!(f, "{a}"),
        }
    }
}

impl From<std::net::SocketAddr> for Address {
    fn from(a: std::net::SocketAddr) -> Address {
        Address::Inet(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        Address::Path(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        Address::Path(p.to_path_buf())
    }
}
