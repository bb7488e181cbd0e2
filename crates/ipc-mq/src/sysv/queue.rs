//! The System V queue: [`Queue`] (an id and the settings the core traits use), its sends (with
//! a type) and receives (by [`Selector`]), its [`Status`], removal, and the polling
//! [`Backoff`] its deadlines wait with.

// `c_long`, `time_t`, `msgqnum_t`, `msglen_t` and the `mq_attr` fields are 64-bit here but not
// on every Linux ABI: the casts that look redundant keep the code portable.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc_core::knob::{self, MSGMAX, MSGMNB};
use ipc_core::sysv::{self as core_sysv, SysvKind};
use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Removable, RemoveGuard,
    Result,
};
use libc::c_long;
use rustix::io::Errno;

use super::message::SCRATCH;
use super::{
    Access, DEFAULT_MSGMAX, Key, Message, MsgBuf, OpenOptions, Received, Selector, limit,
    message_type, queue_error,
};
use crate::sys::{self, RawMsg};

/// The status of a queue (`IPC_STAT`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The key it was created with.
    pub key: Key,
    /// Messages queued (`msg_qnum`).
    pub messages: u64,
    /// Bytes of text queued (`msg_cbytes`).
    pub bytes: u64,
    /// The most bytes of text it holds (`msg_qbytes`); see [`Queue::set_max_bytes`].
    pub max_bytes: u64,
    /// The process that sent last (`msg_lspid`), if any did.
    pub last_send_pid: Option<u32>,
    /// The process that received last (`msg_lrpid`), if any did.
    pub last_receive_pid: Option<u32>,
    /// When the last send happened (`msg_stime`), if one did.
    pub last_send: Option<SystemTime>,
    /// When the last receive happened (`msg_rtime`), if one did.
    pub last_receive: Option<SystemTime>,
    /// When the queue was created or last changed by `IPC_SET` (`msg_ctime`).
    pub last_change: Option<SystemTime>,
    /// The permission bits.
    pub mode: u32,
    /// The owner's user id.
    pub uid: u32,
    /// The owner's group id.
    pub gid: u32,
    /// The creator's user id.
    pub creator_uid: u32,
    /// The creator's group id.
    pub creator_gid: u32,
}

fn time(t: libc::time_t) -> Option<SystemTime> {
    (t > 0).then(|| UNIX_EPOCH + Duration::from_secs(t as u64))
}

fn pid(p: libc::pid_t) -> Option<u32> {
    (p > 0).then_some(p as u32)
}

/// A System V message queue: its id, and the settings the [`MessageSender`] and
/// [`MessageReceiver`] impls use (the type to send, the selector to receive with).
///
/// There is no descriptor: cloning is free and every clone names the same queue. Sends and
/// receives take `&self`, so one `Queue` can be shared between threads. The queue lives until
/// [`remove`](Queue::remove)d (or its [`remove_guard`](Queue::remove_guard) drops).
#[derive(Clone, Debug)]
pub struct Queue {
    id: i32,
    /// `System V queue {id}`, formatted once for every error.
    object: Arc<str>,
    key: Key,
    msgmax: usize,
    send_type: c_long,
    selector: Selector,
    created: bool,
    /// The queue's byte limit (`msg_qbytes`) as the last fit check read it, 0 before one
    /// (`usize::MAX` when `IPC_STAT` was refused: the limit cannot be known): a blocking send
    /// of a message no longer than this waits in `msgsnd` at once, as a plain loop does. The
    /// first blocking send checks before its first `msgsnd`, so a stream of blocking sends
    /// makes exactly the plain loop's calls from its first message on. Shared by clones (they
    /// name the same queue).
    fits: Arc<AtomicUsize>,
}

