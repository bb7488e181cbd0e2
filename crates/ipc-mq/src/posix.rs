//! POSIX message queues: [`Queue`] (a named queue of prioritised messages kept by the kernel,
//! whose descriptor is a pollable file descriptor), [`OpenOptions`], [`UnlinkGuard`],
//! [`Notification`] (`mq_notify` as a pollable descriptor) and [`Limits`].
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
//! let _unlink = q.unlink_guard().expect("created by name");
//! q.send_with_priority(b"routine", 0)?;
//! q.send_with_priority(b"urgent", 9)?;
//! let mut buf = vec![0; q.message_size()];
//! let got = q.receive(&mut buf)?;
//! assert_eq!((&buf[..got.len], got.priority), (&b"urgent"[..], 9));
//! # Ok::<(), ipc_core::Error>(())
//! ```
//!
//! # Waiting, deadlines and the wall clock
//!
//! Every operation comes in a blocking, a `try_` and a deadline form. Deadlines are
//! [`Deadline`]s on the monotonic clock, but `mq_timedsend` and `mq_timedreceive` take an
//! absolute `CLOCK_REALTIME` time, so each call converts the time left into a wall-clock time
//! immediately before the system call (`now(CLOCK_REALTIME) + remaining`). If the wall clock is
//! set while a call waits:
//!
//! - set **forward**: the kernel reports a timeout early; this crate sees that the monotonic
//!   deadline has not passed, converts the time still left, and waits again. The deadline holds.
//! - set **backward**: the kernel keeps waiting until the wall clock reaches the converted
//!   time, so the wait is longer than asked by the size of the jump. The kernel offers no
//!   monotonic variant of these calls. A caller who must not overrun can poll the descriptor
//!   (it is a file descriptor, see below) with a monotonic timeout and use the `try_` forms.
//!
//! The `try_` forms pass a time in the past (the epoch), so the kernel fails at once instead of
//! waiting, without touching the descriptor's `O_NONBLOCK` flag (which the open file
//! description shares with every process that inherited it). If the descriptor *is*
//! non-blocking ([`OpenOptions::nonblocking`], [`Queue::set_nonblocking`]), the blocking and
//! deadline forms wait with `poll(2)` on the monotonic clock instead, so they keep their meaning.
//!
//! # A descriptor is a file descriptor
//!
//! On Linux an `mqd_t` is a file descriptor: [`Queue`] implements [`AsFd`], [`AsRawFd`],
//! `From<OwnedFd>` and `Into<OwnedFd>`, so it can be passed to a child process, and
//! `poll`/`epoll`/mio/tokio report it readable when a message is queued and writable when there
//! is room. It is close-on-exec (the kernel sets `O_CLOEXEC` on every queue descriptor).
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

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use ipc_core::fd::{Interest, wait};
use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MaxMessage, MessageReceiver, MessageSender, PosixKind,
    PosixName, Properties, Result,
};
use rustix::io::Errno;

pub use crate::Access;
use crate::Creation;
use crate::limits::{self, FdUsage, OpenRequest, classify_open_error};
pub use crate::limits::{HARD_MSGMAX, HARD_MSGSIZEMAX, Limits, MQ_PRIO_MAX};
use crate::sys;

