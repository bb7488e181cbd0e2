//! System V IPC, the part every System V object shares: the [`Key`] that names an object (one
//! type for queues, segments and semaphore sets, with `ftok`), the three [`SysvKind`]s, the
//! key-to-id lookup ([`lookup`]), the count of objects in use ([`in_use`]) and removal ([`remove`], also through
//! [`RemoveGuard`](crate::RemoveGuard)).
//!
//! The calls that differ per kind (`msgsnd`, `shmat`, `semop`, ...) live in the mechanism
//! crates.
//!
//! ```
//! use ipc_core::sysv::{Key, SysvKind, lookup};
//! use ipc_core::ErrorKind;
//!
//! let key = Key::from_path("/", b'K')?;
//! assert_eq!(key, Key::from_path("/", b'K')?); // the same file and project: the same key
//! assert!(!key.is_private());
//! // Nothing has this key (in a fresh namespace, at least): a lookup says so.
//! # let key = Key::from_raw(0x7e57_0001);
//! # if lookup(SysvKind::SemaphoreSet, key).is_err() {
//! assert_eq!(lookup(SysvKind::SemaphoreSet, key).unwrap_err().kind(), ErrorKind::NotFound);
//! # }
//! # Ok::<(), ipc_core::Error>(())
//! ```
//!
//! # References
//! - [`sysvipc(7)`](https://man7.org/linux/man-pages/man7/sysvipc.7.html)
//! - [`ftok(3)`](https://man7.org/linux/man-pages/man3/ftok.3.html)

use std::fmt;
use std::path::Path;

use rustix::io::Errno;

use crate::{Error, ErrorKind, Result};

/// The key a System V object is found by: from a path and a project number
/// ([`Key::from_path`], what `ftok(3)` computes), a number agreed on, or [`Key::PRIVATE`].
///
/// One type for every System V object, so one key can name a queue, a segment and a semaphore
/// set of the same application (their key spaces are separate).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(i32);

impl Key {
    /// `IPC_PRIVATE`: creating with it always makes a new object that no key finds; share it
    /// by id.
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// The key `ftok(path, project)` gives, computed as glibc's `ftok(3)` does (so a C program
    /// calling `ftok` with the same arguments finds the same object): the low 16 bits of the
    /// file's inode, the low 8 bits of its device, and `project` in the top 8 bits.
    ///
    /// The file must exist while the key is in use (a new file at the same path usually gives
    /// another key). Distinct files can share a key: create exclusively, so that a clash is
    /// an error rather than a shared object.
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

/// The three kinds of System V object. Each has its own key and id space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SysvKind {
    /// A message queue (`msgget`).
    MessageQueue,
    /// A shared memory segment (`shmget`).
    SharedMemory,
    /// A semaphore set (`semget`).
    SemaphoreSet,
}

impl SysvKind {
    /// What the kind is called in messages: `"System V message queue"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            SysvKind::MessageQueue => "System V message queue",
            SysvKind::SharedMemory => "System V segment",
            SysvKind::SemaphoreSet => "System V semaphore set",
        }
    }
}

impl SysvKind {
    /// The kernel's table of the objects of this kind in this IPC namespace, one line each
    /// after a header line: `/proc/sysvipc/msg`, `shm` or `sem`.
    pub fn proc_table(self) -> &'static str {
        match self {
            SysvKind::MessageQueue => "/proc/sysvipc/msg",
            SysvKind::SharedMemory => "/proc/sysvipc/shm",
            SysvKind::SemaphoreSet => "/proc/sysvipc/sem",
        }
    }
}

impl fmt::Display for SysvKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many objects of `kind` exist in this process's IPC namespace, counted in
/// `/proc/sysvipc/{msg,shm,sem}` (one line each after a header); `None` when that file cannot
/// be read. What a limit error needs to tell "out of ids" (`MSGMNI`, `SHMMNI`, `SEMMNI`) from
/// the other limits the same errno reports.
pub fn in_use(kind: SysvKind) -> Option<u64> {
    let text = std::fs::read_to_string(kind.proc_table()).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count() as u64,
    )
}

