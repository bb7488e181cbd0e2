//! Opening and creating System V message queues by [`Key`]: [`OpenOptions`] (creation, mode,
//! access, the [`Owner`] an existing queue must have) and the `msgget` call whose failures it
//! explains.

use ipc_core::knob::{self, MSGMNI};
use ipc_core::sysv::SysvKind;
use ipc_core::{Error, ErrorKind, Owner, Result};
use rustix::io::Errno;

use super::{Access, DEFAULT_MODE, Key, Queue, limit, queue_error};
use crate::open::{Creation, check_mode, invalid, open_or_create};
use crate::sys;

/// How to open or create a queue: creation, permission bits, access.
///
/// ```
/// use ipc_mq::sysv::{Key, OpenOptions};
///
/// let q = OpenOptions::new().create_new(true).mode(0o640).open(Key::PRIVATE)?;
/// let _remove = q.remove_guard();
/// assert_eq!(q.status()?.mode, 0o640);
/// # Ok::<(), ipc_mq::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    access: Access,
    create: bool,
    create_new: bool,
    mode: u32,
    owner: Owner,
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
            owner: Owner::Me,
        }
    }

    /// Whose queue an open accepts when the key exists already: [`Owner::Me`] (the default)
    /// the effective user of this process, [`Owner::Uid`] that user, [`Owner::Any`] anyone.
    /// The owner is read with `msgctl(IPC_STAT)` on the id (or, for a queue the caller may not
    /// read, `msgctl(MSG_STAT_ANY)`, Linux 4.17; where the kernel has none, such a queue is
    /// refused unless the policy is [`Owner::Any`]) and checked with [`Owner::check`]; a
    /// refusal is [`ErrorKind::PermissionDenied`] naming both uids. Anyone can create a queue
    /// under a key before its rightful user does, and its owner can remove it or change its
    /// mode at will; the same policy holds for every named object of this workspace. The
    /// creator is checked too (unless it is root): it keeps the owner's rights after giving the
    /// queue away to another uid, which a squatter does to pass for its victim.
    /// ([`Queue::from_id`] makes no check at all: whoever hands out an id vouches for it.)
    pub fn owner(&mut self, owner: Owner) -> &mut OpenOptions {
        self.owner = owner;
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
    /// already existed must have the owner the [`owner`](OpenOptions::owner) policy accepts
    /// (else [`ErrorKind::PermissionDenied`]), so a queue squatted under the key is refused.
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
    /// - [`ErrorKind::NotFound`]: no queue has the key (and not creating), also when the
    ///   queue found is removed before its owner was checked.
    /// - [`ErrorKind::AlreadyExists`]: creating exclusively and a queue has the key.
    /// - [`ErrorKind::PermissionDenied`]: the queue's mode does not grant the access, or the
    ///   existing queue's owner (or its creator, unless root) is not one the
    ///   [`owner`](OpenOptions::owner) policy accepts.
    /// - [`ErrorKind::LimitExceeded`]: `/proc/sys/kernel/msgmni` queues exist already (named,
    ///   with its value).
    ///
    /// # References
    /// - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html)
    #[doc(alias = "msgget")]
    pub fn open(&self, key: Key) -> Result<Queue> {
        check_mode(self.mode, "msgget", key)?;
        let access = match self.access {
            Access::ReadOnly => 0o400,
            Access::WriteOnly => 0o200,
            Access::ReadWrite => 0o600,
        };
        let create = libc::IPC_CREAT | libc::IPC_EXCL | self.mode as i32;
        let (id, created) = match Creation::of(self.create, self.create_new) {
            Creation::OpenExisting if key.is_private() => {
                return Err(invalid(
                    "IPC_PRIVATE names no existing queue; create one, or open it by id",
                    "msgget",
                    key,
                ));
            }
            Creation::OpenExisting => (self.open_existing(key, access)?, false),
            Creation::CreateNew => (msgget(key, create)?, true),
            Creation::OpenOrCreate if key.is_private() => (msgget(key, create)?, true),
            Creation::OpenOrCreate => open_or_create(
                "msgget",
                format_args!("{} with key {key}", SysvKind::MessageQueue),
                || msgget(key, create),
                || self.open_existing(key, access),
            )?,
        };
        if created {
            tracing::trace!(key = %key, id, mode = format_args!("{:#o}", self.mode), "created System V message queue");
        } else {
            tracing::trace!(key = %key, id, "opened System V message queue");
        }
        Ok(Queue::with_id(id, key, created))
    }

    /// Opens the existing queue with `key` (checking `access`) and checks its owner.
    fn open_existing(&self, key: Key, access: i32) -> Result<i32> {
        let id = msgget(key, access)?;
        if self.owner != Owner::Any {
            let (uid, cuid) = owner_of(id, key)?;
            self.owner.check_with_creator(
                uid,
                cuid,
                format_args!("{} with key {key}", SysvKind::MessageQueue),
            )?;
        }
        Ok(id)
    }
}

/// The owner and the creator of queue `id`, as `IPC_STAT` (or, for a queue the caller may not
/// read, `MSG_STAT_ANY`) reports them.
fn owner_of(id: i32, key: Key) -> Result<(u32, u32)> {
    match sys::msgctl_stat_any(id) {
        Ok(ds) => Ok((ds.msg_perm.uid, ds.msg_perm.cuid)),
        // No read permission, and a kernel older than 4.17 (no MSG_STAT_ANY) or a security
        // module that refuses it: the owner cannot be told, so no policy but Any can pass.
        Err(Errno::ACCESS) => {
            let e = Error::with_note(
                ErrorKind::PermissionDenied,
                "cannot tell who owns the queue: no read permission, and the kernel would not \
                 report it anyway (MSG_STAT_ANY needs Linux 4.17, and a security module may \
                 refuse it); OpenOptions::owner(Owner::Any) opens it anyway",
            )
            .in_op("check owner")
            .on(key);
            tracing::debug!(error = %e, "msgget");
            Err(e)
        }
        // Removed since msgget found it (EINVAL: no queue has the id now; EIDRM: being
        // removed): no queue has the key, as if msgget had not found it, so that
        // `open_or_create` tries again.
        Err(errno @ (Errno::INVAL | Errno::IDRM)) => {
            let e = Error::with_note(
                ErrorKind::NotFound,
                "the queue was removed as it was opened",
            )
            .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error()))
            .in_op("check owner")
            .on(key);
            tracing::debug!(error = %e, "msgget");
            Err(e)
        }
        Err(errno) => Err(queue_error(errno).in_op("msgctl(IPC_STAT)").on(key)),
    }
}

fn msgget(key: Key, flags: i32) -> Result<i32> {
    sys::msgget(key.as_raw(), flags).map_err(|errno| {
        let e = match errno {
            Errno::NOSPC => knob::limit_error(MSGMNI)
                .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error())),
            Errno::NOMEM => limit("kernel memory", None, errno),
            _ => Error::from(errno),
        }
        .in_op("msgget")
        .on(key);
        tracing::debug!(error = %e, "msgget");
        e
    })
}