/// The static facts about POSIX message queues, as the benchmark prints them.
pub const PROPERTIES: Properties = Properties {
    mechanism: "POSIX message queue",
    keeps_boundaries: true,
    max_message: MaxMessage::PerObject {
        default: 8192,
        ceiling: limits::MSGSIZE_MAX,
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

fn oflag(access: Access) -> i32 {
    match access {
        Access::ReadOnly => libc::O_RDONLY,
        Access::WriteOnly => libc::O_WRONLY,
        Access::ReadWrite => libc::O_RDWR,
    }
}

/// How to open or create a queue: access, creation, mode bits, capacity, blocking.
///
/// The defaults open an existing queue for sending and receiving. A queue this call creates
/// gets exactly [`mode`](OpenOptions::mode) (default [`DEFAULT_MODE`], `0o600`): `mq_open`
/// applies the process umask, so after creating, the descriptor is `fchmod`ed to the mode asked
/// for. Between the two calls the queue has the umasked mode, which only ever has fewer bits,
/// so no other user can open it in that window.
///
/// ```
/// use ipc_mq::posix::{Access, OpenOptions};
///
/// let name = format!("/doc-options-{}", std::process::id());
/// let q = OpenOptions::new()
///     .create_new(true)
///     .max_messages(4)
///     .message_size(128)
///     .mode(0o640)
///     .open(&*name)?;
/// let _unlink = q.unlink_guard().expect("named");
/// assert_eq!((q.max_messages(), q.message_size()), (4, 128));
/// let reader = OpenOptions::new().access(Access::ReadOnly).open(&*name)?;
/// assert_eq!(reader.message_size(), 128);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    access: Access,
    create: bool,
    create_new: bool,
    mode: u32,
    max_messages: Option<usize>,
    message_size: Option<usize>,
    nonblocking: bool,
    any_owner: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Open an existing queue, read-write, blocking; if created, mode `0o600` and the kernel's
    /// default capacity.
    pub fn new() -> OpenOptions {
        OpenOptions {
            access: Access::ReadWrite,
            create: false,
            create_new: false,
            mode: DEFAULT_MODE,
            max_messages: None,
            message_size: None,
            nonblocking: false,
            any_owner: false,
        }
    }

    /// Sets the access mode.
    pub fn access(&mut self, access: Access) -> &mut OpenOptions {
        self.access = access;
        self
    }

    /// Creates the queue if it does not exist, else opens it (`O_CREAT`). Implemented as an
    /// exclusive create, then an open if the name exists, so [`Queue::was_created`] is exact.
    /// A queue that already existed keeps its own capacity and mode, and must be owned by this
    /// process's effective user (else [`ErrorKind::PermissionDenied`]): a queue squatted under
    /// the name by someone else is refused, unless [`any_owner`](OpenOptions::any_owner).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }

    /// Creates the queue, failing with [`ErrorKind::AlreadyExists`] if the name is taken
    /// (`O_CREAT | O_EXCL`).
    /// Takes precedence over [`create`](OpenOptions::create), as in `std::fs::OpenOptions`.
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// The permission bits (at most `0o777`) of a queue this call creates; exact, not umasked.
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// `mq_maxmsg` of a queue this call creates. Unset: the kernel default
    /// (`/proc/sys/fs/mqueue/msg_default`).
    pub fn max_messages(&mut self, n: usize) -> &mut OpenOptions {
        self.max_messages = Some(n);
        self
    }

    /// `mq_msgsize` of a queue this call creates. Unset: the kernel default
    /// (`/proc/sys/fs/mqueue/msgsize_default`).
    pub fn message_size(&mut self, n: usize) -> &mut OpenOptions {
        self.message_size = Some(n);
        self
    }

    /// Opens the descriptor with `O_NONBLOCK`. The `try_` forms never block anyway; this
    /// matters for code that drives the descriptor itself (an event loop).
    pub fn nonblocking(&mut self, nonblocking: bool) -> &mut OpenOptions {
        self.nonblocking = nonblocking;
        self
    }

    /// Accepts an existing queue owned by another user. By default an existing queue must be
    /// owned by this process's effective user (checked with `fstat` on the opened
    /// descriptor), else [`ErrorKind::PermissionDenied`]: another user's queue may have been
    /// put under the name by anyone with access to `/dev/mqueue`, and its owner can remove it
    /// or change its mode at will. The same policy holds for every named object of this
    /// workspace (FIFOs, shared memory, semaphores); each has such an override.
    pub fn any_owner(&mut self, any_owner: bool) -> &mut OpenOptions {
        self.any_owner = any_owner;
        self
    }

    /// Opens (or creates) the queue `name` (`mq_open(3)`).
    ///
    /// Checked before any system call: the name ([`ErrorKind::InvalidName`]), the mode and the
    /// capacity ([`ErrorKind::InvalidInput`] for bits beyond `0o777`, zero, or values beyond
    /// `long`).
    ///
    /// # Errors
    /// - [`ErrorKind::NotFound`]: no queue has this name (and not creating).
    /// - [`ErrorKind::AlreadyExists`]: creating exclusively and the name is taken.
    /// - [`ErrorKind::PermissionDenied`]: the mode does not grant this access, or the existing
    ///   queue is another user's (see [`any_owner`](OpenOptions::any_owner)).
    /// - [`ErrorKind::LimitExceeded`], naming the knob and its value: the capacity exceeds
    ///   `/proc/sys/fs/mqueue/msg_max` or `msgsize_max` (or, for a process with
    ///   `CAP_SYS_RESOURCE`, the kernel's [`HARD_MSGMAX`] / [`HARD_MSGSIZEMAX`]); the namespace
    ///   has `/proc/sys/fs/mqueue/queues_max` queues; the user's queues would exceed
    ///   `RLIMIT_MSGQUEUE`; or the process is out of descriptors (`RLIMIT_NOFILE`).
    ///
    /// # References
    /// - [`mq_open(3)`](https://man7.org/linux/man-pages/man3/mq_open.3.html)
    #[doc(alias = "mq_open")]
    pub fn open(&self, name: impl TryInto<PosixName, Error = Error>) -> Result<Queue> {
        let name: PosixName = name.try_into()?;
        name.check_kind(PosixKind::MessageQueue)
            .map_err(|e| e.in_op("mq_open"))?;
        let attr = self.checked_attr(&name)?;
        let mut base = oflag(self.access);
        if self.nonblocking {
            base |= libc::O_NONBLOCK;
        }
        let create = base | libc::O_CREAT | libc::O_EXCL;
        let (fd, created) = match Creation::of(self.create, self.create_new) {
            Creation::OpenExisting => {
                let fd = open_raw(&name, base, 0, None)?;
                if !self.any_owner {
                    check_owner(&fd, &name)?;
                }
                (fd, false)
            }
            Creation::CreateNew => (open_raw(&name, create, self.mode, attr)?, true),
            Creation::OpenOrCreate => self.open_or_create(&name, base, create, attr)?,
        };
        if created {
            if let Err(e) = rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(self.mode)) {
                // Do not leave a queue behind with a mode nobody asked for.
                let _ = sys::mq_unlink(name.as_c_str());
                let e = Error::from(e).in_op("fchmod").on(&name);
                tracing::debug!(error = %e, "mq_open");
                return Err(e);
            }
            tracing::trace!(queue = %name, mode = format_args!("{:#o}", self.mode), "created POSIX message queue");
        } else {
            tracing::trace!(queue = %name, "opened POSIX message queue");
        }
        Queue::adopt(fd, Some(name), created)
    }

    fn open_or_create(
        &self,
        name: &PosixName,
        base: i32,
        create: i32,
        attr: Option<sys::MqAttr>,
    ) -> Result<(OwnedFd, bool)> {
        // The name can disappear between a failed create and the open (another process
        // unlinked it); try again a few times before reporting that race.
        for _ in 0..8 {
            match open_raw(name, create, self.mode, attr) {
                Ok(fd) => return Ok((fd, true)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            match open_raw(name, base, 0, None) {
                Ok(fd) => {
                    if !self.any_owner {
                        check_owner(&fd, name)?;
                    }
                    return Ok((fd, false));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        let e = Error::with_note(
            ErrorKind::Io,
            "the name kept appearing and disappearing (another process creates and unlinks it)",
        )
        .in_op("mq_open")
        .on(name);
        tracing::debug!(error = %e, "mq_open");
        Err(e)
    }

    /// Validates mode and capacity; fills in a missing half of the capacity with its default.
    fn checked_attr(&self, name: &PosixName) -> Result<Option<sys::MqAttr>> {
        let invalid = |note: String| {
            let e = Error::with_note(ErrorKind::InvalidInput, note)
                .in_op("mq_open")
                .on(name);
            tracing::debug!(error = %e, "mq_open");
            Err(e)
        };
        if self.mode & !0o777 != 0 {
            return invalid(format!(
                "mode {:#o} has bits beyond 0o777 (permission bits only)",
                self.mode
            ));
        }
        if Creation::of(self.create, self.create_new) == Creation::OpenExisting
            || (self.max_messages.is_none() && self.message_size.is_none())
        {
            return Ok(None);
        }
        // Only half given: the other half is what the kernel would have chosen.
        let defaults = std::cell::OnceCell::new();
        let defaults = || defaults.get_or_init(Limits::current);
        let maxmsg = self
            .max_messages
            .map_or_else(|| defaults().default_max_messages(), |n| n as u64);
        let msgsize = self
            .message_size
            .map_or_else(|| defaults().default_message_size(), |n| n as u64);
        for (what, v) in [("max_messages", maxmsg), ("message_size", msgsize)] {
            if v == 0 || v > i64::MAX as u64 {
                return invalid(format!(
                    "{what} is {v}; it must be at least 1 and fit a long"
                ));
            }
        }
        Ok(Some(sys::MqAttr {
            flags: 0,
            maxmsg: maxmsg as i64,
            msgsize: msgsize as i64,
            curmsgs: 0,
        }))
    }
}

/// One `mq_open` call, its failure explained.
fn open_raw(name: &PosixName, oflag: i32, mode: u32, attr: Option<sys::MqAttr>) -> Result<OwnedFd> {
    sys::mq_open(name.as_c_str(), oflag, mode, attr).map_err(|errno| {
        let req = OpenRequest {
            creating: oflag & libc::O_CREAT != 0,
            attr: attr.map(|a| (a.maxmsg as u64, a.msgsize as u64)),
        };
        let e = classify_open_error(errno, req, &Limits::current(), FdUsage::current())
            .unwrap_or_else(|| Error::from(errno))
            .in_op("mq_open")
            .on(name);
        tracing::debug!(error = %e, "mq_open");
        e
    })
}

/// Refuses a queue owned by another user (unless `OpenOptions::any_owner`).
fn check_owner(fd: &OwnedFd, name: &PosixName) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::from(e).in_op("fstat").on(name))?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        let e = Error::with_note(
            ErrorKind::PermissionDenied,
            format!(
                "the queue exists and is owned by uid {}, not by this process's uid {me}; \
                 OpenOptions::any_owner(true) opens it anyway",
                st.st_uid
            ),
        )
        .in_op("mq_open")
        .on(name);
        tracing::debug!(error = %e, "mq_open");
        return Err(e);
    }
    Ok(())
}

/// Removes the name `name` (`mq_unlink(3)`). The queue itself lives on until every descriptor
/// to it is closed; a new queue can be created under the name at once.
///
/// # Errors
/// [`ErrorKind::NotFound`] if no queue has this name; [`ErrorKind::PermissionDenied`] if the
/// caller may not remove it.
///
/// # References
/// - [`mq_unlink(3)`](https://man7.org/linux/man-pages/man3/mq_unlink.3.html)
#[doc(alias = "mq_unlink")]
pub fn unlink(name: impl TryInto<PosixName, Error = Error>) -> Result<()> {
    let name = name.try_into()?;
    sys::mq_unlink(name.as_c_str()).map_err(|errno| {
        let e = Error::from(errno).in_op("mq_unlink").on(&name);
        tracing::debug!(error = %e, "mq_unlink");
        e
    })?;
    tracing::trace!(queue = %name, "unlinked POSIX message queue");
    Ok(())
}

/// Unlinks a queue's name when dropped (also during a panic), so a test or a short-lived
/// program leaves nothing in `/dev/mqueue`.
///
/// The guard works by name: if the name was unlinked and taken by another queue in the
/// meantime, the guard removes that one. A name that is already gone is not an error.
///
/// ```
/// use ipc_mq::posix::{Queue, UnlinkGuard, unlink};
/// use ipc_core::{ErrorKind, PosixName};
///
/// let name = PosixName::new(format!("/doc-guard-{}", std::process::id()))?;
/// {
///     let _q = Queue::create(&name, 1, 16)?;
///     let _guard = UnlinkGuard::new(name.clone());
/// }
/// assert_eq!(unlink(&name).unwrap_err().kind(), ErrorKind::NotFound);
/// # Ok::<(), ipc_core::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "the name is unlinked when the guard is dropped"]
pub struct UnlinkGuard {
    name: Option<PosixName>,
}

impl UnlinkGuard {
    /// A guard for `name`.
    pub fn new(name: PosixName) -> UnlinkGuard {
        UnlinkGuard { name: Some(name) }
    }

    /// The name it will unlink.
    pub fn name(&self) -> &PosixName {
        self.name.as_ref().expect("present until drop or disarm")
    }

    /// Unlinks now and reports the outcome ([`unlink`]), instead of ignoring it on drop.
    pub fn unlink(mut self) -> Result<()> {
        let name = self.name.take().expect("present until drop or disarm");
        unlink(&name)
    }

    /// Gives up the guard without unlinking; returns the name.
    pub fn disarm(mut self) -> PosixName {
        self.name.take().expect("present until drop or disarm")
    }
}

impl Drop for UnlinkGuard {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            match sys::mq_unlink(name.as_c_str()) {
                Ok(()) => tracing::trace!(queue = %name, "unlinked POSIX message queue (guard)"),
                Err(Errno::NOENT) => {
                    tracing::trace!(queue = %name, "guard: POSIX message queue already unlinked");
                }
                Err(e) => tracing::debug!(queue = %name, error = %e, "guard: mq_unlink failed"),
            }
        }
    }
}

