//! Message queues kept by the Linux kernel: POSIX ([`posix`]) and System V ([`sysv`]).
//!
//! A message queue is a list of messages held in the kernel: a sender appends a whole message
//! and goes on (unless the queue is full), a receiver takes one whole message later, in another
//! process, even one that started after the sender exited. Boundaries are kept by the kernel
//! (one send is one receive), there is no stream to frame, and any number of processes may
//! send and receive on one queue without a lock of their own.
//!
//! - [`posix::Queue`]: named (`/jobs`), each message with a **priority** (highest first, oldest
//!   first within a priority); the descriptor is a file descriptor, so it can be polled with
//!   `poll`/`epoll`/mio/tokio; `mq_notify` as a pollable [`posix::Notification`]; deadlines.
//! - [`sysv::Queue`]: found by a [`sysv::Key`] (from a path, like `ftok`) or private, each
//!   message with a **type**, and receives that select by type: several conversations on one
//!   queue (see the request/reply example). No descriptor, no timed calls (deadlines poll).
//!
//! Both implement [`MessageSender`] and [`MessageReceiver`], and every failure is an [`Error`]
//! with a matchable kind: a message over the size limit is
//! [`MessageTooLarge`](ErrorKind::MessageTooLarge) with both numbers before anything reaches
//! the kernel, and a kernel limit is [`LimitExceeded`](ErrorKind::LimitExceeded) naming the
//! knob (`/proc/sys/fs/mqueue/msg_max is 10`). The operations have one verb each: `send*` and
//! `recv*`, as in the traits; a queue's own forms add what the traits leave out (the priority
//! or type, the selector). The expected failures of a busy queue, a receive on an empty one
//! or a send on a full one ([`WouldBlock`](ErrorKind::WouldBlock), or
//! [`TimedOut`](ErrorKind::TimedOut) at a deadline), allocate nothing: the error names the
//! queue through a name formatted once, when it was opened.
//!
//! This crate re-exports the core vocabulary it uses ([`prelude`], and the same names at the
//! root), so a program that needs message queues depends on `ipc-mq` alone.
//!
//! Opening an existing queue (by name or by key) refuses one that another user owns, with
//! [`PermissionDenied`](ErrorKind::PermissionDenied): anyone can put a queue under a name or
//! key first, and its owner can remove it or change its mode at will. To talk to another
//! user's queue on purpose, say so with an [`Owner`] policy: `OpenOptions::owner(Owner::Any)`
//! ([`posix::OpenOptions::owner`], [`sysv::OpenOptions::owner`]). This is the policy of every
//! named object of the workspace. Cleanup is the workspace's one [`RemoveGuard`]:
//! [`posix::Queue::remove_guard`] unlinks a name, [`sysv::Queue::remove_guard`] removes a queue.
//!
//! # When to use a message queue
//!
//! - Over a **pipe or FIFO**: when messages must keep their boundaries without framing, when
//!   several writers send messages larger than `PIPE_BUF` (a queue message is atomic up to its
//!   size limit), when urgent messages must overtake others (priorities, types), or when the
//!   receiver may not exist yet (the queue holds messages with nobody attached).
//! - Over **shared memory**: when messages are small to medium and rare enough that two copies
//!   through the kernel per message do not matter, and you want the kernel to do the queueing,
//!   blocking and waking. Shared memory wins on large or very frequent messages (no copy) but
//!   needs its own synchronisation and validation.
//! - POSIX or System V? POSIX for new code: named objects with file-like permissions, a
//!   pollable descriptor, real timed calls, and `/dev/mqueue` to inspect them. System V when a
//!   peer already speaks it, or when receivers must pick messages by type.
//! - Not at all when the peer is on another machine: use a socket.
//!
//! Limits to know (Linux defaults): a POSIX queue holds at most 10 messages of at most 8192
//! bytes unless the creator has `CAP_SYS_RESOURCE` (`/proc/sys/fs/mqueue/`), and all queues of
//! a user share 800 KiB (`RLIMIT_MSGQUEUE`); a System V message is at most 8192 bytes
//! (`/proc/sys/kernel/msgmax`) and a queue holds 16 KiB (`msgmnb`). [`posix::Limits`] reads
//! the current values.
//!
//! # Async and poll loops
//!
//! A POSIX [`posix::Queue`] implements [`Readiness`]: its descriptor is readable while a
//! message is queued and writable while there is room, so it joins a `poll`/`epoll` loop, and
//! with the `tokio` feature `AsyncEndpoint::new(queue)` gives it `async fn send`/`recv`
//! (both cancel safe: each attempt is one `mq_timedsend`/`mq_timedreceive`, all or nothing).
//! A queue has no peer: an async receive on an empty queue waits until a timeout ends it.
//! System V queues have no descriptor and are synchronous only (see [`sysv`]).
//!
//! # Example: a priority job queue between two processes
//!
//! The seed of this project describes a message queue as a linked list of messages kept in
//! the kernel. A POSIX queue is exactly that, sorted by priority: jobs posted with a higher
//! priority are taken first, whoever posted them and whenever.
//!
//! ```
//! use ipc_mq::posix::Queue;
//! use ipc_mq::prelude::*;
//!
//! let name = format!("/doc-jobs-{}", std::process::id());
//! let mut jobs = Queue::create(&*name, 10, 256)?;
//! let _unlink = jobs.remove_guard()?; // unlinks the name when dropped
//!
//! // Any process that opens the name can post; here, this one.
//! jobs.send_with_priority(b"rotate logs", 1)?;
//! jobs.send_with_priority(b"page the on-call engineer", 30)?;
//! jobs.send_with_priority(b"compact database", 1)?;
//!
//! // A worker (usually another process) takes the most urgent job first.
//! let mut worker = Queue::open(&*name, ipc_mq::Access::ReadOnly)?;
//! let mut order = Vec::new();
//! while let Ok(job) = worker.try_recv(&mut [0; 256]).map(|r| r.priority) {
//!     order.push(job);
//! }
//! assert_eq!(order, [30, 1, 1]);
//!
//! // Through the core traits (what code generic over mechanisms uses): priority 0, and an
//! // empty queue is a matchable error that names the queue.
//! jobs.send(b"sweep caches")?;
//! let mut buf = [0; 256];
//! let n = MessageReceiver::try_recv(&mut worker, &mut buf)?;
//! assert_eq!(&buf[..n], b"sweep caches");
//! let e = MessageReceiver::try_recv(&mut worker, &mut buf).unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::WouldBlock);
//! assert!(e.to_string().contains(&name));
//! # Ok::<(), Error>(())
//! ```
//!
//! The `examples/` directory has complete programs: `priority_jobs` (a dispatcher and worker
//! processes on a POSIX queue) and `sysv_request_reply` (a server and clients sharing one
//! System V queue, replies addressed by message type).

