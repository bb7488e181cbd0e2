//! Sockets behind the `ipc` message traits: Unix-domain `SOCK_SEQPACKET` and `SOCK_STREAM`,
//! and TCP, with listeners that accept many clients, deadlines on every call, peer
//! credentials, descriptor passing, typed messages and request-reply.
//!
//! Sockets are the one mechanism of this workspace that crosses machines (TCP), and the most
//! general on one machine: any process that can reach the address connects, each connection is
//! its own duplex channel, and the kernel tells the server who connected.
//!
//! # Which socket for which job
//!
//! | job | use |
//! |---|---|
//! | messages between processes on one machine, server with many clients | [`Seqpacket`] over a path: the kernel keeps boundaries, no framing, can pass descriptors |
//! | hand a process a descriptor (a shared-memory segment, a pipe end, a queue) | [`Seqpacket::send_with_fds`] |
//! | a byte stream with messages on top, or peers that only speak `SOCK_STREAM` | [`Stream`] over a path |
//! | a service without a file (gone when the server is) | [`Address::Abstract`], with a [`PeerPolicy`] (it has no mode) |
//! | another machine | [`Stream`] over [`Address::Inet`] (TCP, `TCP_NODELAY`) |
//! | the highest throughput on one machine | not a socket: `ipc-shm`, its sealed memfd handed over a socket with credentials checked (`examples/shm_over_socket.rs`, `cargo run -p ipc-socket --example shm_over_socket`) |
//! | typed messages over any endpoint | `TypedSender` / `TypedReceiver` (feature `serde`) |
//! | calls with replies, several in flight | [`rpc::Client`] and [`rpc::serve`] (or [`rpc::serve_until_stopped`]) |
//!
//! # Security
//!
//! A path socket is a file: its mode (exact, `0o600` by default; see [`Options::mode`]) decides
//! who may connect. Every Unix-domain connection also checks the peer's credentials
//! (`SO_PEERCRED`) against a [`PeerPolicy`], same user only by default, on both sides: the
//! server checks its clients, a client checks the server. A stale socket file left by a dead
//! server is reclaimed only when nothing listens there and it is a socket (see [`Listener`]).
//!
//! # Example
//!
//! ```
//! use ipc_socket::{Address, Deadline, Listener, MessageReceiver, MessageSender, Options, Seqpacket};
//!
//! let dir = std::env::temp_dir().join(format!("ipc-socket-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let addr = Address::path(dir.join("service.sock"));
//! let opts = Options::new(); // mode 0o600, same user only, 64 KiB messages
//! let listener: Listener<Seqpacket> = Listener::bind(&addr, &opts)?;
//!
//! let mut client = Seqpacket::connect(&addr, &opts, Deadline::Never)?;
//! let mut server = listener.accept(Deadline::Never)?;
//! assert_eq!(server.peer_cred().unwrap().pid, std::process::id() as i32);
//!
//! client.send(b"hello")?;
//! let mut buf = [0u8; 64];
//! let n = server.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! drop(listener); // removes the socket file
//! std::fs::remove_dir(&dir)?;
//! # Ok::<(), ipc_socket::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
#[cfg(feature = "serde")]
mod budget;
mod conn;
pub mod listener;
mod peer;
pub mod rpc;
pub mod seqpacket;
pub mod stream;
#[cfg(feature = "serde")]
pub mod typed;

pub use addr::Address;
pub use conn::{DEFAULT_MAX_MESSAGE, Kind, Options};
pub use listener::Listener;
pub use peer::{PeerCred, PeerPolicy};
pub use seqpacket::Seqpacket;
pub use stream::Stream;
#[cfg(feature = "serde")]
pub use typed::{TypedReceiver, TypedSender};

pub use ipc_core::Readiness;
pub use ipc_core::fd::Interest;
/// Handing descriptors to a child process you spawn: [`inherit::ChildFds`] in the parent,
/// [`inherit::take`] (or this crate's own adopt functions) in the child.
pub use ipc_core::inherit;
/// The async form of any endpoint of this crate (feature `tokio`): `AsyncEndpoint::new(end)`;
/// `YieldPolicy`: what its waits do before they park the task; `WaitStats`: what they did.
#[cfg(feature = "tokio")]
pub use ipc_core::tokio::{AsyncEndpoint, WaitStats, YieldPolicy};
pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};

/// The core vocabulary, for `use ipc_socket::prelude::*`.
pub mod prelude {
    pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
}

use ipc_core::{MaxMessage, Properties};

/// Unix-domain `SOCK_SEQPACKET` ([`Seqpacket`]).
pub const SEQPACKET: Properties = Properties {
    mechanism: "unix seqpacket",
    keeps_boundaries: true,
    max_message: MaxMessage::PerObject {
        default: DEFAULT_MAX_MESSAGE,
        ceiling: "/proc/sys/net/core/wmem_max",
    },
    multi_producer: false,
    multi_consumer: false,
    needs_related_process: false,
    namespace: Some("filesystem path or abstract name"),
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

/// Unix-domain `SOCK_STREAM` with length-prefix framing ([`Stream`]).
pub const STREAM: Properties = Properties {
    mechanism: "unix stream",
    max_message: MaxMessage::Unbounded,
    ..SEQPACKET
};

/// TCP with length-prefix framing ([`Stream`] over [`Address::Inet`]).
pub const TCP: Properties = Properties {
    mechanism: "tcp",
    namespace: Some("IP address and port"),
    crosses_machines: true,
    ..STREAM
};