/// A queue's capacity and flags, as `mq_getattr` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// The most messages it holds (`mq_maxmsg`).
    pub max_messages: usize,
    /// The largest message, in bytes (`mq_msgsize`).
    pub message_size: usize,
    /// Messages queued now (`mq_curmsgs`).
    pub messages: usize,
    /// Whether this descriptor is non-blocking (`O_NONBLOCK` in `mq_flags`).
    pub nonblocking: bool,
}

/// What a receive got: the message length and its priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Received {
    /// The message's length: it is in the first `len` bytes of the buffer.
    pub len: usize,
    /// Its priority.
    pub priority: u32,
}

/// A received message in its own allocation ([`Queue::receive_message`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The bytes.
    pub data: Vec<u8>,
    /// The priority.
    pub priority: u32,
}

#[derive(Clone, Copy, Debug)]
struct Geometry {
    max_messages: usize,
    message_size: usize,
}

/// A POSIX message queue descriptor.
///
/// Sends and receives take `&self`: the kernel serialises them, so one `Queue` can be shared
/// between threads (it is `Send` and `Sync`), and [`MessageSender`] / [`MessageReceiver`] are
/// also implemented for `&Queue`. Dropping it closes the descriptor; the queue itself stays
/// until it is [unlinked](unlink) and every descriptor is closed.
///
/// The queue's message size and capacity are read once when the descriptor is opened (they
/// cannot change), so the size checks cost no system call.
pub struct Queue {
    fd: OwnedFd,
    name: Option<PosixName>,
    /// `None` for a descriptor adopted with `From<OwnedFd>` that is not a queue.
    geometry: Option<Geometry>,
    /// The priority [`MessageSender::send`] uses.
    priority: u32,
    created: bool,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Queue");
        d.field("fd", &self.fd.as_raw_fd())
            .field("name", &self.name);
        if let Some(g) = self.geometry {
            d.field("max_messages", &g.max_messages)
                .field("message_size", &g.message_size);
        }
        d.field("priority", &self.priority).finish()
    }
}

