//! System V message queues: [`Queue`] (a kernel queue of typed messages, found by a [`Key`]),
//! receive [`Selector`]s, [`Status`] (`IPC_STAT`), [`RemoveGuard`] and [`MsgBuf`].
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
//! let got = q.receive(Selector::Type(1), &mut buf)?;
//! assert_eq!((&buf[..got.len], got.mtype), (&b"for one"[..], 1));
//! # Ok::<(), ipc_core::Error>(())
//! ```
//!
//! # Waiting and deadlines
//!
//! `msgsnd` and `msgrcv` either block without limit or not at all (`IPC_NOWAIT`); there is no
//! timed form. So:
//!
//! - [`Deadline::Never`] is the plain blocking call: the kernel wakes the caller the moment it
//!   can proceed, at no extra cost.
//! - [`Deadline::Now`] is one `IPC_NOWAIT` call.
//! - [`Deadline::At`] polls: an `IPC_NOWAIT` call, then sleeps of 50 µs doubling up to 5 ms
//!   (cut to the time left), and again, until it succeeds or the deadline passes. The cost:
//!   a message that arrives while the caller sleeps waits up to 5 ms for it, and a long wait
//!   makes about 200 system calls a second. The deadline itself is kept on the monotonic
//!   clock. Use a blocking call where latency matters and a deadline is not needed.
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
//! [`Queue::send_buf`] / [`Queue::receive_buf`] avoids that copy.
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html),
//!   [`msgop(2)`](https://man7.org/linux/man-pages/man2/msgop.2.html)

// `c_long`, `time_t`, `msgqnum_t`, `msglen_t` and the `mq_attr` fields are 64-bit here but not
// on every Linux ABI: the casts that look redundant keep the code portable.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MaxMessage, MessageReceiver, MessageSender, Properties,
    Result,
};
use libc::c_long;
use rustix::io::Errno;

pub use crate::Access;
use crate::Creation;
use crate::limits::{SYSV_MSGMAX, SYSV_MSGMNB, SYSV_MSGMNI, read_knob};
use crate::sys::{self, RawMsg};

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
const DEFAULT_MSGMAX: usize = 8192;

/// The key a queue is found by: from a path and a project number ([`Key::from_path`]), a
/// number agreed on, or [`Key::PRIVATE`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(i32);

impl Key {
    /// `IPC_PRIVATE`: [`Queue::create`] makes a new queue no other key finds; share it by id.
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// The key `ftok(path, project)` gives, computed the same way as glibc's `ftok(3)` (so a C
    /// program calling `ftok` with the same arguments finds the same queue): the low 16 bits of
    /// the file's inode, the low 8 bits of its device, and `project` in the top 8 bits.
    ///
    /// The file must exist while the key is in use (a new file at the same path usually gives
    /// another key). Distinct files can share a key; use [`OpenOptions::create_new`] so a
    /// clash is an error, not a shared queue.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for project 0 (reserved: the key could be `IPC_PRIVATE`);
    /// the `stat(2)` error if the path cannot be examined.
    ///
    /// # References
    /// - [`ftok(3)`](https://man7.org/linux/man-pages/man3/ftok.3.html)
    #[doc(alias = "ftok")]
    pub fn from_path(path: impl AsRef<Path>, project: u8) -> Result<Key> {
        let path = path.as_ref();
        if project == 0 {
            let e = Error::with_note(ErrorKind::InvalidInput, "the project number must not be 0")
                .in_op("ftok")
                .on(path.display());
            tracing::debug!(error = %e, "ftok");
            return Err(e);
        }
        let st = rustix::fs::stat(path).map_err(|e| {
            let e = Error::from(e).in_op("ftok").on(path.display());
            tracing::debug!(error = %e, "ftok");
            e
        })?;
        let key = (st.st_ino & 0xffff) as u32
            | ((st.st_dev & 0xff) as u32) << 16
            | u32::from(project) << 24;
        Ok(Key(key as i32))
    }

    /// A key from its number.
    pub const fn from_raw(raw: i32) -> Key {
        Key(raw)
    }

    /// The number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// Whether this is [`Key::PRIVATE`].
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() {
            f.write_str("Key(IPC_PRIVATE)")
        } else {
            write!(f, "Key({:#010x})", self.0 as u32)
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() {
            f.write_str("IPC_PRIVATE")
        } else {
            write!(f, "{:#010x}", self.0 as u32)
        }
    }
}

