//! Message-queue rows: `ipc-mq`'s POSIX and System V queues through the core traits, and for
//! each the raw loop (`mq_send`/`mq_receive`, `msgsnd`/`msgrcv` through libc, no library code).
//!
//! Each link is two queues, `down` (parent to child) and `up` (child to parent), made, handed
//! over and adopted by the shared fixtures ([`PosixQueue`], [`SysvQueue`]), which find them the
//! way unrelated processes do: POSIX queues by name (unique `/ipctest-mq-…` names, opened with
//! `mq_open` in the child), System V queues by id (private queues). The raw rows set up and
//! clean up through the same fixtures; only their measured loop is plain libc. What this file
//! adds to the fixtures is the [`Link`]: how a queue link ends.
//!
//! # Sizes
//!
//! A POSIX queue is created for the point's message size (`mq_msgsize` = the size, so the
//! receive buffer of exactly that size is accepted) and 10 messages (the kernel's default,
//! within `/proc/sys/fs/mqueue/msg_max`). The largest message of these rows is
//! `/proc/sys/fs/mqueue/msgsize_max` (8192 by default), what an unprivileged process may ask
//! for; a process with `CAP_SYS_RESOURCE` could go further, but the rows do not count on it.
//! A System V message is at most `/proc/sys/kernel/msgmax` (8192 by default), and a queue holds
//! `msgmnb` bytes (16 KiB by default).
//!
//! # A child that dies
//!
//! A queue has no end-of-stream: a receive whose sender died waits forever. So the parent
//! watches the child ([`watch_child`]) and, when it exits, wakes its own end: POSIX, by a
//! zero-length *hang-up* message on `up` (every benchmark message has at least 32 bytes, so
//! an empty one is never data; receivers report it as [`ErrorKind::Disconnected`]) and by
//! emptying `down` (a send blocked on a full queue returns, and the next one sees the child is
//! gone); System V, by removing both queues (blocked calls wake with `EIDRM`, a disconnection).
//! The other way round, dropping the parent's end wakes a child still waiting with a hang-up
//! on `down`, queued after anything the child has not read yet (the last message of a point).
//! POSIX names are unlinked when the parent's end is dropped (the queues themselves go with
//! the last descriptor). System V queues are removed when the child has exited; the parent's
//! end, when dropped, waits for that (at most 10 s, then removes them itself, which also wakes
//! a child that ignored the hang-up). Each queue is removed once: a second `IPC_RMID` of an id
//! could in principle hit a new queue that reused it.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc_core::{
    Deadline, Error, ErrorKind, MessageReceiver, MessageSender, Properties, Readiness, Result,
};
use ipc_mq::RemoveGuard;
use ipc_mq::posix;
use ipc_mq::sysv;
use libc::c_long;

use crate::fixtures::{PosixQueue, SysvQueue, posix_max_message, sysv_max_message};
use crate::row::{
    ChildWatch, Duplex, Handoff, Inherited, LibraryRow, Link, ParentEnd, Row, RowInfo, RowKind,
    duplex_child, duplex_parent, messages, watch_child,
};

/// How long the parent's end, when dropped, waits for room for its hang-up on `down`.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the parent's end of a System V link, when dropped, waits for the child to exit
/// before it removes the queues anyway.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn hang_up_error(object: &str) -> Error {
    Error::with_note(
        ErrorKind::Disconnected,
        "hang-up: the other process closed its end",
    )
    .on(object)
}

/// What a parent's end runs when it is dropped, given the watch on the child.
type OnDrop = Box<dyn FnOnce(&ChildWatch)>;

/// What the parent's end of a queue link holds besides its queues: the watch on the child, and
/// what to do when the end is dropped (wake the child, remove the queues).
struct ParentLink {
    watch: ChildWatch,
    object: String,
    on_drop: Option<OnDrop>,
}

impl ParentLink {
    /// `Err(Disconnected)` once the child has exited.
    fn check(&self) -> Result<()> {
        self.watch.check(&self.object)
    }
}

impl Drop for ParentLink {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f(&self.watch);
        }
    }
}

/// The parent's sender: refuses once the child has exited (one atomic load), so a stream of
/// sends into a queue nobody reads stops.
struct ParentTx<S> {
    tx: S,
    link: ParentLink,
}

/// Readiness is the queue's: the link's check runs in every attempt.
impl<S: Readiness> Readiness for ParentTx<S> {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        self.tx.readiness_fd()
    }
}

impl<S: MessageSender> MessageSender for ParentTx<S> {
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.link.check()?;
        self.tx.send_deadline(msg, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.tx.max_message_size()
    }
}

