//! Opening and creating POSIX message queues: [`OpenOptions`] (access, creation, mode,
//! capacity, blocking, the [`Owner`] an existing queue must have) and the one `mq_open` call
//! whose failures it explains.

use std::os::fd::OwnedFd;

#[cfg(doc)]
use ipc_core::ErrorKind;
use ipc_core::{Error, Owner, PosixKind, PosixName, Result};

use super::{Access, DEFAULT_MODE, Limits, Queue};
use crate::limits::{FdUsage, OpenRequest, classify_open_error};
use crate::open::{Creation, check_mode, invalid, open_or_create};
use crate::sys;

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
/// let _unlink = q.remove_guard()?;
/// assert_eq!((q.max_messages(), q.message_size()), (4, 128));
/// let reader = OpenOptions::new().access(Access::ReadOnly).open(&*name)?;
/// assert_eq!(reader.message_size(), 128);
/// # Ok::<(), ipc_mq::Error>(())
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
    owner: Owner,
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
            owner: Owner::Me,
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
    /// the name by someone else is refused, unless the [`owner`](OpenOptions::owner) policy
    /// accepts its owner.
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

    /// Whose queue an open accepts when the name exists already: [`Owner::Me`] (the default)
    /// the effective user of this process, [`Owner::Uid`] that user, [`Owner::Any`] anyone.
    /// The owner is read with `fstat` on the opened descriptor (never by a second lookup of the
    /// name) and checked with [`Owner::check`]; a refusal is [`ErrorKind::PermissionDenied`]
    /// naming both uids. Another user's queue may have been put under the name by anyone with
    /// access to `/dev/mqueue`, and its owner can remove it or change its mode at will; the same
    /// policy holds for every named object of this workspace.
    pub fn owner(&mut self, owner: Owner) -> &mut OpenOptions {
        self.owner = owner;
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
    ///   queue's owner is not the one the [`owner`](OpenOptions::owner) policy accepts.
    /// - [`ErrorKind::LimitExceeded`], naming the knob and its value: the capacity exceeds
    ///   `/proc/sys/fs/mqueue/msg_max` or `msgsize_max` (or, for a process with
    ///   `CAP_SYS_RESOURCE`, the kernel's [`HARD_MSGMAX`](super::HARD_MSGMAX) / [`HARD_MSGSIZEMAX`](super::HARD_MSGSIZEMAX)); the namespace
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
            Creation::OpenExisting => (self.open_existing(&name, base)?, false),
            Creation::CreateNew => (open_raw(&name, create, self.mode, attr)?, true),
            Creation::OpenOrCreate => open_or_create(
                "mq_open",
                &name,
                || open_raw(&name, create, self.mode, attr),
                || self.open_existing(&name, base),
            )?,
        };
        if created {
            if let Err(e) = rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(self.mode)) {
                // Do not leave a queue behind with a mode nobody asked for.
                let _ = ipc_core::Removable::Queue(name.clone()).remove();
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

    /// Opens the existing queue `name` and checks its owner.
    fn open_existing(&self, name: &PosixName, oflag: i32) -> Result<OwnedFd> {
        let fd = open_raw(name, oflag, 0, None)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::from(e).in_op("fstat").on(name))?;
        self.owner.check(st.st_uid, name)?;
        Ok(fd)
    }

    /// Validates mode and capacity; fills in a missing half of the capacity with its default.
    fn checked_attr(&self, name: &PosixName) -> Result<Option<sys::MqAttr>> {
        check_mode(self.mode, "mq_open", name)?;
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
                return Err(invalid(
                    format!("{what} is {v}; it must be at least 1 and fit a long"),
                    "mq_open",
                    name,
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
