//! System V message queues: [`Queue`] (a kernel queue of typed messages, found by a [`Key`]),
//! receive [`Selector`]s, [`Status`] (`IPC_STAT`) and [`MsgBuf`].
//!
//! The parts live in one file each: `options.rs` (opening and creating by key, the owner
//! check), `queue.rs` (the queue: sending, receiving, status, removal), `message.rs` (what a
//! receive selects and returns, and the message buffer). The [`Key`] is the workspace's one
//! System V key ([`ipc_core::sysv::Key`], with `ftok`), so one key names a queue, a segment and
//! a semaphore set alike.
//!
//! # No descriptor: synchronous only
//!
//! A System V queue is an id, not a file: there is nothing `poll`, `epoll` or an async
//! runtime can wait on. So [`Queue`] does not implement [`Readiness`](ipc_core::Readiness)
//! and has no async form with the `tokio` feature: code that tries gets a compile error, not
//! a hidden thread or a busy loop. A program that must wait on one beside other endpoints
//! runs a blocking `recv*_deadline` in a thread of its own (one thread and a wake-up per
//! message), or uses a POSIX queue ([`crate::posix::Queue`], pollable) instead.
//!
//! # The model
//!
//! A queue is identified by a numeric id, found from a [`Key`] (derived from a path and a
//! project number, like `ftok(3)`, or private to the creator and whoever it tells the id). It
//! lives until removed ([`Queue::remove`], `ipcrm -q`), not until the last user closes it:
//! there is nothing to close. Each message carries a **type**, a number above zero, and a
//! receive picks a message by type ([`Selector`]): the first of any type, the first of one
//! type, the first of the lowest type up to a bound, or the first of any type but one. So one
//! queue can carry several conversations: requests as type 1 and each reply typed with its
//! requester's pid, say.
//!
//! ```
//! use ipc_mq::sysv::{Queue, Selector};
//!
//! let q = Queue::private()?;
//! let _remove = q.remove_guard();
//! q.send_typed(2, b"for two")?;
//! q.send_typed(1, b"for one")?;
//! let mut buf = [0; 64];
//! let got = q.recv_typed(Selector::Type(1), &mut buf)?;
//! assert_eq!((&buf[..got.len], got.mtype), (&b"for one"[..], 1));
//! # Ok::<(), ipc_mq::Error>(())
//! ```
//!
//! # One verb per operation
//!
//! `send*` and `recv*`, the verbs of the core traits. The queue's own forms name what the
//! traits leave out: [`Queue::send_typed`] takes the type to send, [`Queue::recv_typed`] the
//! [`Selector`] to receive with (and returns the type: [`Received`]), each with its `try_`,
//! `_timeout` and `_deadline` forms; [`Queue::recv_message`] receives into a new buffer, and
//! [`Queue::send_buf`] / [`Queue::recv_buf`] use a [`MsgBuf`]. The trait methods
//! (`q.send(..)`, `q.recv(&mut buf)`) use the queue's [send type](Queue::send_type) and
//! [selector](Queue::recv_selector).
//!
//! # Removal
//!
//! [`Queue::remove`] removes the queue now; [`Queue::remove_guard`] gives the workspace's one
//! [`RemoveGuard`](ipc_core::RemoveGuard) (for [`Removable::Sysv`](ipc_core::Removable::Sysv)),
//! which removes it when dropped.
//!
//! # Waiting and deadlines
//!
//! `msgsnd` and `msgrcv` either block without limit or not at all (`IPC_NOWAIT`); there is no
//! timed form. So:
//!
//! - [`Deadline::Never`] is the plain blocking call: the kernel wakes the caller the moment it
//!   can proceed, at no extra cost. (A handle's first blocking send reads the queue's byte
//!   limit once before it, with `IPC_STAT`, to refuse a message that could never fit rather
//!   than wait for it forever.)
//! - [`Deadline::Now`] is one `IPC_NOWAIT` call.
//! - [`Deadline::At`] polls: an `IPC_NOWAIT` call, then sleeps of 50 µs doubling up to 5 ms
//!   (cut to the time left), and again, until it succeeds or the deadline passes. The cost:
//!   a message that arrives while the caller sleeps waits up to 5 ms for it, and a long wait
//!   makes about 200 system calls a second. The deadline itself is kept on the monotonic
//!   clock. Use a blocking call where latency matters and a deadline is not needed.
//!
//! A signal handled while a call waits (`EINTR`: `msgsnd` and `msgrcv` are never restarted,
//! whatever the handler's `SA_RESTART`) is no error: the call waits on, until its deadline.
//!
//! # Removal is disconnection
//!
//! When a queue is removed, processes blocked on it wake with `EIDRM`, and later calls with
//! its id fail with `EINVAL`; both are [`ErrorKind::Disconnected`]. The kernel does not track
//! who uses a queue, so a dead peer is not reported otherwise: use deadlines where a peer may
//! die.
//!
//! # Sizes
//!
//! A message is at most `/proc/sys/kernel/msgmax` bytes (checked before `msgsnd`, as
//! [`ErrorKind::MessageTooLarge`]), and the queue holds at most
//! [`Status::max_bytes`] bytes (`msg_qbytes`, default `/proc/sys/kernel/msgmnb`). Unlike POSIX
//! queues, a receive buffer may be shorter than the limit: a message that does not fit stays
//! queued and the receive fails with [`ErrorKind::MessageTooLarge`].
//!
//! The `&[u8]` methods copy each message once in user space (`msgsnd` wants the type in front
//! of the bytes, in one buffer), into a buffer kept per thread. [`MsgBuf`] with
//! [`Queue::send_buf`] / [`Queue::recv_buf`] avoids that copy.
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html),
//!   [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)