impl Queue {
    /// Creates the queue `name` exclusively, read-write, mode `0o600`, holding at most
    /// `max_messages` messages of at most `message_size` bytes. See [`OpenOptions::open`].
    #[doc(alias = "mq_open")]
    pub fn create(
        name: impl TryInto<PosixName, Error = Error>,
        max_messages: usize,
        message_size: usize,
    ) -> Result<Queue> {
        OpenOptions::new()
            .create_new(true)
            .max_messages(max_messages)
            .message_size(message_size)
            .open(name)
    }

    /// Opens the existing queue `name` with `access`. See [`OpenOptions::open`].
    #[doc(alias = "mq_open")]
    pub fn open(name: impl TryInto<PosixName, Error = Error>, access: Access) -> Result<Queue> {
        OpenOptions::new().access(access).open(name)
    }

    /// Opens the queue `name` read-write, creating it (mode `0o600`, this capacity) if it does
    /// not exist; [`was_created`](Queue::was_created) tells which. See
    /// [`OpenOptions::create`].
    #[doc(alias = "mq_open")]
    pub fn open_or_create(
        name: impl TryInto<PosixName, Error = Error>,
        max_messages: usize,
        message_size: usize,
    ) -> Result<Queue> {
        OpenOptions::new()
            .create(true)
            .max_messages(max_messages)
            .message_size(message_size)
            .open(name)
    }

    /// Adopts a queue descriptor (one passed by a parent, say), checking that it is one.
    ///
    /// # Errors
    /// [`ErrorKind::WrongType`] if `fd` is not a POSIX message queue descriptor.
    ///
    /// # References
    /// - [`mq_getattr(3)`](https://man7.org/linux/man-pages/man3/mq_getattr.3.html)
    pub fn from_fd(fd: OwnedFd) -> Result<Queue> {
        Queue::adopt(fd, None, false)
    }

    fn adopt(fd: OwnedFd, name: Option<PosixName>, created: bool) -> Result<Queue> {
        let attr = match sys::mq_getattr(fd.as_fd()) {
            Ok(a) => a,
            Err(errno) => {
                let object = name
                    .as_ref()
                    .map_or_else(|| format!("fd {}", fd.as_raw_fd()), PosixName::to_string);
                let e = getattr_error(errno).in_op("mq_getattr").on(object);
                tracing::debug!(error = %e, "adopt queue descriptor");
                return Err(e);
            }
        };
        Ok(Queue {
            fd,
            name,
            geometry: Some(Geometry {
                max_messages: attr.maxmsg as usize,
                message_size: attr.msgsize as usize,
            }),
            priority: 0,
            created,
        })
    }

    /// The name it was opened by; `None` for an adopted descriptor.
    pub fn name(&self) -> Option<&PosixName> {
        self.name.as_ref()
    }

    /// Whether the call that opened this descriptor created the queue.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// A guard that unlinks the queue's name on drop; `None` for an adopted descriptor.
    pub fn unlink_guard(&self) -> Option<UnlinkGuard> {
        self.name.clone().map(UnlinkGuard::new)
    }

    /// The most messages the queue holds (`mq_maxmsg`); 0 for a descriptor that is not a queue.
    pub fn max_messages(&self) -> usize {
        self.geometry.map_or(0, |g| g.max_messages)
    }

    /// The largest message, in bytes (`mq_msgsize`); also the smallest receive buffer. 0 for a
    /// descriptor that is not a queue.
    pub fn message_size(&self) -> usize {
        self.geometry.map_or(0, |g| g.message_size)
    }

    /// The priority [`MessageSender::send`] (the trait's methods, which have no priority
    /// parameter) gives messages. Initially 0, the lowest.
    pub fn default_priority(&self) -> u32 {
        self.priority
    }

    /// Sets the priority the [`MessageSender`] methods use.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `priority` is above [`MAX_PRIORITY`].
    pub fn set_default_priority(&mut self, priority: u32) -> Result<()> {
        check_priority(priority).map_err(|e| e.on(self.object()))?;
        self.priority = priority;
        Ok(())
    }