/// The id of the object of `kind` that `key` names (`msgget`/`shmget`/`semget` with no
/// flags): what a peer that knows only the key needs before it can attach, without creating
/// anything.
///
/// # Errors
/// - [`ErrorKind::NotFound`]: no object of this kind has the key ([`Key::PRIVATE`] never does).
/// - [`ErrorKind::PermissionDenied`]: it exists, but its mode gives the caller no access.
///
/// # References
/// - [`msgget(2)`](https://man7.org/linux/man-pages/man2/msgget.2.html),
///   [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html),
///   [`semget(2)`](https://man7.org/linux/man-pages/man2/semget.2.html)
#[doc(alias = "msgget")]
#[doc(alias = "shmget")]
#[doc(alias = "semget")]
pub fn lookup(kind: SysvKind, key: Key) -> Result<i32> {
    if key.is_private() {
        return Err(Error::with_note(
            ErrorKind::NotFound,
            "IPC_PRIVATE names no existing object; share the id instead",
        )
        .in_op("look up key")
        .on(kind));
    }
    // SAFETY: the `*get` calls take plain integers and touch no memory of ours. With no
    // `IPC_CREAT` they only look up.
    let id = unsafe {
        match kind {
            SysvKind::MessageQueue => libc::msgget(key.0, 0),
            SysvKind::SharedMemory => libc::shmget(key.0, 0, 0),
            SysvKind::SemaphoreSet => libc::semget(key.0, 0, 0),
        }
    };
    if id < 0 {
        let e = Error::last_os_error()
            .in_op("look up key")
            .on(format_args!("{kind} with key {key}"));
        tracing::debug!(error = %e, "System V lookup failed");
        return Err(e);
    }
    Ok(id)
}

/// Removes the object of `kind` with id `id` (`IPC_RMID`). A segment goes once the last
/// process detaches; a queue or semaphore set at once, and its waiters get `EIDRM`.
///
/// # Errors
/// - [`ErrorKind::NotFound`]: no such id (already removed: `EINVAL`/`EIDRM`).
/// - [`ErrorKind::PermissionDenied`]: the caller is neither the object's owner, creator nor
///   privileged.
///
/// # References
/// - [`msgctl(2)`](https://man7.org/linux/man-pages/man2/msgctl.2.html),
///   [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html),
///   [`semctl(2)`](https://man7.org/linux/man-pages/man2/semctl.2.html)
#[doc(alias = "IPC_RMID")]
pub fn remove(kind: SysvKind, id: i32) -> Result<()> {
    // SAFETY: `IPC_RMID` reads no buffer (a null one is documented as ignored for msgctl and
    // shmctl; semctl takes no fourth argument for it).
    let r = unsafe {
        match kind {
            SysvKind::MessageQueue => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::SharedMemory => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::SemaphoreSet => libc::semctl(id, 0, libc::IPC_RMID),
        }
    };
    if r < 0 {
        let errno = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
        let e = match errno {
            // EINVAL: no such id; EIDRM: removed while we looked.
            Errno::INVAL | Errno::IDRM => Error::with_note(ErrorKind::NotFound, "no such id")
                .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error())),
            _ => Error::from(errno),
        }
        .in_op("IPC_RMID")
        .on(format_args!("{kind} id {id}"));
        tracing::debug!(error = %e, "System V removal failed");
        return Err(e);
    }
    tracing::trace!(%kind, id, "removed System V object");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftok_matches_glibc() {
        let dir = std::env::temp_dir();
        let ours = Key::from_path(&dir, b'x').unwrap();
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let theirs = unsafe { libc::ftok(c.as_ptr(), i32::from(b'x')) };
        assert_eq!(ours.as_raw(), theirs);
        assert_eq!(
            Key::from_path(&dir, 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn lookup_and_remove_a_private_set() {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "{}", std::io::Error::last_os_error());
        remove(SysvKind::SemaphoreSet, id).unwrap();
        assert_eq!(
            remove(SysvKind::SemaphoreSet, id).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            lookup(SysvKind::SemaphoreSet, Key::PRIVATE)
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn counts_objects_in_use() {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0);
        let n = in_use(SysvKind::SemaphoreSet);
        remove(SysvKind::SemaphoreSet, id).unwrap();
        assert!(n.is_some_and(|n| n >= 1), "{n:?}");
    }

    #[test]
    fn display() {
        assert_eq!(Key::PRIVATE.to_string(), "IPC_PRIVATE");
        assert_eq!(Key::from_raw(0x1234).to_string(), "0x00001234");
        assert_eq!(format!("{:?}", Key::from_raw(1)), "Key(0x00000001)");
    }
}
