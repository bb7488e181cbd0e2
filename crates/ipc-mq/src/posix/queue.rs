//! The POSIX queue descriptor: [`Queue`], its sends (with a priority) and receives (the
//! priority returned: [`Received`], [`Message`]), its attributes, and the core traits.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use ipc_core::fd::{Interest, wait};
use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, MessageReceiver, MessageSender, PosixName, Removable,
    RemoveGuard, Result,
};
use rustix::io::Errno;

use super::{Access, MAX_PRIORITY, OpenOptions};
use crate::knobs::RLIMIT_NOFILE;
use crate::sys;

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

/// A received message in its own allocation ([`Queue::recv_message`]).
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
/// until it is [unlinked](super::unlink) and every descriptor is closed.
///
/// The queue's message size and capacity are read once when the descriptor is opened (they
/// cannot change), so the size checks cost no system call.
pub struct Queue {
    fd: OwnedFd,
    name: Option<PosixName>,
    /// The name (or `mqd N` for an adopted descriptor), formatted once for every error.
    object: Arc<str>,
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

    pub(super) fn adopt(fd: OwnedFd, name: Option<PosixName>, created: bool) -> Result<Queue> {
        let attr = match sys::mq_getattr(fd.as_fd()) {
            Ok(a) => a,
            Err(errno) => {
                let object = name
                    .as_ref()
                    .map_or_else(|| format!("fd {}", fd.as_raw_fd()), PosixName::to_string);
                let e = not_a_queue_error(errno).in_op("mq_getattr").on(object);
                tracing::debug!(error = %e, "adopt queue descriptor");
                return Err(e);
            }
        };
        Ok(Queue {
            object: object_name(name.as_ref(), &fd),
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

    /// A guard that unlinks the queue's name when dropped (also during a panic), so a test or
    /// a short-lived program leaves nothing in `/dev/mqueue`: the workspace's one
    /// [`RemoveGuard`], for this queue's name.
    ///
    /// The name is removed only while it still names this queue: the guard compares the
    /// queue's device and inode with the name's in the mqueue filesystem (when one of this
    /// IPC namespace is mounted, as `/dev/mqueue` usually is) just before the unlink, so a
    /// queue another process made under the name after it was unlinked is left alone. With
    /// no such mount it works by name (and would remove that queue). A name that is already
    /// gone is not an error.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a descriptor adopted without a name
    /// ([`from_fd`](Queue::from_fd), `From<OwnedFd>`): there is no name to unlink, and a guard
    /// that silently removed nothing would hide that. Whoever knows the name makes the guard
    /// itself: `RemoveGuard::new(Removable::Queue(name))`.
    pub fn remove_guard(&self) -> Result<RemoveGuard> {
        match &self.name {
            Some(name) => Ok(RemoveGuard::new(self.removable(name))),
            None => Err(self.fail(
                Error::with_note(
                    ErrorKind::InvalidInput,
                    "adopted from a descriptor, the queue has no name here to unlink",
                ),
                "remove guard",
            )),
        }
    }

    /// The queue's name as a file of an mqueue mount of this IPC namespace (its device is
    /// the queue's), tied to the queue's inode; by name when there is none.
    fn removable(&self, name: &PosixName) -> Removable {
        let Ok(st) = rustix::fs::fstat(&self.fd) else {
            return Removable::Queue(name.clone());
        };
        match ipc_core::inventory::mqueue_mount() {
            Some(mount) if rustix::fs::stat(&mount).is_ok_and(|m| m.st_dev == st.st_dev) => {
                Removable::SameFile {
                    path: mount.join(name.file_name()),
                    dev: st.st_dev,
                    ino: st.st_ino,
                }
            }
            _ => Removable::Queue(name.clone()),
        }
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
        check_priority(priority).map_err(|e| e.on_shared(&self.object))?;
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
                    RLIMIT_NOFILE,
                    rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
                )
                .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error())),
                _ => Error::from(errno),
            };
            self.fail(e, "fcntl(F_DUPFD_CLOEXEC)")
        })?;
        Ok(Queue {
            object: match &self.name {
                Some(_) => Arc::clone(&self.object),
                None => object_name(None, &fd),
            },
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
            .map_err(|errno| self.fail(not_a_queue_error(errno), "mq_getattr"))?;
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
    /// documentation](super)).
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
            .map_err(|errno| self.fail(not_a_queue_error(errno), "mq_setattr"))
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
    /// for room until `deadline` (`mq_timedsend(3)`; a finite deadline waits with `poll(2)` on
    /// the monotonic clock, see the [module documentation](super)).
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
    /// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
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
            match sys::mq_timedsend(self.fd.as_fd(), msg, priority, kernel_timeout(deadline)) {
                Ok(()) => return Ok(()),
                Err(errno) => self
                    .retry(errno, deadline, Interest::Writable)
                    .map_err(|e| self.fail(e, "mq_send"))?,
            }
        }
    }

    /// Receives the oldest message of the highest priority into `buf`, waiting as long as it
    /// takes. See [`recv_deadline`](Queue::recv_deadline).
    #[doc(alias = "mq_receive")]
    pub fn recv(&self, buf: &mut [u8]) -> Result<Received> {
        self.recv_deadline(buf, Deadline::Never)
    }

    /// Receives a message if one is queued now, else fails with [`ErrorKind::WouldBlock`].
    /// See [`recv_deadline`](Queue::recv_deadline).
    #[doc(alias = "mq_timedreceive")]
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Received> {
        self.recv_deadline(buf, Deadline::Now)
    }

    /// Receives a message, waiting at most `timeout`. See
    /// [`recv_deadline`](Queue::recv_deadline).
    #[doc(alias = "mq_timedreceive")]
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<Received> {
        self.recv_deadline(buf, Deadline::after(timeout))
    }

    /// Receives the oldest message of the highest priority into `buf`, waiting for one until
    /// `deadline` (`mq_timedreceive(3)`; a finite deadline waits with `poll(2)` on the
    /// monotonic clock, see the [module documentation](super)); returns its length and
    /// priority.
    ///
    /// `buf` must be at least [`message_size`](Queue::message_size) bytes long, whatever the
    /// length of the next message: the kernel refuses shorter buffers. This is checked first, so
    /// a short buffer never reaches the kernel and no message is taken.
    /// [`recv_message`](Queue::recv_message) allocates a buffer of the right size.
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
    /// - [`poll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html)
    #[doc(alias = "mq_timedreceive")]
    #[doc(alias = "mq_receive")]
    pub fn recv_deadline(&self, buf: &mut [u8], deadline: Deadline) -> Result<Received> {
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
            match sys::mq_timedreceive(self.fd.as_fd(), buf, kernel_timeout(deadline)) {
                Ok((len, priority)) => return Ok(Received { len, priority }),
                Err(errno) => self
                    .retry(errno, deadline, Interest::Readable)
                    .map_err(|e| self.fail(e, "mq_receive"))?,
            }
        }
    }

    /// Receives the next message into a new buffer of the right size, waiting as long as it
    /// takes. See [`recv_deadline`](Queue::recv_deadline).
    #[doc(alias = "mq_receive")]
    pub fn recv_message(&self) -> Result<Message> {
        self.recv_message_deadline(Deadline::Never)
    }

    /// Receives the next message into a new buffer, waiting until `deadline`. See
    /// [`recv_deadline`](Queue::recv_deadline).
    #[doc(alias = "mq_timedreceive")]
    pub fn recv_message_deadline(&self, deadline: Deadline) -> Result<Message> {
        let mut data = vec![0; self.message_size()];
        let got = self.recv_deadline(&mut data, deadline)?;
        data.truncate(got.len);
        Ok(Message {
            data,
            priority: got.priority,
        })
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
    ///
    /// A call with a deadline never waits in the kernel (see [`kernel_timeout`]): `ETIMEDOUT`
    /// from its epoch-time try, or `EAGAIN` on a non-blocking descriptor, both mean "not
    /// now". Then this waits with `poll(2)` on the monotonic clock until the descriptor is
    /// ready or the deadline passes; ready, the caller tries again, and if another process
    /// took the message (or the room) first, comes back here to wait for the time left.
    fn retry(&self, errno: Errno, deadline: Deadline, interest: Interest) -> Result<()> {
        let blocked = match interest {
            Interest::Readable => Blocked::Empty,
            Interest::Writable => Blocked::Full,
        };
        match errno {
            Errno::INTR => Ok(()),
            Errno::TIMEDOUT | Errno::AGAIN => {
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

    /// Names the queue in `e` and logs it (except the expected would-block and timeout, which
    /// are made without allocating: the name is shared, the op is static).
    pub(super) fn fail(&self, e: Error, op: &'static str) -> Error {
        let e = e.in_op(op).on_shared(&self.object);
        if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            tracing::debug!(error = %e, "POSIX message queue");
        }
        e
    }

    /// The queue as errors and logs name it.
    pub(super) fn object(&self) -> &Arc<str> {
        &self.object
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

/// The error of a call the kernel makes only on a queue descriptor (`mq_getattr`,
/// `mq_setattr`, `mq_notify`): `EBADF` there means the descriptor is not a queue.
pub(super) fn not_a_queue_error(errno: Errno) -> Error {
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

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The queue descriptor is pollable (Linux): readable while a message is queued, writable
/// while there is room. One descriptor serves both directions.
impl ipc_core::Readiness for Queue {
    fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.fd.as_fd())
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
            object: object_name(None, &fd),
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
        // The inherent form (same name, the priority kept): named in full, or this would call
        // itself.
        Queue::recv_deadline(self, buf, deadline).map(|r| r.len)
    }

    fn max_message_size(&self) -> usize {
        self.message_size()
    }
}

impl MessageReceiver for &Queue {
    /// Receives the next message (highest priority first); its priority is dropped.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize> {
        // The inherent form (same name, the priority kept): named in full, or this would call
        // itself.
        Queue::recv_deadline(self, buf, deadline).map(|r| r.len)
    }

    fn max_message_size(&self) -> usize {
        self.message_size()
    }
}

/// What errors call a queue: its name, or `mqd N` for a descriptor adopted without one.
fn object_name(name: Option<&PosixName>, fd: &OwnedFd) -> Arc<str> {
    match name {
        Some(n) => Arc::from(n.as_str()),
        None => Arc::from(format!("mqd {}", fd.as_raw_fd())),
    }
}

/// The absolute `CLOCK_REALTIME` time of the epoch: passed to `mq_timed*`, it has always
/// passed, so the kernel takes what is ready and fails with `ETIMEDOUT` instead of waiting.
const EPOCH: libc::timespec = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// The timeout `mq_timed*` get for `deadline`: none (wait in the kernel as long as it takes)
/// for [`Deadline::Never`]; for every other deadline the epoch, so the kernel never waits on
/// the wall clock and the wait itself is `poll(2)`'s, on the monotonic clock
/// ([`Queue::retry`]).
fn kernel_timeout(deadline: Deadline) -> Option<&'static libc::timespec> {
    match deadline {
        Deadline::Never => None,
        Deadline::Now | Deadline::At(_) => Some(&EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No deadline reaches the kernel as a wall-clock time: a finite one is the epoch (take
    /// what is ready, never wait), and only `Never` waits in the kernel.
    #[test]
    fn only_the_epoch_or_no_timeout_reaches_the_kernel() {
        assert!(kernel_timeout(Deadline::Never).is_none());
        let far = Deadline::At(std::time::Instant::now() + Duration::from_secs(u32::MAX.into()));
        for d in [
            Deadline::Now,
            Deadline::At(std::time::Instant::now() - Duration::from_secs(1)),
            Deadline::after(Duration::from_secs(100)),
            far,
        ] {
            let t = kernel_timeout(d).unwrap();
            assert_eq!((t.tv_sec, t.tv_nsec), (0, 0), "{d:?}");
        }
    }

    /// After a try that found the queue empty (`ETIMEDOUT` from the epoch, or `EAGAIN` on a
    /// non-blocking descriptor): `Now` gives up at once, a deadline ahead waits for the
    /// descriptor and tries again when it is ready, a passed deadline times out.
    #[test]
    fn a_try_that_found_nothing_waits_for_the_descriptor_then_tries_again() {
        let name = format!("/ipc-mq-unit-retry-{}", std::process::id());
        let q = Queue::create(&*name, 1, 8).unwrap();
        let _g = q.remove_guard().unwrap();
        let passed = Deadline::At(std::time::Instant::now() - Duration::from_secs(1));
        let ahead = Deadline::after(Duration::from_secs(600));
        for errno in [Errno::TIMEDOUT, Errno::AGAIN] {
            let e = q
                .retry(errno, Deadline::Now, Interest::Readable)
                .unwrap_err();
            assert_eq!(
                (e.kind(), e.blocked()),
                (ErrorKind::WouldBlock, Some(Blocked::Empty))
            );
            let e = q.retry(errno, passed, Interest::Readable).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
            // Room for one: writable now, so the send is tried again at once.
            assert!(q.retry(errno, ahead, Interest::Writable).is_ok());
        }
        q.try_send_with_priority(b"x", 0).unwrap();
        // Full: a send that found no room gives up at its deadline; a receive tries again.
        let e = q
            .retry(Errno::TIMEDOUT, Deadline::Now, Interest::Writable)
            .unwrap_err();
        assert_eq!(
            (e.kind(), e.blocked()),
            (ErrorKind::WouldBlock, Some(Blocked::Full))
        );
        let e = q
            .retry(Errno::TIMEDOUT, passed, Interest::Writable)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(q.retry(Errno::TIMEDOUT, ahead, Interest::Readable).is_ok());
        // Interrupted: tried again, whatever the deadline.
        assert!(q.retry(Errno::INTR, passed, Interest::Readable).is_ok());
        let e = q.retry(Errno::BADF, ahead, Interest::Readable).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
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