/// The parent's end of a queue link: `down` to send on, `up` to receive from, and the watch
/// on the child ([`posix_link`], [`sysv_link`]).
struct QueueLink<Q> {
    down: Q,
    up: Q,
    link: ParentLink,
}

impl<Q: Queue> QueueLink<Q> {
    fn new(
        down: Q,
        up: Q,
        watch: ChildWatch,
        object: String,
        on_drop: impl FnOnce(&ChildWatch) + 'static,
    ) -> QueueLink<Q> {
        QueueLink {
            down,
            up,
            link: ParentLink {
                watch,
                object,
                on_drop: Some(Box::new(on_drop)),
            },
        }
    }

    /// The library row's end: sends refuse once the child has exited, a hang-up on `up` is a
    /// disconnection.
    /// [`into_messages`](QueueLink::into_messages) with both ends async.
    fn into_async_messages(self) -> Result<Box<dyn Duplex>>
    where
        Q: Readiness,
    {
        let object = self.up.object();
        crate::rows::asynch::async_messages(
            ParentTx {
                tx: self.down,
                link: self.link,
            },
            HangUp {
                rx: self.up,
                object,
            },
        )
    }

    fn into_messages(self) -> Box<dyn Duplex> {
        let object = self.up.object();
        messages(
            ParentTx {
                tx: self.down,
                link: self.link,
            },
            HangUp {
                rx: self.up,
                object,
            },
        )
    }
}

/// What the two queue fixtures have in common here.
trait Queue: MessageSender + MessageReceiver + 'static {
    /// The queue, for errors.
    fn object(&self) -> String;
}

impl Queue for posix::Queue {
    fn object(&self) -> String {
        self.name().map_or_else(String::new, ToString::to_string)
    }
}

impl Queue for sysv::Queue {
    fn object(&self) -> String {
        format!("System V queue {}", self.id())
    }
}

/// The child's end of a queue link: sends on `up`; a hang-up on `down` is a disconnection.
fn child_messages<Q: Queue>(up: Q, down: Q) -> Box<dyn Duplex> {
    let object = down.object();
    messages(up, HangUp { rx: down, object })
}

/// A receiver that reports the zero-length hang-up as a disconnection.
struct HangUp<R> {
    rx: R,
    object: String,
}

impl<R: Readiness> Readiness for HangUp<R> {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        self.rx.readiness_fd()
    }
}

impl<R: MessageReceiver> MessageReceiver for HangUp<R> {
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        match self.rx.recv_deadline(buf, deadline)? {
            0 => Err(hang_up_error(&self.object)),
            n => Ok(n),
        }
    }

    fn max_message_size(&self) -> usize {
        self.rx.max_message_size()
    }
}

// ---------------------------------------------------------------------------------------------
// POSIX

/// The parent's end of a POSIX link: watches the child about to be started (`child`) and
/// arranges the hang-ups; `names` unlink both queues' names when the parent's end is dropped.
fn posix_link(
    down: posix::Queue,
    up: posix::Queue,
    names: (RemoveGuard, RemoveGuard),
    child: &mut Handoff,
) -> Result<QueueLink<posix::Queue>> {
    let name = down.name().cloned().ok_or_else(|| {
        Error::with_note(ErrorKind::InvalidInput, "the fixture opens queues by name")
    })?;
    let object = name.to_string();
    // The fixture's `down` here is write-only: open it again to empty it.
    let empty_down = posix::Queue::open(&name, posix::Access::ReadOnly)?;
    let hang_up_parent = up.try_clone()?;
    let watch = watch_child(child, move || {
        // The child is gone: a receive waiting for its reply gets the hang-up; a send blocked
        // on a full `down` gets room (and the next send sees the watch).
        let _ = hang_up_parent.try_send_with_priority(&[], 0);
        let mut buf = vec![0; empty_down.message_size()];
        while empty_down.try_recv(&mut buf).is_ok() {}
    })?;
    let hang_up_child = down.try_clone()?;
    let on_drop = move |watch: &ChildWatch| {
        if !watch.is_gone() {
            // The child may be waiting for a message that will not come.
            let _ = hang_up_child.send_with_priority_timeout(&[], 0, HANGUP_TIMEOUT);
        }
        drop(names);
    };
    Ok(QueueLink::new(down, up, watch, object, on_drop))
}

/// `ipc-mq` POSIX queues through the core traits (priority 0 for every message).
impl Link for PosixQueue {
    fn parent_end(
        down: posix::Queue,
        up: posix::Queue,
        names: (RemoveGuard, RemoveGuard),
        child: &mut Handoff,
    ) -> Result<Box<dyn Duplex>> {
        Ok(posix_link(down, up, names, child)?.into_messages())
    }