    /// A second descriptor for the same queue (`fcntl(F_DUPFD_CLOEXEC)`), sharing the open
    /// file description (and so the `O_NONBLOCK` flag).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] naming `RLIMIT_NOFILE` when the process is out of
    /// descriptors.
    ///
    /// # References
    /// - [`fcntl(2)`](https://man7.org/linux/man-pages/man2/fcntl.2.html)
    #[doc(alias = "dup")]
    pub fn try_clone(&self) -> Result<Queue> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(|errno| {
            let e = match errno {
                Errno::MFILE => Error::limit(
                    limits::RLIMIT_NOFILE,
                    rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
                )
                .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error())),
                _ => Error::from(errno),
            };
            self.fail(e, "fcntl(F_DUPFD_CLOEXEC)")
        })?;
        Ok(Queue {
            fd,
            name: self.name.clone(),
            geometry: self.geometry,
            priority: self.priority,
            created: false,
        })
    }

    /// The current attributes: messages queued now, capacity, and the non-blocking flag.
    ///
    /// # References
    /// - [`mq_getattr(3)`](https://man7.org/linux/man-pages/man3/mq_getattr.3.html)
    #[doc(alias = "mq_getattr")]
    pub fn attributes(&self) -> Result<Attributes> {
        let a = sys::mq_getattr(self.fd.as_fd())
            .map_err(|errno| self.fail(getattr_error(errno), "mq_getattr"))?;
        Ok(Attributes {
            max_messages: a.maxmsg as usize,
            message_size: a.msgsize as usize,
            messages: a.curmsgs as usize,
            nonblocking: a.flags & i64::from(libc::O_NONBLOCK) != 0,
        })
    }

    /// Sets or clears `O_NONBLOCK` on the descriptor (the only attribute that can change).
    ///
    /// The flag belongs to the open file description: every descriptor that shares it (a
    /// [`try_clone`](Queue::try_clone), a copy a child inherited) sees the change. This
    /// crate's own operations keep their meaning either way (see the [module
    /// documentation](self)).
    ///
    /// # References
    /// - [`mq_setattr(3)`](https://man7.org/linux/man-pages/man3/mq_setattr.3.html)
    #[doc(alias = "mq_setattr")]
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        let flags = if nonblocking {
            i64::from(libc::O_NONBLOCK)
        } else {
            0
        };
        sys::mq_setattr_flags(self.fd.as_fd(), flags)
            .map_err(|errno| self.fail(getattr_error(errno), "mq_setattr"))
    }

    /// Sends `msg` with `priority`, waiting for room as long as it takes (`mq_send(3)`).
    /// See [`send_with_priority_deadline`](Queue::send_with_priority_deadline).
    #[doc(alias = "mq_send")]
    pub fn send_with_priority(&self, msg: &[u8], priority: u32) -> Result<()> {
        self.send_with_priority_deadline(msg, priority, Deadline::Never)
    }

    /// Sends `msg` with `priority` if there is room now, else fails with
    /// [`ErrorKind::WouldBlock`]. See
    /// [`send_with_priority_deadline`](Queue::send_with_priority_deadline).
    #[doc(alias = "mq_timedsend")]
    pub fn try_send_with_priority(&self, msg: &[u8], priority: u32) -> Result<()> {
        self.send_with_priority_deadline(msg, priority, Deadline::Now)
    }

    /// Sends `msg` with `priority`, waiting at most `timeout` for room. See
    /// [`send_with_priority_deadline`](Queue::send_with_priority_deadline).
    #[doc(alias = "mq_timedsend")]
    pub fn send_with_priority_timeout(
        &self,
        msg: &[u8],
        priority: u32,
        timeout: Duration,
    ) -> Result<()> {
        self.send_with_priority_deadline(msg, priority, Deadline::after(timeout))
    }

    /// Sends `msg` with `priority` (0 to [`MAX_PRIORITY`], higher is received first), waiting
    /// for room until `deadline` (`mq_timedsend(3)`; see the [module documentation](self) for
    /// how the deadline meets the wall clock).
    ///
    /// Blocks while the queue holds [`max_messages`](Queue::max_messages) messages. A message is
    /// queued whole or not at all.
    ///
    /// # Errors
    /// - [`ErrorKind::MessageTooLarge`] with both sizes, before any system call, if `msg` is
    ///   longer than [`message_size`](Queue::message_size).
    /// - [`ErrorKind::InvalidInput`], before any system call, if `priority` is above
    ///   [`MAX_PRIORITY`].
    /// - [`ErrorKind::WouldBlock`] ([`Blocked::Full`]) for [`Deadline::Now`] on a full queue;
    ///   [`ErrorKind::TimedOut`] when the deadline passes.
    /// - [`ErrorKind::PermissionDenied`] if the descriptor is not open for writing.
    ///
    /// # References
    /// - [`mq_send(3)`](https://man7.org/linux/man-pages/man3/mq_send.3.html)
    #[doc(alias = "mq_timedsend")]
    #[doc(alias = "mq_send")]
    pub fn send_with_priority_deadline(
        &self,
        msg: &[u8],
        priority: u32,
        deadline: Deadline,
    ) -> Result<()> {
        let geometry = self.geometry("mq_send")?;
        if msg.len() > geometry.message_size {
            let e = Error::message_too_large(msg.len(), geometry.message_size, "mq_msgsize");
            return Err(self.fail(e, "mq_send"));
        }
        check_priority(priority).map_err(|e| self.fail(e, "mq_send"))?;
        loop {
            let abs = wall_clock_deadline(deadline);
            match sys::mq_timedsend(self.fd.as_fd(), msg, priority, abs.as_ref()) {
                Ok(()) => return Ok(()),
                Err(errno) => self
                    .retry(errno, deadline, Interest::Writable)
                    .map_err(|e| self.fail(e, "mq_send"))?,
            }
        }
    }

    /// Receives the oldest message of the highest priority into `buf`, waiting as long as it
    /// takes. See [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "mq_receive")]
    pub fn receive(&self, buf: &mut [u8]) -> Result<Received> {
        self.receive_deadline(buf, Deadline::Never)
    }

    /// Receives a message if one is queued now, else fails with [`ErrorKind::WouldBlock`].
    /// See [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "mq_timedreceive")]
    pub fn try_receive(&self, buf: &mut [u8]) -> Result<Received> {
        self.receive_deadline(buf, Deadline::Now)
    }

    /// Receives a message, waiting at most `timeout`. See
    /// [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "mq_timedreceive")]
    pub fn receive_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<Received> {
        self.receive_deadline(buf, Deadline::after(timeout))
    }

    /// Receives the oldest message of the highest priority into `buf`, waiting for one until
    /// `deadline` (`mq_timedreceive(3)`); returns its length and priority.
    ///
    /// `buf` must be at least [`message_size`](Queue::message_size) bytes long, whatever the
    /// length of the next message: the kernel refuses shorter buffers. This is checked first, so
    /// a short buffer never reaches the kernel and no message is taken.
    /// [`receive_message`](Queue::receive_message) allocates a buffer of the right size.
    ///
    /// # Errors
    /// - [`ErrorKind::MessageTooLarge`], before any system call, if `buf` is shorter than
    ///   [`message_size`](Queue::message_size): [`Error::message_size`] is
    ///   `(message_size, buf.len())`.
    /// - [`ErrorKind::WouldBlock`] ([`Blocked::Empty`]) for [`Deadline::Now`] on an empty
    ///   queue; [`ErrorKind::TimedOut`] when the deadline passes.
    /// - [`ErrorKind::PermissionDenied`] if the descriptor is not open for reading.
    ///
    /// # References
    /// - [`mq_receive(3)`](https://man7.org/linux/man-pages/man3/mq_receive.3.html)
    #[doc(alias = "mq_timedreceive")]
    #[doc(alias = "mq_receive")]
    pub fn receive_deadline(&self, buf: &mut [u8], deadline: Deadline) -> Result<Received> {
        let geometry = self.geometry("mq_receive")?;
        if buf.len() < geometry.message_size {
            let e = Error::message_too_large(
                geometry.message_size,
                buf.len(),
                "receive buffer; mq_receive needs room for mq_msgsize bytes",
            );
            return Err(self.fail(e, "mq_receive"));
        }
        loop {
            let abs = wall_clock_deadline(deadline);
            match sys::mq_timedreceive(self.fd.as_fd(), buf, abs.as_ref()) {
                Ok((len, priority)) => return Ok(Received { len, priority }),
                Err(errno) => self
                    .retry(errno, deadline, Interest::Readable)
                    .map_err(|e| self.fail(e, "mq_receive"))?,
            }
        }
    }

    /// Receives the next message into a new buffer of the right size, waiting as long as it
    /// takes. See [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "mq_receive")]
    pub fn receive_message(&self) -> Result<Message> {
        self.receive_message_deadline(Deadline::Never)
    }

    /// Receives the next message into a new buffer, waiting until `deadline`. See
    /// [`receive_deadline`](Queue::receive_deadline).
    #[doc(alias = "mq_timedreceive")]
    pub fn receive_message_deadline(&self, deadline: Deadline) -> Result<Message> {
        let mut data = vec![0; self.message_size()];
        let got = self.receive_deadline(&mut data, deadline)?;
        data.truncate(got.len);
        Ok(Message {
            data,
            priority: got.priority,
        })
    }

    /// Asks the kernel to notify this process, once, when a message arrives on the empty
    /// queue; the notification is a descriptor that becomes readable ([`Notification`]).
    ///
    /// This uses the kernel's `SIGEV_THREAD` interface directly (the one C libraries build
    /// their notification threads on): the kernel sends a 32-byte cookie to a netlink socket,
    /// which the [`Notification`] owns. No signal, no thread, and the descriptor can be polled
    /// alongside others.
    ///
    /// The kernel's rules apply:
    /// - one process at a time may be registered per queue;
    /// - the notification fires only when a message arrives on an **empty** queue while no
    ///   process is blocked receiving from it, and the registration ends when it fires (call
    ///   `notify` again to re-arm, then drain the queue, so no arrival is missed);
    /// - it is removed ([`NotifyEvent::Removed`]) when this process calls
    ///   [`cancel_notify`](Queue::cancel_notify) or closes *any* descriptor of the queue
    ///   (including a [`try_clone`](Queue::try_clone)); dropping the [`Notification`] does not
    ///   remove it.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] if a process (this one or another) is registered already.
    ///
    /// # References
    /// - [`mq_notify(3)`](https://man7.org/linux/man-pages/man3/mq_notify.3.html);
    ///   `<linux/mqueue.h>` documents the `SIGEV_THREAD` netlink interface.
    #[doc(alias = "mq_notify")]
    pub fn notify(&self) -> Result<Notification> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
        let sock = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| self.fail(Error::from(e), "socket(AF_NETLINK)"))?;
        let cookie = Cookie::next();
        sys::mq_notify_netlink(self.fd.as_fd(), sock.as_fd(), &cookie.bytes)
            .map_err(|errno| self.fail(notify_error(errno), "mq_notify"))?;
        tracing::trace!(queue = %self.object(), "registered for mq_notify (netlink)");
        Ok(Notification {
            sock,
            cookie,
            queue: self.object(),
            event: AtomicU8::new(0),
        })
    }

    /// Asks the kernel to send `signal` to this process, once, when a message arrives on the
    /// empty queue (`SIGEV_SIGNAL`). The same rules as for [`notify`](Queue::notify) apply. The
    /// caller is responsible for the signal's disposition: a signal whose default action ends
    /// the process will end it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `signal` is not a signal number (1 to `SIGRTMAX`);
    /// [`ErrorKind::AlreadyExists`] if a process is registered already.
    ///
    /// # References
    /// - [`mq_notify(3)`](https://man7.org/linux/man-pages/man3/mq_notify.3.html)
    #[doc(alias = "mq_notify")]
    pub fn notify_signal(&self, signal: i32) -> Result<()> {
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            let e = Error::with_note(
                ErrorKind::InvalidInput,
                format!(
                    "{signal} is not a signal number (1 to {})",
                    libc::SIGRTMAX()
                ),
            );
            return Err(self.fail(e, "mq_notify"));
        }
        sys::mq_notify_signal(self.fd.as_fd(), signal)
            .map_err(|errno| self.fail(notify_error(errno), "mq_notify"))?;
        tracing::trace!(queue = %self.object(), signal, "registered for mq_notify (signal)");
        Ok(())
    }

    /// Removes this process's notification registration, if it has one (`mq_notify(fd,
    /// NULL)`). A [`Notification`] then reports [`NotifyEvent::Removed`].
    ///
    /// # References
    /// - [`mq_notify(3)`](https://man7.org/linux/man-pages/man3/mq_notify.3.html)
    #[doc(alias = "mq_notify")]
    pub fn cancel_notify(&self) -> Result<()> {
        sys::mq_notify_cancel(self.fd.as_fd())
            .map_err(|errno| self.fail(notify_error(errno), "mq_notify"))
    }

    fn geometry(&self, op: &'static str) -> Result<Geometry> {
        self.geometry.ok_or_else(|| {
            self.fail(
                Error::with_note(
                    ErrorKind::WrongType,
                    "the descriptor is not a POSIX message queue",
                ),
                op,
            )
        })
    }

    /// Decides, after a failed send or receive, whether to try again (`Ok`) or give up.
    fn retry(&self, errno: Errno, deadline: Deadline, interest: Interest) -> Result<()> {
        let blocked = match interest {
            Interest::Readable => Blocked::Empty,
            Interest::Writable => Blocked::Full,
        };
        match errno {
            Errno::INTR => Ok(()),
            // The wall-clock time passed. If the monotonic deadline has not (the wall clock
            // was set forward), convert what is left and wait again.
            Errno::TIMEDOUT if matches!(deadline, Deadline::At(_)) && !deadline.has_passed() => {
                Ok(())
            }
            Errno::TIMEDOUT => Err(deadline.expired_error(blocked)),
            // The descriptor is non-blocking: wait for readiness on the monotonic clock.
            Errno::AGAIN => {
                if deadline == Deadline::Now {
                    return Err(Error::would_block(blocked));
                }
                match wait(self.fd.as_fd(), interest, deadline) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(deadline.expired_error(blocked)),
                    Err(e) => Err(Error::from(e)),
                }
            }
            Errno::BADF => Err(Error::with_note(
                ErrorKind::PermissionDenied,
                match interest {
                    Interest::Readable => "the descriptor is not open for reading",
                    Interest::Writable => "the descriptor is not open for writing",
                },
            )
            .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()))),
            _ => Err(Error::from(errno)),
        }
    }

    /// Names the queue in `e` and logs it (except the expected would-block and timeout).
    fn fail(&self, e: Error, op: &'static str) -> Error {
        let e = e.in_op(op).on(self.object());
        if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            tracing::debug!(error = %e, "POSIX message queue");
        }
        e
    }

    fn object(&self) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => format!("mqd {}", self.fd.as_raw_fd()),
        }
    }
}