#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod limits;
mod open;
pub mod posix;
mod sys;
pub mod sysv;

pub use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Owner, PosixName,
    Removable, RemoveGuard, Result,
};

pub use ipc_core::Readiness;
pub use ipc_core::fd::Interest;
/// Handing descriptors to a child process you spawn: [`inherit::ChildFds`] in the parent,
/// [`inherit::take`] (or this crate's own adopt functions) in the child.
pub use ipc_core::inherit;
/// The async form of any endpoint of this crate (feature `tokio`): `AsyncEndpoint::new(end)`;
/// `YieldPolicy`: what its waits do before they park the task; `WaitStats`: what they did.
#[cfg(feature = "tokio")]
pub use ipc_core::tokio::{AsyncEndpoint, WaitStats, YieldPolicy};

/// The core vocabulary a program on message queues needs, to import at once:
/// `use ipc_mq::prelude::*;`.
pub mod prelude {
    pub use ipc_core::{Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Result};
}

/// The static facts about POSIX message queues ([`posix::PROPERTIES`]).
pub const POSIX_PROPERTIES: ipc_core::Properties = posix::PROPERTIES;
/// The static facts about System V message queues ([`sysv::PROPERTIES`]).
pub const SYSV_PROPERTIES: ipc_core::Properties = sysv::PROPERTIES;

/// The names of the kernel knobs and limits this crate reports in
/// [`LimitExceeded`](ErrorKind::LimitExceeded) errors, to compare against
/// [`Limit::knob`](ipc_core::Limit::knob). The `/proc/sys` paths are
/// [`ipc_core::knob`]'s constants, under the names this crate has always used.
pub mod knobs {
    pub use crate::limits::{HARD_MSGMAX, HARD_MSGSIZEMAX, RLIMIT_MSGQUEUE, RLIMIT_NOFILE};
    pub use ipc_core::knob::{
        FILE_MAX, MQ_MSG_DEFAULT as MSG_DEFAULT, MQ_MSG_MAX as MSG_MAX,
        MQ_MSGSIZE_DEFAULT as MSGSIZE_DEFAULT, MQ_MSGSIZE_MAX as MSGSIZE_MAX,
        MQ_QUEUES_MAX as QUEUES_MAX, MSGMAX as SYSV_MSGMAX, MSGMNB as SYSV_MSGMNB,
        MSGMNI as SYSV_MSGMNI,
    };
}

/// How a queue may be used: receive, send, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive only.
    ReadOnly,
    /// Send only.
    WriteOnly,
    /// Send and receive.
    #[default]
    ReadWrite,
}
