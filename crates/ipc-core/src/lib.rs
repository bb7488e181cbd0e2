//! The shared vocabulary of the `ipc` workspace: what every mechanism crate speaks.
//!
//! - [`MessageSender`] / [`MessageReceiver`]: whole messages, each with one required method
//!   taking a [`Deadline`]; blocking, `try_` and `_timeout` forms come free. Receives fill a
//!   caller-owned buffer, so the hot path does not allocate.
//! - [`Error`] with a matchable [`ErrorKind`]: would-block, timed out, disconnected, message too
//!   large (with both sizes), invalid name, kernel limit (naming the knob), corrupted shared
//!   state, owner died, ... Converts to and from [`std::io::Error`] without loss.
//! - [`Properties`]: the static facts each mechanism publishes (keeps boundaries, largest
//!   message, kernel copies per message, ...).
//! - [`frame`]: the length-prefix codec that keeps message boundaries over byte streams, and
//!   [`stream`]: message endpoints over any stream descriptor, used by pipes and FIFOs.
//! - [`PosixName`]: POSIX IPC names, validated before any syscall.
//! - [`fd`] and [`inherit`]: readiness waits with deadlines, `SIGPIPE`-free writes, and handing
//!   descriptors to child processes.
//!
//! It is also the OS layer every mechanism stands on, holding what several mechanisms share
//! and nothing else (rustix is the platform layer below it):
//!
//! - [`futex`]: waits and wakes on a 32-bit word in shared memory;
//! - [`sysv`]: the one System V [`Key`](sysv::Key) (with `ftok`), key-to-id lookup, removal;
//! - [`knob`]: kernel knobs and the limit errors that name them;
//! - [`Owner`]: the one policy for whose object an open accepts;
//! - [`Removable`] and [`RemoveGuard`]: removing any named object, now or on drop;
//! - [`Deadline::absolute`]: deadlines as absolute times for the calls that take one;
//! - [`fd::retry`]: the one `EINTR`/`EAGAIN`/readiness loop of the descriptor-based endpoints;
//! - [`process`]: what `/proc/PID/stat` says (state, parent, start time) for liveness checks;
//! - [`Readiness`]: the descriptor a poll loop or async runtime waits on, for every message
//!   endpoint (pipes, FIFOs, POSIX queues, the shm channel's doorbell); with the `tokio`
//!   feature, `tokio::AsyncEndpoint`, the one async adapter over it;
//! - [`pipe`]: the one pipe end, [`PipeEnd<D>`](pipe::PipeEnd), that `ipc-pipe` and `ipc-fifo`
//!   both return;
//! - [`inventory`]: every IPC object the caller can see, who records using it, and whether it
//!   is provably stale (what the `ipc` command lists and cleans).
//!
//! Mechanism crates depend on this one; programs that want to switch mechanisms write against
//! the traits:
//!
//! ```
//! use ipc_core::{MessageReceiver, MessageSender, Result};
//!
//! /// Works the same over a pipe, a FIFO, a message queue or a shared-memory channel.
//! fn echo_once(rx: &mut impl MessageReceiver, tx: &mut impl MessageSender) -> Result<()> {
//!     let mut buf = vec![0; rx.max_message_size()];
//!     let n = rx.recv(&mut buf)?;
//!     tx.send(&buf[..n])
//! }
//! # let (r, w) = rustix::pipe::pipe()?;
//! # let (r2, w2) = rustix::pipe::pipe()?;
//! # use ipc_core::stream::{FrameReceiver, FrameSender, FrameMode};
//! # let mut tx0 = FrameSender::new(w, FrameMode::Atomic, "a")?;
//! # let mut rx = FrameReceiver::new(r, 4092, "a")?;
//! # let mut tx = FrameSender::new(w2, FrameMode::Atomic, "b")?;
//! # let mut rx2 = FrameReceiver::new(r2, 4092, "b")?;
//! # tx0.send(b"ping")?;
//! # echo_once(&mut rx, &mut tx)?;
//! # let mut b = [0; 16];
//! # assert_eq!(rx2.recv(&mut b)?, 4);
//! # Ok::<(), ipc_core::Error>(())
//! ```

#![warn(missing_docs)]

mod deadline;
mod endpoint;
mod error;
pub mod fd;
pub mod frame;
pub mod futex;
pub mod inherit;
pub mod inventory;
pub mod knob;
mod name;
mod owner;
pub mod pipe;
pub mod process;
mod properties;
pub mod ready;
mod remove;
pub mod sched;
pub mod stream;
pub mod sysv;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use deadline::Deadline;
pub use endpoint::{MessageReceiver, MessageSender};
pub use error::{Blocked, Detail, Error, ErrorKind, Limit, Result, ResultExt};
pub use frame::PIPE_BUF;
pub use name::{NAME_MAX, PosixKind, PosixName};
pub use owner::Owner;
pub use properties::{MaxMessage, Properties};
pub use ready::Readiness;
pub use remove::{Removable, RemoveGuard};
#[cfg(feature = "tokio")]
pub use tokio::{AsyncEndpoint, YieldPolicy};