fn check_priority(priority: u32) -> Result<()> {
    if priority > MAX_PRIORITY {
        return Err(Error::with_note(
            ErrorKind::InvalidInput,
            format!("priority {priority} is above the highest, {MAX_PRIORITY} (MQ_PRIO_MAX - 1)"),
        ));
    }
    Ok(())
}

fn getattr_error(errno: Errno) -> Error {
    if errno == Errno::BADF {
        Error::with_note(
            ErrorKind::WrongType,
            "the descriptor is not a POSIX message queue",
        )
        .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()))
    } else {
        Error::from(errno)
    }
}

fn notify_error(errno: Errno) -> Error {
    if errno == Errno::BUSY {
        Error::with_note(
            ErrorKind::AlreadyExists,
            "a process is registered for notification on this queue already (one at a time)",
        )
        .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()))
    } else {
        Error::from(errno)
    }
}

/// The absolute `CLOCK_REALTIME` time `mq_timed*` needs for `deadline`, computed now: `None`
/// waits without limit, the epoch does not wait at all.
fn wall_clock_deadline(deadline: Deadline) -> Option<libc::timespec> {
    let remaining = match deadline {
        Deadline::Never => return None,
        Deadline::Now => {
            return Some(libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            });
        }
        Deadline::At(_) => deadline.remaining().unwrap_or_default(),
    };
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let mut sec = now
        .tv_sec
        .saturating_add(i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX));
    let mut nsec = now.tv_nsec + i64::from(remaining.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Some(libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    })
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<OwnedFd> for Queue {
    /// Adopts a queue descriptor without a name. If `fd` is not a queue descriptor, every
    /// operation fails with [`ErrorKind::WrongType`]; [`Queue::from_fd`] checks up front.
    fn from(fd: OwnedFd) -> Queue {
        let geometry = sys::mq_getattr(fd.as_fd()).ok().map(|a| Geometry {
            max_messages: a.maxmsg as usize,
            message_size: a.msgsize as usize,
        });
        Queue {
            fd,
            name: None,
            geometry,
            priority: 0,
            created: false,
        }
    }
}

