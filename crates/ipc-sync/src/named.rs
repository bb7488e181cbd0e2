//! [`NamedSemaphore`]: POSIX named semaphores (`sem_open`), shared by name with any program that
//! uses the same API.

use std::fmt;
use std::time::Duration;

use ipc_core::{Blocked, Deadline, Error, ErrorKind, NAME_MAX, PosixName, Result};
use rustix::io::Errno;

use crate::futex::monotonic_timespec;
use crate::sys::{self, SemPtr, SemWait};

/// The largest value of a POSIX semaphore on Linux (`SEM_VALUE_MAX`).
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// glibc stores the semaphore `/name` as the file `/dev/shm/sem.name`: four bytes of prefix.
const GLIBC_PREFIX: usize = "sem.".len();

/// A POSIX named semaphore: a counting semaphore that unrelated processes open by name
/// (`/name`), compatible with every program that uses `sem_open` (C, Python's `posix_ipc`,
/// ...).
///
/// glibc keeps it in a small file `/dev/shm/sem.<name>` that each process maps; a name stays
/// until [`unlink`](NamedSemaphore::unlink)ed (or the machine reboots), even when no process
/// has it open. Use [`unlink_on_drop`](NamedSemaphore::unlink_on_drop) to tie the name to a
/// value's lifetime.
///
/// # When to use
/// To synchronise with programs you do not control, or processes that find each other only by
/// name. Between processes of your own that share memory anyway, a
/// [`Semaphore`](crate::Semaphore) in that memory is cheaper to set up. Neither gives back the
/// units a dead process took; a System V [`SemaphoreSet`](crate::SemaphoreSet) with `SEM_UNDO`
/// does.
///
/// ```
/// use ipc_sync::NamedSemaphore;
/// # let name = format!("/ipctest-doc-named-{}", std::process::id());
///
/// let sem = NamedSemaphore::create(name.as_str(), 0)?.unlink_on_drop();
/// // Another process: NamedSemaphore::open(name)?.post()?;
/// NamedSemaphore::open(name.as_str())?.post()?;
/// sem.wait()?;
/// assert_eq!(sem.value()?, 0);
/// # Ok::<(), ipc_core::Error>(())
/// ```
///
/// # References
/// - [`sem_overview(7)`](https://man7.org/linux/man-pages/man7/sem_overview.7.html)
pub struct NamedSemaphore {
    sem: SemPtr,
    name: PosixName,
    unlink_on_drop: bool,
}

// SAFETY: `sem_t` operations are thread-safe (POSIX), and the pointer stays valid until `Drop`
// calls `sem_close`.
unsafe impl Send for NamedSemaphore {}
// SAFETY: as above.
unsafe impl Sync for NamedSemaphore {}

fn check_name(name: impl TryInto<PosixName, Error = Error>) -> Result<PosixName> {
    let name = name.try_into()?;
    if name.file_name().len() > NAME_MAX - GLIBC_PREFIX {
        return Err(Error::with_note(
            ErrorKind::InvalidName,
            "a semaphore name has at most 251 bytes after the '/' (glibc prefixes \"sem.\")",
        )
        .in_op("sem_open")
        .on(name));
    }
    Ok(name)
}