impl Queue {
    pub(super) fn with_id(id: i32, key: Key, created: bool) -> Queue {
        Queue {
            id,
            object: Arc::from(format!("System V queue {id}")),
            key,
            msgmax: knob::read(MSGMAX).map_or(DEFAULT_MSGMAX, |v| v as usize),
            send_type: 1,
            selector: Selector::Any,
            created,
            fits: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Creates a queue with `key`, exclusively, mode `0o600`. See [`OpenOptions::open`].
    #[doc(alias = "msgget")]
    pub fn create(key: Key) -> Result<Queue> {
        OpenOptions::new().create_new(true).open(key)
    }

    /// Creates a new private queue (`IPC_PRIVATE`), mode `0o600`: other processes reach it by
    /// its [`id`](Queue::id) ([`Queue::from_id`]).
    #[doc(alias = "msgget")]
    pub fn private() -> Result<Queue> {
        Queue::create(Key::PRIVATE)
    }

    /// Opens the existing queue with `key`, checking `access`. See [`OpenOptions::open`].
    #[doc(alias = "msgget")]
    pub fn open(key: Key, access: Access) -> Result<Queue> {
        OpenOptions::new().access(access).open(key)
    }

    /// Opens the queue with `key`, creating it (mode `0o600`) if there is none. See
    /// [`OpenOptions::create`].
    #[doc(alias = "msgget")]
    pub fn open_or_create(key: Key) -> Result<Queue> {
        OpenOptions::new().create(true).open(key)
    }

    /// The queue with id `id`, as another process reported it. No system call: if the id
    /// names no queue, operations fail with [`ErrorKind::Disconnected`]; the key is unknown
    /// ([`Key::PRIVATE`]) until [`status`](Queue::status) is read.
    pub fn from_id(id: i32) -> Queue {
        Queue::with_id(id, Key::PRIVATE, false)
    }

    /// The queue's id (`msqid`), valid in every process of the IPC namespace.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key it was opened with.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether the call that opened this handle created the queue.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// The largest message, in bytes: `/proc/sys/kernel/msgmax` when the queue was opened.
    pub fn max_message_size(&self) -> usize {
        self.msgmax
    }

    /// The type [`MessageSender::send`] gives messages (initially 1).
    pub fn send_type(&self) -> i64 {
        i64::from(self.send_type)
    }

    /// Sets the type the [`MessageSender`] methods use.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] unless `mtype` is above zero.
    pub fn set_send_type(&mut self, mtype: i64) -> Result<()> {
        self.send_type = message_type(mtype).map_err(|e| self.fail(e, "set send type"))?;
        Ok(())
    }

    /// The selector [`MessageReceiver::recv`] uses (initially [`Selector::Any`]).
    pub fn recv_selector(&self) -> Selector {
        self.selector
    }

    /// Sets the selector the [`MessageReceiver`] methods use.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a type that is not above zero.
    pub fn set_recv_selector(&mut self, selector: Selector) -> Result<()> {
        selector
            .raw()
            .map_err(|e| self.fail(e, "set recv selector"))?;
        self.selector = selector;
        Ok(())
    }

    /// A guard that removes the queue when dropped (also during a panic): the workspace's one
    /// [`RemoveGuard`], for [`Removable::Sysv`] with this queue's id. A queue that is gone
    /// already is not an error.
    pub fn remove_guard(&self) -> RemoveGuard {
        RemoveGuard::new(Removable::Sysv(SysvKind::MessageQueue, self.id))
    }

    /// Removes the queue now (`msgctl(IPC_RMID)`): queued messages are discarded, blocked
    /// senders and receivers wake with [`ErrorKind::Disconnected`].
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] unless the caller owns or created the queue (or is
    /// privileged); [`ErrorKind::Disconnected`] if it is gone already.
    ///
    /// # References
    /// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_RMID")]
    pub fn remove(&self) -> Result<()> {
        core_sysv::remove(SysvKind::MessageQueue, self.id).map_err(|e| {
            // For a handle, a queue that is gone is a disconnection, as for its other calls.
            let e = match e.kind() {
                ErrorKind::NotFound => {
                    Error::with_note(ErrorKind::Disconnected, "the queue was removed already")
                }
                _ => e,
            };
            self.fail(e, "IPC_RMID")
        })
    }

    /// The queue's status (`msgctl(IPC_STAT)`): messages and bytes queued, the byte limit,
    /// who sent and received last and when, owner and mode.
    ///
    /// # Errors
    /// [`ErrorKind::PermissionDenied`] without read permission; [`ErrorKind::Disconnected`] if
    /// the queue was removed.
    ///
    /// # References
    /// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_STAT")]
    pub fn status(&self) -> Result<Status> {
        let ds =
            sys::msgctl_stat(self.id).map_err(|errno| self.fail(queue_error(errno), "IPC_STAT"))?;
        Ok(Status {
            key: Key::from_raw(ds.msg_perm.__key),
            messages: ds.msg_qnum as u64,
            bytes: ds.__msg_cbytes as u64,
            max_bytes: ds.msg_qbytes as u64,
            last_send_pid: pid(ds.msg_lspid),
            last_receive_pid: pid(ds.msg_lrpid),
            last_send: time(ds.msg_stime),
            last_receive: time(ds.msg_rtime),
            last_change: time(ds.msg_ctime),
            mode: u32::from(ds.msg_perm.mode) & 0o777,
            uid: ds.msg_perm.uid,
            gid: ds.msg_perm.gid,
            creator_uid: ds.msg_perm.cuid,
            creator_gid: ds.msg_perm.cgid,
        })
    }

    /// Sets the most bytes of text the queue holds (`msg_qbytes`, via `msgctl(IPC_SET)`).
    /// Senders block (or fail with [`ErrorKind::WouldBlock`]) while a message would take the
    /// queue past it.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`] for 0 (nothing could ever be sent).
    /// - [`ErrorKind::LimitExceeded`] naming `/proc/sys/kernel/msgmnb` and its value: above it
    ///   only a process with `CAP_SYS_RESOURCE` may raise the limit.
    /// - [`ErrorKind::PermissionDenied`] unless the caller owns or created the queue.
    ///
    /// # References
    /// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_SET")]
    pub fn set_max_bytes(&self, max_bytes: u64) -> Result<()> {
        const OP: &str = "IPC_SET msg_qbytes";
        if max_bytes == 0 {
            let e = Error::with_note(ErrorKind::InvalidInput, "msg_qbytes 0 admits no message");
            return Err(self.fail(e, OP));
        }
        let mut ds =
            sys::msgctl_stat_any(self.id).map_err(|errno| self.fail(queue_error(errno), OP))?;
        let was_owner = ds.msg_perm.uid == rustix::process::geteuid().as_raw()
            || ds.msg_perm.cuid == rustix::process::geteuid().as_raw();
        ds.msg_qbytes = max_bytes as _;
        // The limit a send checked may no longer hold: check again at the next full queue.
        self.fits.store(0, Ordering::Relaxed);
        sys::msgctl_set(self.id, &ds).map_err(|errno| {
            let msgmnb = knob::read(MSGMNB);
            let e = match errno {
                Errno::PERM if was_owner && msgmnb.is_some_and(|m| max_bytes > m) => {
                    limit(MSGMNB, msgmnb, errno)
                }
                _ => queue_error(errno),
            };
            self.fail(e, OP)
        })
    }

    /// Sets the queue's permission bits (`msgctl(IPC_SET)`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for bits beyond `0o777`; [`ErrorKind::PermissionDenied`]
    /// unless the caller owns or created the queue.
    ///
    /// # References
    /// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html)
    #[doc(alias = "msgctl")]
    #[doc(alias = "IPC_SET")]
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        const OP: &str = "IPC_SET mode";
        if mode & !0o777 != 0 {
            let e = Error::with_note(
                ErrorKind::InvalidInput,
                format!("mode {mode:#o} has bits beyond 0o777"),
            );
            return Err(self.fail(e, OP));
        }
        let mut ds =
            sys::msgctl_stat_any(self.id).map_err(|errno| self.fail(queue_error(errno), OP))?;
        ds.msg_perm.mode = mode as _;
        sys::msgctl_set(self.id, &ds).map_err(|errno| self.fail(queue_error(errno), OP))
    }

    /// Sends `msg` with type `mtype`, waiting for room as long as it takes. See
    /// [`send_typed_deadline`](Queue::send_typed_deadline).
    #[doc(alias = "msgsnd")]
    pub fn send_typed(&self, mtype: i64, msg: &[u8]) -> Result<()> {
        self.send_typed_deadline(mtype, msg, Deadline::Never)
    }

    /// Sends `msg` with type `mtype` if there is room now, else fails with
    /// [`ErrorKind::WouldBlock`]. See [`send_typed_deadline`](Queue::send_typed_deadline).
    #[doc(alias = "msgsnd")]
    pub fn try_send_typed(&self, mtype: i64, msg: &[u8]) -> Result<()> {
        self.send_typed_deadline(mtype, msg, Deadline::Now)
    }

    /// Sends `msg` with type `mtype`, waiting at most `timeout` for room. See
    /// [`send_typed_deadline`](Queue::send_typed_deadline).
    #[doc(alias = "msgsnd")]
    pub fn send_typed_timeout(&self, mtype: i64, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_typed_deadline(mtype, msg, Deadline::after(timeout))
    }

    /// Sends `msg` with type `mtype` (above zero), waiting for room until `deadline`
    /// (`msgsnd(2)`; see the [module documentation](super) for how deadlines are kept).
    ///
    /// Blocks while the message would take the queue past [`Status::max_bytes`].
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`], before any system call, unless `mtype` is above zero.
    /// - [`ErrorKind::MessageTooLarge`], before any system call, if `msg` is longer than
    ///   `/proc/sys/kernel/msgmax` (the same when the knob was lowered after the handle read it
    ///   and the kernel refuses the message); and if `msg` is longer than the queue's whole
    ///   byte limit (it could never be sent): checked with one `IPC_STAT` before the first
    ///   blocking send of a handle (and its clones) and after a lowered limit, else when the
    ///   queue is full.
    /// - [`ErrorKind::WouldBlock`] ([`Blocked::Full`]) for [`Deadline::Now`] on a full queue;
    ///   [`ErrorKind::TimedOut`] when the deadline passes.
    /// - [`ErrorKind::Disconnected`] if the queue is removed (also while waiting).
    /// - [`ErrorKind::PermissionDenied`] without write permission.
    ///
    /// # References
    /// - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
    #[doc(alias = "msgsnd")]
    pub fn send_typed_deadline(&self, mtype: i64, msg: &[u8], deadline: Deadline) -> Result<()> {
        let mtype = message_type(mtype).map_err(|e| self.fail(e, "msgsnd"))?;
        self.send_copy(mtype, msg, deadline)
    }

    /// Sends `msg` with `mtype` (already checked above zero) through the thread's scratch
    /// buffer.
    #[inline]
    fn send_copy(&self, mtype: c_long, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.check_size(msg.len())?;
        SCRATCH.with_borrow_mut(|raw| {
            raw.reserve_text(msg.len());
            raw.set_mtype(mtype);
            raw.text_mut()[..msg.len()].copy_from_slice(msg);
            self.send_raw(raw, msg.len(), deadline)
        })
    }

    /// Sends `buf` (its type and text), waiting for room until `deadline`, without copying it
    /// in user space. As [`send_typed_deadline`](Queue::send_typed_deadline).
    #[doc(alias = "msgsnd")]
    pub fn send_buf(&self, buf: &MsgBuf, deadline: Deadline) -> Result<()> {
        message_type(buf.mtype()).map_err(|e| self.fail(e, "msgsnd"))?;
        self.check_size(buf.len)?;
        self.send_raw(&buf.raw, buf.len, deadline)
    }

    /// Receives the message `selector` picks into `buf`, waiting as long as it takes. See
    /// [`recv_typed_deadline`](Queue::recv_typed_deadline).
    #[doc(alias = "msgrcv")]
    pub fn recv_typed(&self, selector: Selector, buf: &mut [u8]) -> Result<Received> {
        self.recv_typed_deadline(selector, buf, Deadline::Never)
    }

    /// Receives the message `selector` picks if there is one now, else fails with
    /// [`ErrorKind::WouldBlock`]. See [`recv_typed_deadline`](Queue::recv_typed_deadline).
    #[doc(alias = "msgrcv")]
    pub fn try_recv_typed(&self, selector: Selector, buf: &mut [u8]) -> Result<Received> {
        self.recv_typed_deadline(selector, buf, Deadline::Now)
    }

    /// Receives the message `selector` picks, waiting at most `timeout`. See
    /// [`recv_typed_deadline`](Queue::recv_typed_deadline).
    #[doc(alias = "msgrcv")]
    pub fn recv_typed_timeout(
        &self,
        selector: Selector,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Received> {
        self.recv_typed_deadline(selector, buf, Deadline::after(timeout))
    }

    /// Receives the message `selector` picks into `buf`, waiting for one until `deadline`
    /// (`msgrcv(2)`; see the [module documentation](super) for how deadlines are kept); returns
    /// its length and type.
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`], before any system call, for a selector type that is not
    ///   above zero.
    /// - [`ErrorKind::MessageTooLarge`] if the selected message is longer than `buf`: it stays
    ///   queued. The kernel does not say how long it is; [`Error::message_size`] gives
    ///   [`max_message_size`](Queue::max_message_size), a length that always suffices.
    /// - [`ErrorKind::WouldBlock`] ([`Blocked::Empty`]) for [`Deadline::Now`] when no message
    ///   matches; [`ErrorKind::TimedOut`] when the deadline passes.
    /// - [`ErrorKind::Disconnected`] if the queue is removed (also while waiting).
    /// - [`ErrorKind::PermissionDenied`] without read permission.
    ///
    /// # References
    /// - [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)
    #[doc(alias = "msgrcv")]
    pub fn recv_typed_deadline(
        &self,
        selector: Selector,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<Received> {
        SCRATCH.with_borrow_mut(|raw| {
            // The kernel delivers nothing longer than msgmax, so the scratch buffer need not
            // grow past it (unless msgmax was raised since the queue was opened: then E2BIG
            // leads to a second try with the new value).
            let mut capacity = buf.len().min(self.msgmax);
            loop {
                raw.reserve_text(capacity);
                match self.recv_raw(raw, capacity, selector, deadline) {
                    Ok(len) => {
                        buf[..len].copy_from_slice(&raw.text()[..len]);
                        return Ok(Received {
                            len,
                            mtype: i64::from(raw.mtype()),
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::MessageTooLarge && capacity < buf.len() => {
                        let now = knob::read(MSGMAX).map_or(0, |v| v as usize);
                        if now <= capacity {
                            return Err(e);
                        }
                        capacity = buf.len().min(now);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// Receives the message `selector` picks into a new buffer, waiting as long as it takes.
    #[doc(alias = "msgrcv")]
    pub fn recv_message(&self, selector: Selector) -> Result<Message> {
        self.recv_message_deadline(selector, Deadline::Never)
    }

    /// Receives the message `selector` picks into a new buffer (of
    /// [`max_message_size`](Queue::max_message_size) bytes, trimmed), waiting until
    /// `deadline`. See [`recv_typed_deadline`](Queue::recv_typed_deadline).
    ///
    /// If `/proc/sys/kernel/msgmax` was raised since the queue was opened and the message is
    /// longer than the buffer, the knob is read again and the receive made again with a buffer
    /// of its new value, as [`recv_typed_deadline`](Queue::recv_typed_deadline) does.
    #[doc(alias = "msgrcv")]
    pub fn recv_message_deadline(&self, selector: Selector, deadline: Deadline) -> Result<Message> {
        let mut buf = MsgBuf::with_capacity(self.msgmax);
        loop {
            match self.recv_buf(&mut buf, selector, deadline) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::MessageTooLarge => {
                    let now = knob::read(MSGMAX).map_or(0, |v| v as usize);
                    if now <= buf.capacity() {
                        return Err(e);
                    }
                    buf.reserve(now);
                }
                Err(e) => return Err(e),
            }
        }
        let mut data = buf.raw.text()[..buf.len].to_vec();
        data.shrink_to_fit();
        Ok(Message {
            mtype: buf.mtype(),
            data,
        })
    }

    /// Receives the message `selector` picks into `buf` (up to its
    /// [`capacity`](MsgBuf::capacity)), waiting until `deadline`, without a copy in user space.
    /// As [`recv_typed_deadline`](Queue::recv_typed_deadline).
    #[doc(alias = "msgrcv")]
    pub fn recv_buf(&self, buf: &mut MsgBuf, selector: Selector, deadline: Deadline) -> Result<()> {
        let capacity = buf.capacity();
        buf.len = self.recv_raw(&mut buf.raw, capacity, selector, deadline)?;
        Ok(())
    }

    /// Fails with `MessageTooLarge` if `len` is above msgmax (re-read, in case it was raised).
    #[inline]
    fn check_size(&self, len: usize) -> Result<()> {
        if len <= self.msgmax {
            return Ok(());
        }
        self.check_size_again(len)
    }

    #[cold]
    fn check_size_again(&self, len: usize) -> Result<()> {
        let now = knob::read(MSGMAX).map_or(self.msgmax, |v| v as usize);
        if len > now {
            let e = Error::message_too_large(len, now, MSGMAX);
            return Err(self.fail(e, "msgsnd"));
        }
        Ok(())
    }

    #[inline]
    fn send_raw(&self, raw: &RawMsg, len: usize, deadline: Deadline) -> Result<()> {
        // The stream's path: a blocking send of a size already known to fit waits in `msgsnd`
        // at once (the general path below makes the same calls, with more to decide first).
        if matches!(deadline, Deadline::Never) && len <= self.fits.load(Ordering::Relaxed) {
            loop {
                match sys::msgsnd(self.id, raw, len, 0) {
                    Ok(()) => return Ok(()),
                    // A blocking `msgsnd` does not fail with EAGAIN; if it did, it would be
                    // tried again, as the general path does.
                    Err(Errno::INTR | Errno::AGAIN) => {}
                    Err(errno) => return Err(self.send_error(errno, len)),
                }
            }
        }
        self.send_raw_slow(raw, len, deadline)
    }

    fn send_raw_slow(&self, raw: &RawMsg, len: usize, deadline: Deadline) -> Result<()> {
        // A message longer than the queue's whole byte limit is reported instead of waiting
        // for room that never comes. A blocking send checks that (one `IPC_STAT` per handle
        // and length class) before its first `msgsnd`, then blocks in `msgsnd` at once, as a
        // plain loop does from its first message: the same calls in the same order (if the
        // owner lowers the limit below it later, such a send waits for room, as it could
        // between a check and the wait anyway). A send with a deadline tries without waiting
        // first and checks only when the queue is full.
        let mut fit_checked = len <= self.fits.load(Ordering::Relaxed);
        if !fit_checked && deadline == Deadline::Never {
            self.check_fits(len)?;
            fit_checked = true;
        }
        let mut backoff = Backoff::new();
        loop {
            let block = deadline == Deadline::Never && fit_checked;
            let flags = if block { 0 } else { libc::IPC_NOWAIT };
            match sys::msgsnd(self.id, raw, len, flags) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !fit_checked {
                        self.check_fits(len)?;
                        fit_checked = true;
                    }
                    match deadline {
                        Deadline::Now => {
                            return Err(self.fail(Error::would_block(Blocked::Full), "msgsnd"));
                        }
                        Deadline::Never => {}
                        Deadline::At(_) => {
                            if !backoff.pause(deadline) {
                                return Err(self.fail(Error::timed_out(), "msgsnd"));
                            }
                        }
                    }
                }
                Err(errno) => return Err(self.send_error(errno, len)),
            }
        }
    }

    /// The error of a failed `msgsnd` of `len` bytes. `EINVAL` means no queue has the id any
    /// more, or the message is longer than `msgmax`: this handle checked it against the value
    /// it read at open, so the knob may have been lowered since (read again here).
    #[cold]
    fn send_error(&self, errno: Errno, len: usize) -> Error {
        if errno == Errno::INVAL {
            if let Some(now) = knob::read(MSGMAX).map(|v| v as usize) {
                if len > now {
                    let e = Error::message_too_large(len, now, MSGMAX)
                        .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()));
                    return self.fail(e, "msgsnd");
                }
            }
        }
        self.fail(queue_error(errno), "msgsnd")
    }

    /// Fails with `MessageTooLarge` if a message of `len` bytes can never fit the queue.
    fn check_fits(&self, len: usize) -> Result<()> {
        let ds = match sys::msgctl_stat(self.id) {
            Ok(ds) => ds,
            // IPC_STAT needs read permission, which a send-only user may lack: then the limit
            // cannot be known, and the send goes ahead as the caller asked (without asking
            // again: `set_max_bytes` through a handle clears this, as any limit read).
            Err(Errno::ACCESS) => {
                self.fits.store(usize::MAX, Ordering::Relaxed);
                return Ok(());
            }
            Err(errno) => return Err(self.fail(queue_error(errno), "msgsnd")),
        };
        let qbytes = ds.msg_qbytes as u64;
        if len as u64 > qbytes {
            let what = match knob::read(MSGMNB) {
                Some(mnb) => format!(
                    "msg_qbytes, the queue's byte limit; new queues get {MSGMNB}, \
                     which is {mnb}"
                ),
                None => format!("msg_qbytes, the queue's byte limit (default {MSGMNB})"),
            };
            let e = Error::message_too_large(len, qbytes as usize, what);
            return Err(self.fail(e, "msgsnd"));
        }
        self.fits.store(
            usize::try_from(qbytes).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }

    // No shortcut here like the send's: on one core a receiver that does less per message
    // lets the sender be preempted sooner, and the 4-message stream of a default queue then
    // switches more often (measured: README, System V same-core throughput).
    fn recv_raw(
        &self,
        raw: &mut RawMsg,
        capacity: usize,
        selector: Selector,
        deadline: Deadline,
    ) -> Result<usize> {
        let (msgtyp, select_flags) = selector.raw().map_err(|e| self.fail(e, "msgrcv"))?;
        let flags = select_flags
            | if deadline == Deadline::Never {
                0
            } else {
                libc::IPC_NOWAIT
            };
        let mut backoff = Backoff::new();
        loop {
            match sys::msgrcv(self.id, raw, capacity, msgtyp, flags) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::NOMSG) => match deadline {
                    Deadline::At(_) if backoff.pause(deadline) => {}
                    _ => {
                        let e = deadline.expired_error(Blocked::Empty);
                        return Err(self.fail(e, "msgrcv"));
                    }
                },
                Err(Errno::TOOBIG) => {
                    // The message may be longer than the msgmax this handle read, if the knob
                    // was raised since: name the size that fits now.
                    let msgmax = knob::read(MSGMAX).map_or(self.msgmax, |v| v as usize);
                    let e = Error::message_too_large(
                        msgmax.max(self.msgmax),
                        capacity,
                        "receive buffer: the selected message is longer and stays queued; \
                         a buffer of /proc/sys/kernel/msgmax bytes always fits",
                    );
                    return Err(self.fail(e, "msgrcv"));
                }
                Err(errno) => return Err(self.fail(queue_error(errno), "msgrcv")),
            }
        }
    }

    /// Names the queue in `e` and logs it (except the expected would-block and timeout, which
    /// are made without allocating: the name is shared, the op is static).
    fn fail(&self, e: Error, op: &'static str) -> Error {
        let e = e.in_op(op).on_shared(&self.object);
        if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            tracing::debug!(error = %e, "System V message queue");
        }
        e
    }
}

/// The sleeps of a deadline wait on System V queues: 50 µs doubling to 5 ms.
struct Backoff {
    pause: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_micros(50);
    const MAX: Duration = Duration::from_millis(5);

    fn new() -> Backoff {
        Backoff {
            pause: Backoff::FIRST,
        }
    }

    /// Sleeps for the next pause, cut to the time left; `false` if no time is left.
    fn pause(&mut self, deadline: Deadline) -> bool {
        let left = deadline.remaining().unwrap_or(Backoff::MAX);
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(Backoff::MAX);
        true
    }
}

impl MessageSender for Queue {
    /// Sends with the [send type](Queue::send_type).
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        // The send type was checked when it was set.
        self.send_copy(self.send_type, msg, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.msgmax
    }
}

impl MessageReceiver for Queue {
    /// Receives with the [selector](Queue::recv_selector); the type is dropped.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.recv_typed_deadline(self.selector, buf, deadline)
            .map(|r| r.len)
    }

    fn max_message_size(&self) -> usize {
        self.msgmax
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocking send into a full queue, once a check showed its size fits, waits in
    /// `msgsnd` and completes when room is made; after the limit is lowered through this
    /// handle, a message larger than it is refused again rather than waited for.
    #[test]
    fn blocking_sends_after_a_fit_check_wait_and_a_lowered_limit_is_checked_again() {
        let mut q = Queue::private().unwrap();
        let _guard = q.clone().remove_guard();
        q.set_max_bytes(1000).unwrap();
        let msg = [7u8; 400];
        q.send(&msg).unwrap();
        q.send(&msg).unwrap();
        // Full for a third: the check says it fits (would block, not too large).
        let e = q.try_send(&msg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert_eq!(q.fits.load(Ordering::Relaxed), 1000);
        // Blocking sends of that size now wait in msgsnd at once.
        let mut tx = q.clone();
        let sender = std::thread::spawn(move || {
            tx.send(&msg).unwrap();
            tx.send(&msg).unwrap();
        });
        let mut buf = vec![0; q.max_message_size()];
        for _ in 0..4 {
            assert_eq!(q.recv(&mut buf).unwrap(), 400);
        }
        sender.join().unwrap();
        q.set_max_bytes(300).unwrap();
        let e = q.send(&msg).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    }

    /// The first blocking send reads the queue's byte limit before its first `msgsnd` (so a
    /// stream of blocking sends makes the plain loop's calls from its first message on), and
    /// a message longer than that limit is refused before anything is sent, into an empty
    /// queue too.
    #[test]
    fn the_first_blocking_send_checks_the_limit_before_it_sends() {
        let mut q = Queue::private().unwrap();
        let _guard = q.clone().remove_guard();
        q.set_max_bytes(1000).unwrap();
        assert_eq!(q.fits.load(Ordering::Relaxed), 0);
        // A send with a deadline into a queue with room does not check.
        q.try_send(&[1u8; 10]).unwrap();
        assert_eq!(q.fits.load(Ordering::Relaxed), 0);
        q.send(&[2u8; 400]).unwrap();
        assert_eq!(q.fits.load(Ordering::Relaxed), 1000);
        let mut buf = vec![0; q.max_message_size()];
        assert_eq!(q.recv(&mut buf).unwrap(), 10);
        assert_eq!(q.recv(&mut buf).unwrap(), 400);
        q.set_max_bytes(300).unwrap();
        let e = q.send(&[3u8; 400]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(q.status().unwrap().messages, 0);
    }

    /// A stream's calls (a blocking send of a size known to fit, which goes straight to
    /// `msgsnd`, and a blocking receive) report what the general paths report: a message
    /// longer than the buffer stays queued, and a removed queue is a disconnection for both.
    #[test]
    fn blocking_stream_calls_report_a_short_buffer_and_a_removed_queue() {
        let mut q = Queue::private().unwrap();
        let guard = q.clone().remove_guard();
        q.send(&[5u8; 10]).unwrap();
        assert!(q.fits.load(Ordering::Relaxed) >= 10);
        let e = q.recv(&mut [0; 9]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(e.message_size(), Some((q.max_message_size(), 9)));
        assert_eq!(q.status().unwrap().messages, 1);
        let mut buf = [0; 10];
        assert_eq!(q.recv(&mut buf).unwrap(), 10);
        assert_eq!(buf, [5; 10]);
        drop(guard);
        let e = q.send(&[6u8; 10]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        let e = q.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }

    #[test]
    fn backoff_stops_at_the_deadline() {
        let mut b = Backoff::new();
        assert!(!b.pause(Deadline::Now));
        let d = Deadline::after(Duration::from_millis(2));
        while b.pause(d) {}
        assert!(d.has_passed());
    }
}