/// Which message a receive takes (`msgtyp` and `MSG_EXCEPT` of `msgrcv(2)`). Within the
/// messages a selector admits, the oldest is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Selector {
    /// The first message in the queue, of any type (`msgtyp == 0`).
    #[default]
    Any,
    /// The first message of exactly this type (`msgtyp > 0`).
    Type(i64),
    /// The first message of the lowest type that is at most this value (`msgtyp < 0`, here
    /// given as its absolute value): a priority queue where lower types go first.
    AtMost(i64),
    /// The first message of any type except this one (`msgtyp > 0` with `MSG_EXCEPT`).
    Except(i64),
}

impl Selector {
    /// `(msgtyp, flags)` for `msgrcv`.
    fn raw(self) -> Result<(c_long, i32)> {
        let t = match self {
            Selector::Any => return Ok((0, 0)),
            Selector::Type(t) | Selector::AtMost(t) | Selector::Except(t) => t,
        };
        let t = message_type(t)?;
        Ok(match self {
            Selector::AtMost(_) => (-t, 0),
            Selector::Except(_) => (t, libc::MSG_EXCEPT),
            _ => (t, 0),
        })
    }
}

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

/// How to open or create a queue: creation, permission bits, access.
///
/// ```
/// use ipc_mq::sysv::{Key, OpenOptions};
///
/// let q = OpenOptions::new().create_new(true).mode(0o640).open(Key::PRIVATE)?;
/// let _remove = q.remove_guard();
/// assert_eq!(q.status()?.mode, 0o640);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    access: Access,
    create: bool,
    create_new: bool,
    mode: u32,
    any_owner: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Open an existing queue for sending and receiving; if created, mode `0o600`.
    pub fn new() -> OpenOptions {
        OpenOptions {
            access: Access::ReadWrite,
            create: false,
            create_new: false,
            mode: DEFAULT_MODE,
            any_owner: false,
        }
    }

    /// Accepts an existing queue owned by another user. By default an existing queue must be
    /// owned by this process's effective user (`msgctl(IPC_STAT)`), else
    /// [`ErrorKind::PermissionDenied`]: anyone can create a queue under a key before its
    /// rightful user does, and its owner can remove it or change its mode at will. The same
    /// policy holds for every named object of this workspace; each has such an override.
    /// ([`Queue::from_id`] makes no check at all: whoever hands out an id vouches for it.)
    pub fn any_owner(&mut self, any_owner: bool) -> &mut OpenOptions {
        self.any_owner = any_owner;
        self
    }

    /// The access to check when opening an existing queue (`msgget` refuses with
    /// [`ErrorKind::PermissionDenied`] if the queue's mode does not grant it).
    pub fn access(&mut self, access: Access) -> &mut OpenOptions {
        self.access = access;
        self
    }

    /// Creates the queue if no queue has the key, else opens it (`IPC_CREAT`). Done as an
    /// exclusive create and then an open, so [`Queue::was_created`] is exact; a queue that
    /// already existed must be owned by this process's effective user (else
    /// [`ErrorKind::PermissionDenied`]), so a queue squatted under the key is refused.
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }

    /// Creates the queue, failing with [`ErrorKind::AlreadyExists`] if a queue has the key
    /// (`IPC_CREAT | IPC_EXCL`). With [`Key::PRIVATE`] a new queue is always made.
    /// Takes precedence over [`create`](OpenOptions::create), as in `std::fs::OpenOptions`.
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// The permission bits (at most `0o777`) of a queue this call creates. Exact: System V IPC
    /// does not apply the umask.
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// Opens or creates the queue with `key` (`msgget(2)`).
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`], before any system call, for a mode beyond `0o777` or
    ///   for opening [`Key::PRIVATE`] without creating.
    /// - [`ErrorKind::NotFound`]: no queue has the key (and not creating).
    /// - [`ErrorKind::AlreadyExists`]: creating exclusively and a queue has the key.
    /// - [`ErrorKind::PermissionDenied`]: the queue's mode does not grant the access, or the
    ///   existing queue is another user's (see [`any_owner`](OpenOptions::any_owner)).
    /// - [`ErrorKind::LimitExceeded`]: `/proc/sys/kernel/msgmni` queues exist already (named,
    ///   with its value).
    ///
    /// # References
    /// - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html)
    #[doc(alias = "msgget")]
    pub fn open(&self, key: Key) -> Result<Queue> {
        let invalid = |note: String| {
            let e = Error::with_note(ErrorKind::InvalidInput, note)
                .in_op("msgget")
                .on(key);
            tracing::debug!(error = %e, "msgget");
            Err(e)
        };
        if self.mode & !0o777 != 0 {
            return invalid(format!(
                "mode {:#o} has bits beyond 0o777 (permission bits only)",
                self.mode
            ));
        }
        let access = match self.access {
            Access::ReadOnly => 0o400,
            Access::WriteOnly => 0o200,
            Access::ReadWrite => 0o600,
        };
        let create = libc::IPC_CREAT | libc::IPC_EXCL | self.mode as i32;
        let (id, created) = match Creation::of(self.create, self.create_new) {
            Creation::OpenExisting if key.is_private() => {
                return invalid(
                    "IPC_PRIVATE names no existing queue; create one, or open it by id".into(),
                );
            }
            Creation::OpenExisting => {
                let id = msgget(key, access)?;
                if !self.any_owner {
                    check_owner(id, key)?;
                }
                (id, false)
            }
            Creation::CreateNew => (msgget(key, create)?, true),
            Creation::OpenOrCreate if key.is_private() => (msgget(key, create)?, true),
            Creation::OpenOrCreate => self.open_or_create(key, access, create)?,
        };
        if created {
            tracing::trace!(key = %key, id, mode = format_args!("{:#o}", self.mode), "created System V message queue");
        } else {
            tracing::trace!(key = %key, id, "opened System V message queue");
        }
        Ok(Queue::with_id(id, key, created))
    }

    fn open_or_create(&self, key: Key, access: i32, create: i32) -> Result<(i32, bool)> {
        for _ in 0..8 {
            match msgget(key, create) {
                Ok(id) => return Ok((id, true)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            match msgget(key, access) {
                Ok(id) => {
                    if !self.any_owner {
                        check_owner(id, key)?;
                    }
                    return Ok((id, false));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        let e = Error::with_note(
            ErrorKind::Io,
            "a queue with this key kept appearing and disappearing",
        )
        .in_op("msgget")
        .on(key);
        tracing::debug!(error = %e, "msgget");
        Err(e)
    }
}

/// Refuses a queue owned by another user (unless `OpenOptions::any_owner`).
fn check_owner(id: i32, key: Key) -> Result<()> {
    let uid = match sys::msgctl_stat(id) {
        Ok(ds) => ds.msg_perm.uid,
        // IPC_STAT needs read permission, which a write-only queue denies even its owner:
        // /proc/sysvipc/msg (this IPC namespace's queues, readable by all) names the owner.
        Err(Errno::ACCESS) => owner_from_proc(id).ok_or_else(|| {
            Error::with_note(
                ErrorKind::PermissionDenied,
                "cannot tell who owns the queue (no read permission, and /proc/sysvipc/msg \
                 does not say); OpenOptions::any_owner(true) opens it anyway",
            )
            .in_op("msgget")
            .on(key)
        })?,
        Err(errno) => return Err(queue_error(errno).in_op("msgctl(IPC_STAT)").on(key)),
    };
    let me = rustix::process::geteuid().as_raw();
    if uid != me {
        let e = Error::with_note(
            ErrorKind::PermissionDenied,
            format!(
                "a queue has this key and is owned by uid {uid}, not by this process's uid \
                 {me}; OpenOptions::any_owner(true) opens it anyway"
            ),
        )
        .in_op("msgget")
        .on(key);
        tracing::debug!(error = %e, "msgget");
        return Err(e);
    }
    Ok(())
}

/// The owner of queue `id` as `/proc/sysvipc/msg` lists it (columns: key msqid perms cbytes
/// qnum lspid lrpid uid ...).
fn owner_from_proc(id: i32) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/sysvipc/msg").ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let id_col = header.iter().position(|c| *c == "msqid")?;
    let uid_col = header.iter().position(|c| *c == "uid")?;
    lines.find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(id_col)?.parse::<i32>().ok()? == id).then(|| cols.get(uid_col)?.parse().ok())?
    })
}

fn msgget(key: Key, flags: i32) -> Result<i32> {
    sys::msgget(key.as_raw(), flags).map_err(|errno| {
        let e = match errno {
            Errno::NOSPC => limit(SYSV_MSGMNI, read_knob(SYSV_MSGMNI), errno),
            Errno::NOMEM => limit("kernel memory", None, errno),
            _ => Error::from(errno),
        }
        .in_op("msgget")
        .on(key);
        tracing::debug!(error = %e, "msgget");
        e
    })
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

/// What a receive got: the message length and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Received {
    /// The message's length: it is in the first `len` bytes of the buffer.
    pub len: usize,
    /// Its type.
    pub mtype: i64,
}

/// A received message in its own allocation ([`Queue::receive_message`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The type.
    pub mtype: i64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A message buffer in the layout `msgsnd` and `msgrcv` use (a `long` type, then the text), so
/// sending and receiving need no copy in user space ([`Queue::send_buf`],
/// [`Queue::receive_buf`]).
///
/// ```
/// use ipc_core::Deadline;
/// use ipc_mq::sysv::{MsgBuf, Queue, Selector};
///
/// let q = Queue::private()?;
/// let _remove = q.remove_guard();
/// let mut m = MsgBuf::with_capacity(64);
/// m.set_mtype(7);
/// m.set_text(b"no extra copy");
/// q.send_buf(&m, Deadline::Never)?;
/// let mut r = MsgBuf::with_capacity(64);
/// q.receive_buf(&mut r, Selector::Any, Deadline::Never)?;
/// assert_eq!((r.mtype(), r.text()), (7, &b"no extra copy"[..]));
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MsgBuf {
    raw: RawMsg,
    len: usize,
}

