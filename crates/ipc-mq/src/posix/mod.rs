//! POSIX message queues: [`Queue`] (a named queue of prioritised messages kept by the kernel,
//! whose descriptor is a pollable file descriptor), [`OpenOptions`], [`unlink`],
//! [`Notification`] (`mq_notify` as a pollable descriptor) and [`Limits`].
//!
//! The parts live in one file each: `options.rs` (opening and creating, the owner check),
//! `queue.rs` (the descriptor: sending, receiving, attributes), `notify.rs` (`mq_notify`).
//!
//! # The model
//!
//! A queue lives in the kernel under a name such as `/jobs` (listed in `/dev/mqueue` when that
//! file system is mounted) until it is unlinked and the last descriptor is closed. It holds at
//! most [`max_messages`](Queue::max_messages) messages of at most
//! [`message_size`](Queue::message_size) bytes each, both fixed at creation. Each message has a
//! priority from 0 to [`MAX_PRIORITY`]; a receive takes the oldest message of the highest
//! priority. Any number of processes may send and receive; each message goes to exactly one
//! receiver, whole.
//!
//! ```
//! use ipc_mq::posix::Queue;
//!
//! let name = format!("/doc-posix-{}", std::process::id());
//! let q = Queue::create(&*name, 8, 64)?;
//! let _unlink = q.remove_guard()?;
//! q.send_with_priority(b"routine", 0)?;
//! q.send_with_priority(b"urgent", 9)?;
//! let mut buf = vec![0; q.message_size()];
//! let got = q.recv(&mut buf)?;
//! assert_eq!((&buf[..got.len], got.priority), (&b"urgent"[..], 9));
//! # Ok::<(), ipc_mq::Error>(())
//! ```
//!
//! # Waiting, deadlines and the wall clock
//!
//! Every operation comes in a blocking, a `try_` and a deadline form. Deadlines are
//! [`Deadline`]s on the monotonic clock. The kernel's timed calls, `mq_timedsend` and
//! `mq_timedreceive`, take an absolute `CLOCK_REALTIME` time instead, and a wait in them ends
//! late by as much as the wall clock is set back meanwhile (there is no monotonic variant). So
//! the kernel never waits here with a timeout:
//!
//! - [`Deadline::Never`] (the blocking forms) is the plain blocking call, which the kernel ends
//!   the moment the caller can proceed.
//! - [`Deadline::Now`] (the `try_` forms) passes a time in the past (the epoch): the kernel
//!   takes what is ready and otherwise fails at once, without touching the descriptor's
//!   `O_NONBLOCK` flag (which the open file description shares with every process that
//!   inherited it).
//! - [`Deadline::At`] (the `_timeout` and `_deadline` forms) makes that same try first. When it
//!   finds nothing (no message, or no room), it waits with `poll(2)` on the descriptor for the
//!   time left, a relative timeout on the monotonic clock, and tries again once the descriptor
//!   is ready; if another process took the message or the room first, it waits again for what
//!   is left. A wall clock set either way meanwhile changes nothing.
//!
//! What that costs: a deadline call that finds what it needs makes one system call; one that
//! has to wait makes at least three (try, `poll`, try) and takes the message from the queue
//! after its wake-up, where a blocking receiver is handed it by the sender's own call. And a
//! waiter in `poll` is not among the kernel's blocked waiters: a message sent while a blocking
//! receiver waits goes straight to that receiver, and room freed while a blocking sender waits
//! is that sender's, so under contention the blocking forms are served before the deadline
//! forms (each message wakes every waiter in `poll`; one gets it, the others wait on).
//!
//! If the descriptor is non-blocking ([`OpenOptions::nonblocking`],
//! [`Queue::set_nonblocking`]), the blocking form too waits with `poll(2)`, so every form
//! keeps its meaning whatever the flag says.
//!
//! A signal handled while a call waits (`EINTR`: a handler installed without `SA_RESTART`) is
//! no error: the call waits on, until its deadline.
//!
//! # A descriptor is a file descriptor
//!
//! On Linux an `mqd_t` is a file descriptor: [`Queue`] implements [`AsFd`], [`AsRawFd`],
//! `From<OwnedFd>` and `Into<OwnedFd>`, so it can be passed to a child process, and
//! `poll`/`epoll`/mio/tokio report it readable when a message is queued and writable when there
//! is room. It is close-on-exec (the kernel sets `O_CLOEXEC` on every queue descriptor).
//!
//! # One verb per operation
//!
//! A queue sends with `send*` and receives with `recv*`, the verbs of the core traits. The
//! queue's own forms carry what the traits have no place for: [`Queue::send_with_priority`]
//! and its `try_` / `_timeout` / `_deadline` forms take a priority, and [`Queue::recv`] and its
//! forms return the priority with the length ([`Received`]). The inherent `recv*` take the same
//! arguments as [`MessageReceiver`]'s, so `q.recv(&mut buf)` is the richer form; code generic
//! over mechanisms calls the trait (`MessageReceiver::recv`, the length only, priority
//! dropped). [`Queue::recv_message`] receives into a new buffer of the right size.
//!
//! # Removing the name
//!
//! A queue's name stays in `/dev/mqueue` until [`unlink`]ed. [`Queue::remove_guard`] gives the
//! workspace's one [`RemoveGuard`](ipc_core::RemoveGuard), which unlinks the name when dropped,
//! while it still names that queue (a queue made under the name after it was unlinked is left
//! alone). Only a queue opened by name has one to unlink: for a descriptor adopted with
//! [`Queue::from_fd`] or `From<OwnedFd>` (which carries no name) `remove_guard` is an error, not
//! a guard that would silently remove nothing; whoever knows the name makes the guard
//! (`RemoveGuard::new(Removable::Queue(name))`).
//!
//! # No "disconnected" here
//!
//! The kernel does not track who has a queue open for sending, so a receiver on an empty queue
//! whose senders all died waits until its deadline; it never sees
//! [`ErrorKind::Disconnected`]. Unlinking the name does not affect open descriptors. Use
//! deadlines, or a liveness signal of your own, where a peer may die.
//!
//! # References
//! - [`mq_overview(7)`](https://man7.org/linux/man-pages/man7/mq_overview.7.html)