impl From<Queue> for OwnedFd {
    fn from(q: Queue) -> OwnedFd {
        q.fd
    }
}

impl MessageSender for Queue {
    /// Sends with the [default priority](Queue::default_priority).
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.send_with_priority_deadline(msg, self.priority, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.message_size()
    }
}

impl MessageSender for &Queue {
    /// Sends with the [default priority](Queue::default_priority).
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<()> {
        self.send_with_priority_deadline(msg, self.priority, deadline)
    }

    fn max_message_size(&self) -> usize {
        self.message_size()
    }
}

impl MessageReceiver for Queue {
    /// Receives the next message (highest priority first); its priority is dropped.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.receive_deadline(buf, deadline).map(|r| r.len)
    }

    fn max_message_size(&self) -> usize {
        self.message_size()
    }
}

impl MessageReceiver for &Queue {
    /// Receives the next message (highest priority first); its priority is dropped.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        self.receive_deadline(buf, deadline).map(|r| r.len)
    }

    fn max_message_size(&self) -> usize {
        self.message_size()
    }
}

/// What a [`Notification`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// A message arrived on the empty queue (`NOTIFY_WOKENUP`). The registration has ended.
    Arrived,
    /// The registration was removed before anything arrived (`NOTIFY_REMOVED`): this process
    /// cancelled it or closed a descriptor of the queue.
    Removed,
}

const NOTIFY_WOKENUP: u8 = 1;
const NOTIFY_REMOVED: u8 = 2;

/// The cookie the kernel echoes back: a marker, this process's id and a counter, so a
/// notification can be matched to its registration.
#[derive(Clone, Copy)]
struct Cookie {
    bytes: [u8; sys::NOTIFY_COOKIE_LEN],
}

impl Cookie {
    const MAGIC: &'static [u8; 8] = b"ipc-mq\0\x01";

    fn next() -> Cookie {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut bytes = [0; sys::NOTIFY_COOKIE_LEN];
        bytes[..8].copy_from_slice(Cookie::MAGIC);
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..20].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Cookie { bytes }
    }

    /// Whether `got` is this cookie as the kernel returns it (the last byte is the event).
    fn matches(&self, got: &[u8]) -> bool {
        got.len() == sys::NOTIFY_COOKIE_LEN && got[..got.len() - 1] == self.bytes[..got.len() - 1]
    }
}