    fn child_end(up: posix::Queue, down: posix::Queue) -> Result<Box<dyn Duplex>> {
        Ok(child_messages(up, down))
    }
}

/// The POSIX queue row with both ends async (`ipc_core::tokio::AsyncEndpoint` over the queue
/// descriptors), on the same link as the sync row.
pub(crate) struct AsyncPosixMq;

impl Row for AsyncPosixMq {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "mq-posix-async",
            ..LibraryRow::<PosixQueue>::new("mq-posix", "mq-posix").info()
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (down, up, names) = duplex_parent::<PosixQueue>(size, child)?;
        let link = posix_link(down, up, names, child)?;
        Ok(ParentEnd::Ready(link.into_async_messages()?))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let (up, down) = duplex_child::<PosixQueue>(parent)?;
        let object = down.object();
        crate::rows::asynch::async_messages(up, HangUp { rx: down, object })
    }
}

/// `mq_send(3)` and `mq_receive(3)` through libc over the same two queues.
pub(crate) struct RawPosixMq;

impl Row for RawPosixMq {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "mq-posix-raw",
            family: "mq-posix",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "POSIX message queue, raw",
                ..ipc_mq::POSIX_PROPERTIES
            },
            max_message: Some(posix_max_message()),
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (down, up, names) = duplex_parent::<PosixQueue>(size, child)?;
        let l = posix_link(down, up, names, child)?;
        Ok(ParentEnd::Ready(Box::new(RawPosix {
            object: format!("{} {}", l.down.object(), l.up.object()),
            tx: l.down.into(),
            rx: l.up.into(),
            link: Some(l.link),
        })))
    }

    fn adopt(&self, _size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let (up, down) = duplex_child::<PosixQueue>(parent)?;
        Ok(Box::new(RawPosix {
            object: format!("{} {}", down.object(), up.object()),
            tx: up.into(),
            rx: down.into(),
            link: None,
        }))
    }
}

/// The plain POSIX queue loop. The parent's end also holds its [`ParentLink`].
struct RawPosix {
    tx: OwnedFd,
    rx: OwnedFd,
    /// The two names, for errors.
    object: String,
    link: Option<ParentLink>,
}