mod notify;
mod options;
mod queue;

#[cfg(doc)]
use std::os::fd::{AsFd, AsRawFd};

#[cfg(doc)]
use ipc_core::{Deadline, ErrorKind, MessageReceiver};
use ipc_core::{Error, MaxMessage, PosixName, Properties, Removable, Result};

pub use self::notify::{Notification, NotifyEvent};
pub use self::options::OpenOptions;
pub use self::queue::{Attributes, Message, Queue, Received};
pub use crate::Access;
pub use crate::limits::{HARD_MSGMAX, HARD_MSGSIZEMAX, Limits, MQ_PRIO_MAX};

/// The static facts about POSIX message queues, as the benchmark prints them.
pub const PROPERTIES: Properties = Properties {
    mechanism: "POSIX message queue",
    keeps_boundaries: true,
    max_message: MaxMessage::PerObject {
        default: 8192,
        ceiling: ipc_core::knob::MQ_MSGSIZE_MAX,
    },
    multi_producer: true,
    multi_consumer: true,
    needs_related_process: false,
    namespace: Some("/dev/mqueue"),
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

/// The highest priority a message can have (`MQ_PRIO_MAX - 1`); 0 is the lowest.
pub const MAX_PRIORITY: u32 = MQ_PRIO_MAX - 1;

/// The mode a queue is created with unless the caller asks otherwise: owner read and write.
pub const DEFAULT_MODE: u32 = 0o600;

/// Removes the name `name` (`mq_unlink(3)`, through [`Removable::Queue`]). The queue itself
/// lives on until every descriptor to it is closed; a new queue can be created under the name
/// at once.
///
/// ```
/// use ipc_mq::posix::{Queue, unlink};
/// use ipc_mq::{ErrorKind, PosixName, RemoveGuard, Removable};
///
/// let name = PosixName::new(format!("/doc-unlink-{}", std::process::id()))?;
/// {
///     let _q = Queue::create(&name, 1, 16)?;
///     let _guard = RemoveGuard::new(Removable::Queue(name.clone()));
/// } // unlinked here
/// assert_eq!(unlink(&name).unwrap_err().kind(), ErrorKind::NotFound);
/// # Ok::<(), ipc_mq::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::NotFound`] if no queue has this name;
/// [`ErrorKind::PermissionDenied`] if the caller may not
/// remove it.
///
/// # References
/// - [`mq_unlink(3)`](https://man7.org/linux/man-pages/man3/mq_unlink.3.html)
#[doc(alias = "mq_unlink")]
pub fn unlink(name: impl TryInto<PosixName, Error = Error>) -> Result<()> {
    Removable::Queue(name.try_into()?).remove()
}
