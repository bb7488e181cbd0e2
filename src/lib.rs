//! `ipc`: inter-process communication for Linux, one crate per mechanism, re-exported here
//! behind a feature of the same name.
//!
//! | feature | crate | mechanism |
//! |---|---|---|
//! | (always) | [`core`] | traits, deadlines, errors, framing, names |
//! | `pipe` | [`pipe`] | anonymous pipes between related processes |
//! | `fifo` | [`fifo`] | named pipes between unrelated processes, N writers to one reader |
//! | `mq` | [`mq`] | POSIX and System V message queues: priorities, types, timeouts |
//! | `sync` | [`sync`] | process-shared mutex (survives its holder's death), semaphore, condvar, event |
//! | `shm` | [`shm`] | shared memory segments (POSIX, memfd, System V) and a zero-copy channel |
//! | `socket` | [`socket`] | Unix-domain (seqpacket, stream) and TCP sockets: listeners, peer credentials, descriptor passing |
//! | `tokio` (off by default) | `core::tokio` | `AsyncEndpoint`: every message endpoint but System V queues, async on tokio |
//!
//! Every message endpoint but System V queues implements [`Readiness`](ipc_core::Readiness),
//! so it can join a `poll`/`epoll` loop (`examples/poll_loop.rs`) or, with the `tokio`
//! feature, an async program (`examples/async_select.rs`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use ipc_core as core;
pub use ipc_core::{
    Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Properties, Result,
};

#[cfg(feature = "fifo")]
pub use ipc_fifo as fifo;
#[cfg(feature = "pipe")]
pub use ipc_pipe as pipe;

#[cfg(feature = "mq")]
pub use ipc_mq as mq;
#[cfg(feature = "shm")]
pub use ipc_shm as shm;
#[cfg(feature = "socket")]
pub use ipc_socket as socket;
#[cfg(feature = "sync")]
pub use ipc_sync as sync;