impl fmt::Debug for MsgBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgBuf")
            .field("mtype", &self.mtype())
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl MsgBuf {
    /// An empty message of type 1 with room for `capacity` bytes of text.
    pub fn with_capacity(capacity: usize) -> MsgBuf {
        let mut raw = RawMsg::with_text_capacity(capacity);
        raw.set_mtype(1);
        MsgBuf { raw, len: 0 }
    }

    /// The type.
    pub fn mtype(&self) -> i64 {
        i64::from(self.raw.mtype())
    }

    /// Sets the type (checked when sending: above zero).
    pub fn set_mtype(&mut self, mtype: i64) {
        self.raw.set_mtype(mtype as c_long);
    }

    /// The text.
    pub fn text(&self) -> &[u8] {
        &self.raw.text()[..self.len]
    }

    /// Replaces the text with `text`, growing the buffer if needed.
    pub fn set_text(&mut self, text: &[u8]) {
        self.text_mut(text.len()).copy_from_slice(text);
    }

    /// Sets the text length to `len` (growing the buffer if needed; new bytes are zero or
    /// left over) and returns the text to fill in place.
    pub fn text_mut(&mut self, len: usize) -> &mut [u8] {
        self.raw.reserve_text(len);
        self.len = len;
        &mut self.raw.text_mut()[..len]
    }

    /// How many bytes of text fit without growing; also how much a receive accepts.
    pub fn capacity(&self) -> usize {
        self.raw.text_capacity()
    }

    /// Grows the buffer to hold at least `capacity` bytes of text.
    pub fn reserve(&mut self, capacity: usize) {
        self.raw.reserve_text(capacity);
    }
}