// `c_long`, `time_t`, `msgqnum_t`, `msglen_t` and the `mq_attr` fields are 64-bit here but not
// on every Linux ABI: the casts that look redundant keep the code portable.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

mod message;
mod options;
mod queue;

#[cfg(doc)]
use ipc_core::Deadline;
use ipc_core::{Error, ErrorKind, MaxMessage, Properties, Result};
use libc::c_long;
use rustix::io::Errno;

pub use self::message::{Message, MsgBuf, Received, Selector};
pub use self::options::OpenOptions;
pub use self::queue::{Queue, Status};
pub use crate::Access;
pub use ipc_core::sysv::Key;

/// The static facts about System V message queues, as the benchmark prints them. The largest
/// message is `/proc/sys/kernel/msgmax`, a system-wide knob whose default, 8192, is given
/// here; [`Queue::max_message_size`] has the live value.
pub const PROPERTIES: Properties = Properties {
    mechanism: "System V message queue",
    keeps_boundaries: true,
    max_message: MaxMessage::Bytes(8192),
    multi_producer: true,
    multi_consumer: true,
    needs_related_process: false,
    namespace: Some("System V IPC keys"),
    kernel_copies_per_message: 2,
    crosses_machines: false,
};

/// The mode a queue is created with unless the caller asks otherwise: owner read and write.
/// System V IPC does not apply the umask, so the mode is exact.
pub const DEFAULT_MODE: u32 = 0o600;

/// `msgmax` when `/proc/sys/kernel/msgmax` cannot be read: the kernel's default.
pub(crate) const DEFAULT_MSGMAX: usize = 8192;

/// Checks a message type: above zero and within `long`.
fn message_type(t: i64) -> Result<c_long> {
    match c_long::try_from(t) {
        Ok(t) if t > 0 => Ok(t),
        _ => Err(Error::with_note(
            ErrorKind::InvalidInput,
            format!("message type {t}: a type is above zero and fits a C long"),
        )),
    }
}

fn limit(knob: &'static str, value: Option<u64>, errno: Errno) -> Error {
    Error::limit(knob, value).with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()))
}

/// Maps an errno from an operation on an existing queue id.
fn queue_error(errno: Errno) -> Error {
    let src = std::io::Error::from_raw_os_error(errno.raw_os_error());
    match errno {
        Errno::IDRM => {
            Error::with_note(ErrorKind::Disconnected, "the queue was removed").with_source(src)
        }
        // After this crate's own checks, EINVAL means the id names no queue (any more).
        Errno::INVAL => Error::with_note(
            ErrorKind::Disconnected,
            "no queue has this id (it was removed)",
        )
        .with_source(src),
        Errno::NOMEM => limit("kernel memory", None, errno),
        _ => Error::from(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key moved to `ipc_core::sysv`; through this crate's path it still computes what
    /// glibc's `ftok` does.
    #[test]
    fn key_from_path_matches_glibc_ftok() {
        let dir = std::env::temp_dir();
        for project in [1u8, b'A', 255] {
            let ours = Key::from_path(&dir, project).unwrap();
            let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            let theirs = unsafe { libc::ftok(c.as_ptr(), i32::from(project)) };
            assert_eq!(ours.as_raw(), theirs, "project {project}");
        }
        assert_eq!(
            Key::from_path(&dir, 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Key::from_path("/nonexistent/ipc-mq", 1).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