/// A pending `mq_notify` registration, as a descriptor that becomes readable when it fires
/// ([`Queue::notify`]).
///
/// Poll it ([`AsFd`]) alongside other descriptors, or wait on it here. After it fired, every
/// wait returns the same [`NotifyEvent`] at once.
///
/// ```
/// use ipc_mq::posix::{NotifyEvent, Queue};
///
/// let name = format!("/doc-notify-{}", std::process::id());
/// let q = Queue::create(&*name, 4, 32)?;
/// let _unlink = q.unlink_guard().expect("named");
/// let n = q.notify()?;
/// assert_eq!(n.try_wait().unwrap_err().kind(), ipc_core::ErrorKind::WouldBlock);
/// q.send_with_priority(b"wake up", 0)?; // any process could send this
/// assert_eq!(n.wait()?, NotifyEvent::Arrived);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct Notification {
    sock: OwnedFd,
    cookie: Cookie,
    queue: String,
    /// 0 until an event arrived, then its code.
    event: AtomicU8,
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("queue", &self.queue)
            .field("fd", &self.sock.as_raw_fd())
            .field("event", &self.event())
            .finish()
    }
}

impl Notification {
    /// Waits until the notification fires or is removed.
    pub fn wait(&self) -> Result<NotifyEvent> {
        self.wait_deadline(Deadline::Never)
    }

    /// The event, if it has happened; else [`ErrorKind::WouldBlock`].
    pub fn try_wait(&self) -> Result<NotifyEvent> {
        self.wait_deadline(Deadline::Now)
    }

    /// Waits at most `timeout` for the event.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<NotifyEvent> {
        self.wait_deadline(Deadline::after(timeout))
    }

    /// Waits until `deadline` for the event (`poll(2)` and `recv(2)` on the netlink socket;
    /// the deadline is kept on the monotonic clock).
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] for [`Deadline::Now`] and [`ErrorKind::TimedOut`] at the
    /// deadline, if nothing happened.
    ///
    /// # References
    /// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html),
    ///   [`recv(2)`](https://man7.org/linux/man-pages/man2/recv.2.html)
    pub fn wait_deadline(&self, deadline: Deadline) -> Result<NotifyEvent> {
        use rustix::net::{RecvFlags, recv};
        if let Some(ev) = self.event() {
            return Ok(ev);
        }
        let fail = |e: Error| {
            let e = e.in_op("wait for mq_notify").on(&self.queue);
            if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                tracing::debug!(error = %e, "notification");
            }
            e
        };
        let mut buf = [0u8; 2 * sys::NOTIFY_COOKIE_LEN];
        loop {
            match recv(&self.sock, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) if self.cookie.matches(&buf[..n]) => {
                    let code = buf[n - 1];
                    let ev = match code {
                        NOTIFY_WOKENUP => NotifyEvent::Arrived,
                        NOTIFY_REMOVED => NotifyEvent::Removed,
                        other => {
                            return Err(fail(Error::corrupted(format!(
                                "notification code {other}, expected 1 or 2"
                            ))));
                        }
                    };
                    self.event.store(code, Ordering::Release);
                    return Ok(ev);
                }
                // Not our cookie: nothing else should reach this unbound socket; skip it.
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if deadline == Deadline::Now {
                        return Err(fail(Error::would_block(Blocked::Empty)));
                    }
                    match wait(self.sock.as_fd(), Interest::Readable, deadline) {
                        Ok(true) => {}
                        Ok(false) => return Err(fail(deadline.expired_error(Blocked::Empty))),
                        Err(e) => return Err(fail(Error::from(e))),
                    }
                }
                Err(e) => return Err(fail(Error::from(e))),
            }
        }
    }

    /// The event, if it has been received.
    fn event(&self) -> Option<NotifyEvent> {
        match self.event.load(Ordering::Acquire) {
            NOTIFY_WOKENUP => Some(NotifyEvent::Arrived),
            NOTIFY_REMOVED => Some(NotifyEvent::Removed),
            _ => None,
        }
    }
}

impl AsFd for Notification {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for Notification {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_deadline_adds_the_time_left_to_now() {
        assert!(wall_clock_deadline(Deadline::Never).is_none());
        let epoch = wall_clock_deadline(Deadline::Now).unwrap();
        assert_eq!((epoch.tv_sec, epoch.tv_nsec), (0, 0));
        let before = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        let t = wall_clock_deadline(Deadline::after(Duration::from_secs(100))).unwrap();
        assert!((0..1_000_000_000).contains(&t.tv_nsec));
        assert!(t.tv_sec >= before.tv_sec + 99 && t.tv_sec <= before.tv_sec + 101);
        let far = Deadline::At(std::time::Instant::now() + Duration::from_secs(u32::MAX.into()));
        assert!(wall_clock_deadline(far).unwrap().tv_sec > before.tv_sec);
    }

    #[test]
    fn a_timeout_before_the_monotonic_deadline_is_retried() {
        // What a wall clock set forward looks like: the kernel reports ETIMEDOUT while the
        // monotonic deadline is still ahead. The call must wait again, not time out.
        let name = format!("/ipc-mq-unit-retry-{}", std::process::id());
        let q = Queue::create(&*name, 1, 8).unwrap();
        let _g = q.unlink_guard().unwrap();
        let ahead = Deadline::after(Duration::from_secs(600));
        assert!(q.retry(Errno::TIMEDOUT, ahead, Interest::Readable).is_ok());
        let passed = Deadline::At(std::time::Instant::now() - Duration::from_secs(1));
        let e = q
            .retry(Errno::TIMEDOUT, passed, Interest::Readable)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let e = q
            .retry(Errno::TIMEDOUT, Deadline::Now, Interest::Writable)
            .unwrap_err();
        assert_eq!(
            (e.kind(), e.blocked()),
            (ErrorKind::WouldBlock, Some(Blocked::Full))
        );
        assert!(q.retry(Errno::INTR, passed, Interest::Readable).is_ok());
    }

    #[test]
    fn cookie_matches_its_echo_only() {
        let c = Cookie::next();
        let mut echo = c.bytes;
        echo[sys::NOTIFY_COOKIE_LEN - 1] = NOTIFY_WOKENUP;
        assert!(c.matches(&echo));
        assert!(!Cookie::next().matches(&echo));
        assert!(!c.matches(&echo[..10]));
    }

    #[test]
    fn priority_above_the_maximum_is_refused() {
        assert!(check_priority(MAX_PRIORITY).is_ok());
        assert_eq!(
            check_priority(MAX_PRIORITY + 1).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
