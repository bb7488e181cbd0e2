//! Removing named objects: one [`Removable`] for everything that outlives its processes (POSIX
//! shared memory, queue and semaphore names, System V ids, filesystem paths), and one
//! [`RemoveGuard`] that removes it when dropped, also while unwinding from a panic.
//!
//! ```
//! use ipc_core::{ErrorKind, PosixName, RemoveGuard, Removable};
//!
//! let path = std::env::temp_dir().join(format!("ipc-core-doc-guard-{}", std::process::id()));
//! std::fs::write(&path, b"")?;
//! {
//!     let _guard = RemoveGuard::new(Removable::Path(path.clone()));
//! } // removed here
//! assert!(!path.exists());
//! // Removing what is gone already is NotFound (a guard ignores it).
//! let e = Removable::Path(path).remove().unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::NotFound);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::PathBuf;

use crate::sysv::{self, SysvKind};
use crate::{Error, PosixName, Result};

/// A named object that stays until removed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Removable {
    /// A POSIX shared memory name (`shm_unlink`).
    Shm(PosixName),
    /// A POSIX message queue name (`mq_unlink`).
    Queue(PosixName),
    /// A POSIX named semaphore (`sem_unlink`).
    Semaphore(PosixName),
    /// A System V object by id (`IPC_RMID`).
    Sysv(SysvKind, i32),
    /// A path in the filesystem: a FIFO, a socket, a file (`unlink`).
    Path(PathBuf),
    /// A path, removed only while it still names the file it named when this was made: its
    /// device and inode, compared without following a symbolic link just before the
    /// `unlink`. For a creator that must never remove what replaced its file.
    SameFile {
        /// The path.
        path: PathBuf,
        /// The file's device (`st_dev`).
        dev: u64,
        /// The file's inode (`st_ino`).
        ino: u64,
    },
}

impl Removable {
    /// Removes the name now. Open descriptors and mappings stay valid; the object itself goes
    /// when the last of them does (System V queues and semaphore sets go at once).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if it is gone already;
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied) if the caller may not
    /// remove it.
    pub fn remove(&self) -> Result<()> {
        let r = match self {
            Removable::Shm(name) => rustix::shm::unlink(name.as_c_str()).map_err(Error::from),
            Removable::Queue(name) => {
                // SAFETY: `name` is a valid NUL-terminated string for the call.
                let r = unsafe { libc::mq_unlink(name.as_c_str().as_ptr()) };
                if r < 0 {
                    Err(Error::last_os_error())
                } else {
                    Ok(())
                }
            }
            Removable::Semaphore(name) => {
                // SAFETY: `name` is a valid NUL-terminated string for the call.
                let r = unsafe { libc::sem_unlink(name.as_c_str().as_ptr()) };
                if r < 0 {
                    Err(Error::last_os_error())
                } else {
                    Ok(())
                }
            }
            Removable::Sysv(kind, id) => return sysv::remove(*kind, *id),
            Removable::Path(path) => rustix::fs::unlink(path).map_err(Error::from),
            Removable::SameFile { path, dev, ino } => same_file_unlink(path, (*dev, *ino)),
        };
        match r {
            Ok(()) => {
                tracing::trace!(object = %self, "removed");
                Ok(())
            }
            Err(e) => {
                let e = e.in_op("remove").on(self);
                tracing::debug!(error = %e, "removal failed");
                Err(e)
            }
        }
    }
}

/// Unlinks `path` if it names the file `(dev, ino)`. The check and the unlink go through one
/// descriptor of the parent directory, so a directory on the way swapped between them (a
/// symbolic link planted in its place) cannot make the unlink hit another directory's entry;
/// only the entry itself can still change in between, which no system call can exclude.
fn same_file_unlink(path: &std::path::Path, (dev, ino): (u64, u64)) -> Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let name = path.file_name().ok_or_else(|| {
        Error::with_note(
            crate::ErrorKind::InvalidInput,
            "the path has no file name to remove",
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if (st.st_dev, st.st_ino) != (dev, ino) {
        return Err(Error::with_note(
            crate::ErrorKind::WrongType,
            "the path names another file now; left alone",
        ));
    }
    rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
    Ok(())
}

impl fmt::Display for Removable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removable::Shm(n) => write!(f, "POSIX shared memory {n}"),
            Removable::Queue(n) => write!(f, "POSIX message queue {n}"),
            Removable::Semaphore(n) => write!(f, "POSIX semaphore {n}"),
            Removable::Sysv(kind, id) => write!(f, "{kind} id {id}"),
            Removable::Path(p) | Removable::SameFile { path: p, .. } => {
                write!(f, "{}", p.display())
            }
        }
    }
}

/// Removes a [`Removable`] when dropped, also during a panic; one that is gone already is not
/// an error. [`disarm`](RemoveGuard::disarm) keeps it; [`remove`](RemoveGuard::remove)
/// removes it now and reports the outcome.
#[derive(Debug)]
#[must_use = "the object is removed when the guard is dropped"]
pub struct RemoveGuard {
    object: Option<Removable>,
}

impl RemoveGuard {
    /// A guard for `object` (nothing is checked or removed yet).
    pub fn new(object: Removable) -> RemoveGuard {
        RemoveGuard {
            object: Some(object),
        }
    }

    /// What it will remove.
    pub fn object(&self) -> &Removable {
        self.object
            .as_ref()
            .expect("armed until dropped or disarmed")
    }

    /// Removes now and reports the outcome, instead of ignoring it on drop.
    pub fn remove(mut self) -> Result<()> {
        self.object
            .take()
            .expect("armed until dropped or disarmed")
            .remove()
    }

    /// Gives up the guard without removing; returns the object.
    pub fn disarm(mut self) -> Removable {
        self.object.take().expect("armed until dropped or disarmed")
    }
}

impl Drop for RemoveGuard {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Gone already is fine (somebody removed it on purpose); anything else was logged
            // at DEBUG by `remove`.
            let _ = object.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn every_kind_is_removed_once() {
        let pid = std::process::id();
        let shm = PosixName::new(format!("/ipctest-core-remove-shm-{pid}")).unwrap();
        let fd = rustix::shm::open(
            shm.as_c_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        drop(fd);
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0);
        let path = std::env::temp_dir().join(format!("ipctest-core-remove-{pid}"));
        std::fs::write(&path, b"").unwrap();
        for object in [
            Removable::Shm(shm),
            Removable::Sysv(SysvKind::MessageQueue, id),
            Removable::Path(path),
        ] {
            RemoveGuard::new(object.clone()).remove().unwrap();
            assert_eq!(object.remove().unwrap_err().kind(), ErrorKind::NotFound);
            drop(RemoveGuard::new(object)); // gone already: quiet
        }
    }

    #[test]
    fn same_file_never_removes_a_replacement() {
        let path = std::env::temp_dir().join(format!("ipctest-core-same-{}", std::process::id()));
        std::fs::write(&path, b"first").unwrap();
        let st = rustix::fs::lstat(&path).unwrap();
        let first = Removable::SameFile {
            path: path.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
        };
        // Replaced under the same name: left alone.
        let other = path.with_extension("new");
        std::fs::write(&other, b"second").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(first.remove().unwrap_err().kind(), ErrorKind::WrongType);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let st = rustix::fs::lstat(&path).unwrap();
        RemoveGuard::new(Removable::SameFile {
            path: path.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
        })
        .remove()
        .unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn disarm_keeps_it() {
        let path = std::env::temp_dir().join(format!("ipctest-core-keep-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let kept = RemoveGuard::new(Removable::Path(path.clone())).disarm();
        assert!(path.exists());
        kept.remove().unwrap();
    }
}