thread_local! {
    /// The per-thread buffer the `&[u8]` methods copy through.
    static SCRATCH: RefCell<RawMsg> = RefCell::new(RawMsg::with_text_capacity(DEFAULT_MSGMAX));
}

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
/// [`remove`](Queue::remove)d (or a [`RemoveGuard`] drops).
#[derive(Clone, Debug)]
pub struct Queue {
    id: i32,
    key: Key,
    msgmax: usize,
    send_type: c_long,
    selector: Selector,
    created: bool,
}

impl Queue {
    fn with_id(id: i32, key: Key, created: bool) -> Queue {
        Queue {
            id,
            key,
            msgmax: read_knob(SYSV_MSGMAX).map_or(DEFAULT_MSGMAX, |v| v as usize),
            send_type: 1,
            selector: Selector::Any,
            created,
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
    pub fn receive_selector(&self) -> Selector {
        self.selector
    }

    /// Sets the selector the [`MessageReceiver`] methods use.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a type that is not above zero.
    pub fn set_receive_selector(&mut self, selector: Selector) -> Result<()> {
        selector
            .raw()
            .map_err(|e| self.fail(e, "set receive selector"))?;
        self.selector = selector;
        Ok(())
    }

    /// A guard that removes the queue when dropped.
    pub fn remove_guard(&self) -> RemoveGuard {
        RemoveGuard { id: Some(self.id) }
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
        sys::msgctl_rmid(self.id).map_err(|errno| self.fail(queue_error(errno), "IPC_RMID"))?;
        tracing::trace!(id = self.id, key = %self.key, "removed System V message queue");
        Ok(())
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
            key: Key(ds.msg_perm.__key),
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
            sys::msgctl_stat(self.id).map_err(|errno| self.fail(queue_error(errno), OP))?;
        let was_owner = ds.msg_perm.uid == rustix::process::geteuid().as_raw()
            || ds.msg_perm.cuid == rustix::process::geteuid().as_raw();
        ds.msg_qbytes = max_bytes as _;
        sys::msgctl_set(self.id, &ds).map_err(|errno| {
            let msgmnb = read_knob(SYSV_MSGMNB);
            let e = match errno {
                Errno::PERM if was_owner && msgmnb.is_some_and(|m| max_bytes > m) => {
                    limit(SYSV_MSGMNB, msgmnb, errno)
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
            sys::msgctl_stat(self.id).map_err(|errno| self.fail(queue_error(errno), OP))?;
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
    /// (`msgsnd(2)`; see the [module documentation](self) for how deadlines are kept).
    ///
    /// Blocks while the message would take the queue past [`Status::max_bytes`].
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidInput`], before any system call, unless `mtype` is above zero.
    /// - [`ErrorKind::MessageTooLarge`], before any system call, if `msg` is longer than
    ///   `/proc/sys/kernel/msgmax`; and, when the queue is full, if `msg` is longer than the
    ///   queue's whole byte limit (it could never be sent).
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
    /// [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "msgrcv")]
    pub fn receive(&self, selector: Selector, buf: &mut [u8]) -> Result<Received> {
        self.receive_deadline(selector, buf, Deadline::Never)
    }

    /// Receives the message `selector` picks if there is one now, else fails with
    /// [`ErrorKind::WouldBlock`]. See [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "msgrcv")]
    pub fn try_receive(&self, selector: Selector, buf: &mut [u8]) -> Result<Received> {
        self.receive_deadline(selector, buf, Deadline::Now)
    }

    /// Receives the message `selector` picks, waiting at most `timeout`. See
    /// [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "msgrcv")]
    pub fn receive_timeout(
        &self,
        selector: Selector,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Received> {
        self.receive_deadline(selector, buf, Deadline::after(timeout))
    }

    /// Receives the message `selector` picks into `buf`, waiting for one until `deadline`
    /// (`msgrcv(2)`; see the [module documentation](self) for how deadlines are kept); returns
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
    pub fn receive_deadline(
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
                match self.receive_raw(raw, capacity, selector, deadline) {
                    Ok(len) => {
                        buf[..len].copy_from_slice(&raw.text()[..len]);
                        return Ok(Received {
                            len,
                            mtype: i64::from(raw.mtype()),
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::MessageTooLarge && capacity < buf.len() => {
                        let now = read_knob(SYSV_MSGMAX).map_or(0, |v| v as usize);
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
    pub fn receive_message(&self, selector: Selector) -> Result<Message> {
        self.receive_message_deadline(selector, Deadline::Never)
    }

    /// Receives the message `selector` picks into a new buffer (of
    /// [`max_message_size`](Queue::max_message_size) bytes, trimmed), waiting until
    /// `deadline`. See [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "msgrcv")]
    pub fn receive_message_deadline(
        &self,
        selector: Selector,
        deadline: Deadline,
    ) -> Result<Message> {
        let mut buf = MsgBuf::with_capacity(self.msgmax);
        self.receive_buf(&mut buf, selector, deadline)?;
        let mut data = buf.raw.text()[..buf.len].to_vec();
        data.shrink_to_fit();
        Ok(Message {
            mtype: buf.mtype(),
            data,
        })
    }

    /// Receives the message `selector` picks into `buf` (up to its
    /// [`capacity`](MsgBuf::capacity)), waiting until `deadline`, without a copy in user space.
    /// As [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "msgrcv")]
    pub fn receive_buf(
        &self,
        buf: &mut MsgBuf,
        selector: Selector,
        deadline: Deadline,
    ) -> Result<()> {
        let capacity = buf.capacity();
        buf.len = self.receive_raw(&mut buf.raw, capacity, selector, deadline)?;
        Ok(())
    }

    /// Fails with `MessageTooLarge` if `len` is above msgmax (re-read, in case it was raised).
    fn check_size(&self, len: usize) -> Result<()> {
        if len <= self.msgmax {
            return Ok(());
        }
        let now = read_knob(SYSV_MSGMAX).map_or(self.msgmax, |v| v as usize);
        if len > now {
            let e = Error::message_too_large(len, now, SYSV_MSGMAX);
            return Err(self.fail(e, "msgsnd"));
        }
        Ok(())
    }

    fn send_raw(&self, raw: &RawMsg, len: usize, deadline: Deadline) -> Result<()> {
        // The first attempt never blocks: if the queue is full, a message longer than the
        // queue's whole byte limit is reported instead of waiting for room that never comes.
        let mut fit_checked = false;
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
                Err(errno) => return Err(self.fail(queue_error(errno), "msgsnd")),
            }
        }
    }

    /// Fails with `MessageTooLarge` if a message of `len` bytes can never fit the queue.
    fn check_fits(&self, len: usize) -> Result<()> {
        let ds = match sys::msgctl_stat(self.id) {
            Ok(ds) => ds,
            // IPC_STAT needs read permission, which a send-only user may lack: then the limit
            // cannot be known, and the send goes ahead as the caller asked.
            Err(Errno::ACCESS) => return Ok(()),
            Err(errno) => return Err(self.fail(queue_error(errno), "msgsnd")),
        };
        let qbytes = ds.msg_qbytes as u64;
        if len as u64 > qbytes {
            let what = match read_knob(SYSV_MSGMNB) {
                Some(mnb) => format!(
                    "msg_qbytes, the queue's byte limit; new queues get {SYSV_MSGMNB}, \
                     which is {mnb}"
                ),
                None => format!("msg_qbytes, the queue's byte limit (default {SYSV_MSGMNB})"),
            };
            let e = Error::message_too_large(len, qbytes as usize, what);
            return Err(self.fail(e, "msgsnd"));
        }
        Ok(())
    }

    fn receive_raw(
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
                    let e = Error::message_too_large(
                        self.msgmax,
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

    /// Names the queue in `e` and logs it (except the expected would-block and timeout).
    fn fail(&self, e: Error, op: &'static str) -> Error {
        let e = e.in_op(op).on(format_args!("System V queue {}", self.id));
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

/// Removes a queue when dropped (also during a panic); one that is gone already is not an
/// error.
#[derive(Debug)]
#[must_use = "the queue is removed when the guard is dropped"]
pub struct RemoveGuard {
    id: Option<i32>,
}

impl RemoveGuard {
    /// A guard for the queue with id `id`.
    pub fn new(id: i32) -> RemoveGuard {
        RemoveGuard { id: Some(id) }
    }

    /// Gives up the guard without removing the queue; returns the id.
    pub fn disarm(mut self) -> i32 {
        self.id.take().expect("present until drop or disarm")
    }
}

impl Drop for RemoveGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            match sys::msgctl_rmid(id) {
                Ok(()) => tracing::trace!(id, "removed System V message queue (guard)"),
                Err(Errno::INVAL | Errno::IDRM) => {
                    tracing::trace!(id, "guard: System V message queue already removed");
                }
                Err(e) => tracing::debug!(id, error = %e, "guard: IPC_RMID failed"),
            }
        }
    }
}

impl MessageSender for Queue {
    /// Sends with the [send type](Queue::send_type).
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.send_typed_deadline(i64::from(self.send_type), msg, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.msgmax
    }
}

impl MessageReceiver for Queue {
    /// Receives with the [selector](Queue::receive_selector); the type is dropped.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.receive_deadline(self.selector, buf, deadline)
            .map(|r| r.len)
    }

    fn max_message_size(&self) -> usize {
        self.msgmax
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_map_to_msgtyp_and_flags() {
        assert_eq!(Selector::Any.raw().unwrap(), (0, 0));
        assert_eq!(Selector::Type(3).raw().unwrap(), (3, 0));
        assert_eq!(Selector::AtMost(3).raw().unwrap(), (-3, 0));
        assert_eq!(Selector::Except(3).raw().unwrap(), (3, libc::MSG_EXCEPT));
        for bad in [Selector::Type(0), Selector::AtMost(-1), Selector::Except(0)] {
            assert_eq!(bad.raw().unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }

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

    #[test]
    fn backoff_stops_at_the_deadline() {
        let mut b = Backoff::new();
        assert!(!b.pause(Deadline::Now));
        let d = Deadline::after(Duration::from_millis(2));
        while b.pause(d) {}
        assert!(d.has_passed());
    }

    #[test]
    fn msgbuf_keeps_type_and_text() {
        let mut m = MsgBuf::with_capacity(4);
        assert_eq!(m.mtype(), 1);
        m.set_text(b"longer than four");
        m.set_mtype(9);
        assert_eq!((m.mtype(), m.text()), (9, &b"longer than four"[..]));
        assert!(m.capacity() >= 16);
    }
}