impl NamedSemaphore {
    /// Creates the semaphore `name` with the initial `value`, failing if it exists
    /// (`sem_open` with `O_CREAT | O_EXCL`, mode `0o600`).
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidName`]: not a valid POSIX name (checked before any syscall).
    /// - [`ErrorKind::AlreadyExists`]: the name is taken.
    /// - [`ErrorKind::LimitExceeded`]: `value` is above [`SEM_VALUE_MAX`], or out of
    ///   descriptors or space in `/dev/shm`.
    /// - [`ErrorKind::PermissionDenied`]: `/dev/shm` is not writable for us.
    ///
    /// # References
    /// - [`sem_open(3)`](https://man7.org/linux/man-pages/man3/sem_open.3.html)
    #[doc(alias = "sem_open")]
    pub fn create(name: impl TryInto<PosixName, Error = Error>, value: u32) -> Result<Self> {
        Self::create_with_mode(name, value, 0o600)
    }

    /// [`create`](NamedSemaphore::create) with permission bits `mode` (subject to the umask).
    pub fn create_with_mode(
        name: impl TryInto<PosixName, Error = Error>,
        value: u32,
        mode: u32,
    ) -> Result<Self> {
        let name = check_name(name)?;
        if value > SEM_VALUE_MAX {
            return Err(
                Error::limit("SEM_VALUE_MAX", Some(u64::from(SEM_VALUE_MAX)))
                    .in_op("sem_open")
                    .on(name),
            );
        }
        let sem = sys::sem_open(name.as_c_str(), Some((mode, value))).map_err(|e| {
            let e = Error::from(e).in_op("sem_open(O_CREAT|O_EXCL)").on(&name);
            tracing::debug!(error = %e, "named semaphore not created");
            e
        })?;
        tracing::trace!(name = %name, value, "created named semaphore");
        Ok(NamedSemaphore {
            sem,
            name,
            unlink_on_drop: false,
        })
    }

    /// Opens the existing semaphore `name` (`sem_open` without `O_CREAT`).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is none; [`ErrorKind::PermissionDenied`];
    /// [`ErrorKind::InvalidName`].
    ///
    /// # References
    /// - [`sem_open(3)`](https://man7.org/linux/man-pages/man3/sem_open.3.html)
    pub fn open(name: impl TryInto<PosixName, Error = Error>) -> Result<Self> {
        let name = check_name(name)?;
        let sem = sys::sem_open(name.as_c_str(), None).map_err(|e| {
            let e = Error::from(e).in_op("sem_open").on(&name);
            tracing::debug!(error = %e, "named semaphore not opened");
            e
        })?;
        tracing::trace!(name = %name, "opened named semaphore");
        Ok(NamedSemaphore {
            sem,
            name,
            unlink_on_drop: false,
        })
    }

    /// Removes the name `name` (`sem_unlink`). Processes that have the semaphore open keep
    /// using it; it is freed when the last one closes it.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is no such name.
    ///
    /// # References
    /// - [`sem_unlink(3)`](https://man7.org/linux/man-pages/man3/sem_unlink.3.html)
    #[doc(alias = "sem_unlink")]
    pub fn unlink(name: impl TryInto<PosixName, Error = Error>) -> Result<()> {
        let name = check_name(name)?;
        sys::sem_unlink(name.as_c_str()).map_err(|e| {
            let e = Error::from(e).in_op("sem_unlink").on(&name);
            tracing::debug!(error = %e, "named semaphore not unlinked");
            e
        })?;
        tracing::trace!(name = %name, "unlinked named semaphore");
        Ok(())
    }

    /// Makes this value a guard of the name: dropping it unlinks the name (also during a
    /// panic), after closing the semaphore.
    #[must_use]
    pub fn unlink_on_drop(mut self) -> Self {
        self.unlink_on_drop = true;
        self
    }

    /// The semaphore's name.
    pub fn name(&self) -> &PosixName {
        &self.name
    }

    /// Adds one to the value, waking a waiter (`sem_post`). Never blocks.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] if the value is [`SEM_VALUE_MAX`] (`EOVERFLOW`).
    ///
    /// # References
    /// - [`sem_post(3)`](https://man7.org/linux/man-pages/man3/sem_post.3.html)
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<()> {
        // SAFETY: `self.sem` is open until `Drop`.
        unsafe { sys::sem_post(self.sem) }.map_err(|e| {
            let e = if e == Errno::OVERFLOW {
                Error::limit("SEM_VALUE_MAX", Some(u64::from(SEM_VALUE_MAX)))
            } else {
                Error::from(e)
            }
            .in_op("sem_post")
            .on(&self.name);
            tracing::debug!(error = %e, "sem_post failed");
            e
        })
    }

    /// Takes one unit, waiting as long as it takes (`sem_wait`).
    ///
    /// Blocks on: a post from any process.
    ///
    /// # References
    /// - [`sem_wait(3)`](https://man7.org/linux/man-pages/man3/sem_wait.3.html)
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<()> {
        self.wait_until(Deadline::Never)
    }

    /// Takes one unit if there is one (`sem_trywait`).
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] if the value is zero.
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> Result<()> {
        self.wait_until(Deadline::Now)
    }

    /// Takes one unit, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if the value stayed zero.
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Takes one unit, waiting until `deadline` (`sem_clockwait` with `CLOCK_MONOTONIC`, so a
    /// change of the wall clock does not matter; `sem_trywait` for [`Deadline::Now`]).
    /// Interrupted waits resume.
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] for [`Deadline::Now`] and [`ErrorKind::TimedOut`] otherwise,
    /// when the value stayed zero.
    ///
    /// # References
    /// - [`sem_wait(3)`](https://man7.org/linux/man-pages/man3/sem_wait.3.html)
    #[doc(alias = "sem_clockwait")]
    pub fn wait_until(&self, deadline: Deadline) -> Result<()> {
        let how = match deadline {
            Deadline::Now => SemWait::Try,
            Deadline::Never => SemWait::Block,
            Deadline::At(at) => SemWait::Until(monotonic_timespec(at)),
        };
        loop {
            // SAFETY: `self.sem` is open until `Drop`.
            match unsafe { sys::sem_wait(self.sem, how) } {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    return Err(Error::would_block(Blocked::Empty)
                        .in_op("sem_trywait")
                        .on(&self.name));
                }
                Err(Errno::TIMEDOUT) => {
                    return Err(Error::timed_out().in_op("sem_clockwait").on(&self.name));
                }
                Err(e) => {
                    let e = Error::from(e).in_op("sem_wait").on(&self.name);
                    tracing::debug!(error = %e, "sem_wait failed");
                    return Err(e);
                }
            }
        }
    }

    /// The current value (`sem_getvalue`; a snapshot).
    ///
    /// # References
    /// - [`sem_getvalue(3)`](https://man7.org/linux/man-pages/man3/sem_getvalue.3.html)
    #[doc(alias = "sem_getvalue")]
    pub fn value(&self) -> Result<u32> {
        // SAFETY: `self.sem` is open until `Drop`.
        let v = unsafe { sys::sem_getvalue(self.sem) }
            .map_err(|e| Error::from(e).in_op("sem_getvalue").on(&self.name))?;
        // glibc reports 0, never a negative count of waiters.
        Ok(u32::try_from(v).unwrap_or(0))
    }
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        // SAFETY: `self.sem` was opened by `sem_open` and is closed only here.
        if let Err(e) = unsafe { sys::sem_close(self.sem) } {
            tracing::debug!(name = %self.name, error = %e, "sem_close failed");
        }
        if self.unlink_on_drop {
            match sys::sem_unlink(self.name.as_c_str()) {
                Ok(()) => tracing::trace!(name = %self.name, "unlinked named semaphore"),
                Err(e) => tracing::debug!(name = %self.name, error = %e, "sem_unlink failed"),
            }
        }
    }
}

impl fmt::Debug for NamedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedSemaphore")
            .field("name", &self.name)
            .field("unlink_on_drop", &self.unlink_on_drop)
            .finish()
    }
}