impl Duplex for RawPosix {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if let Some(link) = &self.link {
            link.check()?;
        }
        loop {
            // SAFETY: `tx` is an open queue descriptor (an mqd_t is a file descriptor on
            // Linux) and `msg` is readable for `msg.len()` bytes during the call.
            let r =
                unsafe { libc::mq_send(self.tx.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
            if r == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::from(e).in_op("mq_send").on(&self.object));
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            // SAFETY: `rx` is an open queue descriptor, `buf` is writable for `buf.len()`
            // bytes (the kernel writes at most that many), and a null priority pointer is
            // allowed.
            let n = unsafe {
                libc::mq_receive(
                    self.rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    std::ptr::null_mut(),
                )
            };
            match n {
                0 => return Err(hang_up_error(&self.object)),
                n if n > 0 => return Ok(n as usize),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(Error::from(e).in_op("mq_receive").on(&self.object));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// System V

/// The parent's end of a System V link: watches the child about to be started (`child`);
/// `guards` remove both queues, once, when the child has exited or the parent's end gives up
/// waiting for that.
fn sysv_link(
    down: sysv::Queue,
    up: sysv::Queue,
    guards: (RemoveGuard, RemoveGuard),
    child: &mut Handoff,
) -> Result<QueueLink<sysv::Queue>> {
    let guards = Arc::new(Mutex::new(Some(guards)));
    // Removed once, by whichever comes first.
    let remove = |g: &Mutex<Option<(RemoveGuard, RemoveGuard)>>| {
        drop(g.lock().unwrap_or_else(|p| p.into_inner()).take());
    };
    let on_exit = Arc::clone(&guards);
    let watch = watch_child(child, move || remove(&on_exit))?;
    let object = format!("System V queue {}", down.id());
    let hang_up_child = down.clone();
    let on_drop = move |watch: &ChildWatch| {
        if !watch.is_gone() {
            // Removing the queues now would also discard what the child has not read yet (the
            // last message of a point, say): hang up after it and let the child's exit remove
            // them. A child that does not exit in time is woken by the removal.
            let _ = hang_up_child.send_typed_timeout(1, &[], HANGUP_TIMEOUT);
            watch.wait_handled(EXIT_TIMEOUT);
        }
        remove(&guards);
    };
    Ok(QueueLink::new(down, up, watch, object, on_drop))
}

/// `ipc-mq` System V queues through the core traits (type 1 for every message, receives of
/// any type).
impl Link for SysvQueue {
    fn parent_end(
        down: sysv::Queue,
        up: sysv::Queue,
        guards: (RemoveGuard, RemoveGuard),
        child: &mut Handoff,
    ) -> Result<Box<dyn Duplex>> {
        Ok(sysv_link(down, up, guards, child)?.into_messages())
    }

    fn child_end(up: sysv::Queue, down: sysv::Queue) -> Result<Box<dyn Duplex>> {
        Ok(child_messages(up, down))
    }
}

/// `msgsnd(2)` and `msgrcv(2)` through libc over the same two queues.
pub(crate) struct RawSysvMq;

impl Row for RawSysvMq {
    fn info(&self) -> RowInfo {
        RowInfo {
            id: "mq-sysv-raw",
            family: "mq-sysv",
            kind: RowKind::Raw,
            properties: Properties {
                mechanism: "System V message queue, raw",
                ..ipc_mq::SYSV_PROPERTIES
            },
            max_message: Some(sysv_max_message()),
        }
    }

    fn connect(&self, size: usize, child: &mut Handoff) -> Result<ParentEnd> {
        let (down, up, guards) = duplex_parent::<SysvQueue>(size, child)?;
        let l = sysv_link(down, up, guards, child)?;
        Ok(ParentEnd::Ready(Box::new(RawSysv::new(
            l.down.id(),
            l.up.id(),
            size,
            Some(l.link),
        ))))
    }

    fn adopt(&self, size: usize, parent: &Inherited<'_>) -> Result<Box<dyn Duplex>> {
        let (up, down) = duplex_child::<SysvQueue>(parent)?;
        Ok(Box::new(RawSysv::new(up.id(), down.id(), size, None)))
    }
}

const LONG: usize = size_of::<c_long>();

/// The plain System V loop: one `struct msgbuf` (a `long` type, then the text) for both
/// directions, as a C program would have. The parent's end also holds its [`ParentLink`].
struct RawSysv {
    tx: i32,
    rx: i32,
    /// `msgbuf[0]` is the type; the text follows, room for `size` bytes.
    msgbuf: Vec<c_long>,
    link: Option<ParentLink>,
}

impl RawSysv {
    fn new(tx: i32, rx: i32, size: usize, link: Option<ParentLink>) -> RawSysv {
        RawSysv {
            tx,
            rx,
            msgbuf: vec![0; 1 + size.div_ceil(LONG)],
            link,
        }
    }

    /// The text part of `msgbuf`.
    fn text(&mut self) -> &mut [u8] {
        let words = &mut self.msgbuf[1..];
        // SAFETY: the bytes of a `[c_long]` are initialised with no padding, any byte pattern
        // is a valid `c_long`, `u8` needs no alignment, and the slice borrows `self` mutably.
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len() * LONG) }
    }
}

/// A failed `msgsnd`/`msgrcv`: a removed queue (`EIDRM` while waiting, `EINVAL` after) is the
/// other process's end going away.
fn sysv_error(op: &'static str, id: i32) -> Option<Error> {
    let e = std::io::Error::last_os_error();
    let e = match e.raw_os_error() {
        Some(libc::EINTR) => return None,
        Some(libc::EIDRM | libc::EINVAL) => {
            Error::with_note(ErrorKind::Disconnected, "the queue was removed")
        }
        _ => Error::from(e),
    };
    Some(e.in_op(op).on(format_args!("System V queue {id}")))
}

impl Duplex for RawSysv {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if let Some(link) = &self.link {
            link.check()?;
        }
        self.msgbuf[0] = 1;
        self.text()[..msg.len()].copy_from_slice(msg);
        loop {
            // SAFETY: `msgbuf` is a live `struct msgbuf` whose text holds at least
            // `msg.len()` bytes (the slice copy above would have panicked otherwise); the
            // kernel only reads it during the call.
            let r = unsafe { libc::msgsnd(self.tx, self.msgbuf.as_ptr().cast(), msg.len(), 0) };
            if r == 0 {
                return Ok(());
            }
            if let Some(e) = sysv_error("msgsnd", self.tx) {
                return Err(e);
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let room = buf.len().min(self.text().len());
        loop {
            // SAFETY: `msgbuf` is writable for one `long` and `room` bytes of text, and the
            // kernel writes at most that much.
            let n = unsafe { libc::msgrcv(self.rx, self.msgbuf.as_mut_ptr().cast(), room, 0, 0) };
            if n == 0 {
                return Err(hang_up_error(&format!("System V queue {}", self.rx)));
            }
            if n > 0 {
                let n = n as usize;
                buf[..n].copy_from_slice(&self.text()[..n]);
                return Ok(n);
            }
            if let Some(e) = sysv_error("msgrcv", self.rx) {
                return Err(e);
            }
        }
    }
}
