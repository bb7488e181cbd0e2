//! [`NamedSemaphore`]: POSIX named semaphores (`sem_open`), shared by name with any program that
//! uses the same API.

use std::ffi::CString;
use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ipc_core::{
    Blocked, Deadline, Error, ErrorKind, Owner, PosixKind, PosixName, Removable, RemoveGuard,
    Result,
};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::futex;
use crate::sys::{self, SEM_SIZE, SemPtr, SemWords};

/// The largest value of a POSIX semaphore on Linux (`SEM_VALUE_MAX`).
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// A POSIX named semaphore: a counting semaphore that unrelated processes open by name
/// (`/name`), compatible with every program that uses `sem_open` (C, Python's `posix_ipc`,
/// ...).
///
/// glibc keeps it in a small file `/dev/shm/sem.<name>` that each process maps; a name stays
/// until [`unlink`](NamedSemaphore::unlink)ed (or the machine reboots), even when no process
/// has it open. Use [`remove_on_drop`](NamedSemaphore::remove_on_drop) to tie the name to a
/// value's lifetime.
///
/// # Trust
/// The file is writable by every program of the user, so every word of the `sem_t` is
/// something another process may have written. Posts and waits operate on glibc's words
/// themselves, with glibc's protocol (so they interoperate with `sem_post` and `sem_wait`),
/// and never read the word glibc takes its futex flags from: an overwritten one makes glibc
/// abort or hang, never this crate. A value above [`SEM_VALUE_MAX`] is
/// [`Corrupted`](ErrorKind::Corrupted) for [`post`](NamedSemaphore::post) and
/// [`value`](NamedSemaphore::value); a waiter count overwritten costs a spare wake-up or
/// delays a waiter by at most [`futex::RECHECK`](crate::futex::RECHECK).
///
/// # When to use
/// To synchronise with programs you do not control, or processes that find each other only by
/// name. Between processes of your own that share memory anyway, a
/// [`Semaphore`](crate::Semaphore) in that memory is cheaper to set up. Neither gives back the
/// units a dead process took; a System V [`SemaphoreSet`](crate::SemaphoreSet) with `SEM_UNDO`
/// does.
///
/// ```
/// use ipc_sync::{ErrorKind, NamedSemaphore};
/// # let name = format!("/ipctest-doc-named-{}", std::process::id());
///
/// let sem = NamedSemaphore::create(name.as_str(), 0)?.remove_on_drop();
/// // Another process: NamedSemaphore::open(name)?.post()?;
/// NamedSemaphore::open(name.as_str())?.post()?;
/// sem.wait()?;
/// assert_eq!(sem.value()?, 0);
/// assert_eq!(sem.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # References
/// - [`sem_overview(7)`](https://man7.org/linux/man-pages/man7/sem_overview.7.html)
pub struct NamedSemaphore {
    sem: SemPtr,
    name: PosixName,
    /// `name`, formatted once: errors name the semaphore by taking a reference count, so the
    /// expected ones (would-block, timed out) allocate nothing.
    label: Arc<str>,
    /// The file's device and inode, for [`remove_on_drop`](NamedSemaphore::remove_on_drop):
    /// the name is removed only while it names this file.
    file: (u64, u64),
    /// Unlinks the name after the semaphore is unmapped, if
    /// [`remove_on_drop`](NamedSemaphore::remove_on_drop) asked for it.
    remove: Option<RemoveGuard>,
}

// SAFETY: `sem_t` operations are thread-safe (POSIX), and the mapping stays valid until `Drop`
// unmaps it.
unsafe impl Send for NamedSemaphore {}
// SAFETY: as above.
unsafe impl Sync for NamedSemaphore {}

fn check_name(name: impl TryInto<PosixName, Error = Error>) -> Result<PosixName> {
    let name = name.try_into()?;
    name.check_kind(PosixKind::Semaphore)
        .map_err(|e| e.in_op("sem_open").on(&name))?;
    Ok(name)
}

/// Where glibc keeps the semaphore `/NAME`: `/dev/shm/sem.NAME`.
fn sem_path(name: &PosixName) -> CString {
    CString::new(format!("{SEM_DIR}/sem.{}", name.file_name())).expect("names have no NUL")
}

/// The directory of named semaphore files (glibc's, since 2.34 fixed at `/dev/shm`).
const SEM_DIR: &str = ipc_core::fd::SHM_DIR;

/// What a file of type `t` is called in messages.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

/// Checks what `fstat` says about a semaphore file: a regular file, of at least one `sem_t`,
/// owned as `owner` says.
fn check_sem_file(st: &rustix::fs::Stat, path: &CString, owner: Owner) -> Result<()> {
    let t = FileType::from_raw_mode(st.st_mode);
    if t != FileType::RegularFile {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            format!(
                "a {} is at {}, not a semaphore file; refused without opening it",
                type_name(t),
                path.to_string_lossy()
            ),
        ));
    }
    owner.check(st.st_uid, path.to_string_lossy())?;
    if (st.st_size as u64) < SEM_SIZE as u64 {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            format!(
                "the file has {} bytes, fewer than a semaphore's {SEM_SIZE}: not made by \
                 sem_open, or cut short",
                st.st_size
            ),
        ));
    }
    Ok(())
}

/// The error of an `open` of a semaphore file.
fn open_error(errno: Errno) -> Error {
    match errno {
        // O_NOFOLLOW met a symbolic link; ENXIO/ENODEV: a socket or device (the type check
        // before the open makes these a swap in between).
        Errno::LOOP | Errno::NXIO | Errno::NODEV => Error::with_note(
            ErrorKind::WrongType,
            "not a semaphore file (a symbolic link, socket or device)",
        )
        .with_source(std::io::Error::from_raw_os_error(errno.raw_os_error())),
        e => ipc_core::pipe::descriptor_error(e),
    }
}

/// Opens the semaphore file of `name` for reading and writing, refusing anything but a
/// regular file owned as `owner` says, big enough for a `sem_t`, and maps it.
///
/// Nothing here can block: the type is checked on an `O_PATH` descriptor (which opens nothing)
/// before the real open, and that open has `O_NONBLOCK | O_NOFOLLOW | O_NOCTTY` in case the
/// name was swapped in between; what is mapped is checked again with `fstat` on the very
/// descriptor that is mapped.
fn open_mapped(name: &PosixName, owner: Owner) -> Result<(SemPtr, (u64, u64))> {
    let path = sem_path(name);
    let probe = rustix::fs::open(
        &path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(open_error)?;
    let st = rustix::fs::fstat(&probe)?;
    check_sem_file(&st, &path, owner)?;
    drop(probe);
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(open_error)?;
    let st = rustix::fs::fstat(&fd)?;
    check_sem_file(&st, &path, owner)?;
    Ok((map_sem(fd.as_fd())?, (st.st_dev, st.st_ino)))
}

/// [`sys::sem_map`], its `ENOMEM` naming what stopped the mapping (`RLIMIT_AS`,
/// `vm.max_map_count`).
fn map_sem(fd: std::os::fd::BorrowedFd<'_>) -> Result<SemPtr> {
    sys::sem_map(fd).map_err(|e| ipc_core::knob::mapping_error(e, SEM_SIZE).in_op("mmap"))
}

/// Creates the semaphore file of `name` with exactly `mode` and `value`: an unnamed file in
/// `/dev/shm` (`O_TMPFILE`), `fchmod` to `mode` (so the umask does not apply), the `sem_t`
/// initialised in it, and only then a link under the name (`linkat`), which fails if the name
/// is taken by anything. Other processes never see a half-made semaphore, and a creator killed
/// at any step before the link leaves nothing behind.
fn create_mapped(name: &PosixName, value: u32, mode: u32) -> Result<(SemPtr, (u64, u64))> {
    let fd = ipc_core::fd::create_unnamed_shm(mode, SEM_SIZE as u64)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Error::from(e).in_op("fstat"))?;
    let sem = map_sem(fd.as_fd())?;
    let unmap = |e: Error| {
        // SAFETY: `sem` came from sem_map just above and is not used after this.
        let _ = unsafe { sys::sem_unmap(sem) };
        e
    };
    // SAFETY: `sem` is our new mapping of a file no other process can reach yet.
    unsafe { sys::sem_init_shared(sem, value) }
        .map_err(|e| unmap(Error::from(e).in_op("sem_init")))?;
    let path = sem_path(name);
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.as_bytes()));
    ipc_core::fd::link_unnamed(fd.as_fd(), path).map_err(unmap)?;
    Ok((sem, (st.st_dev, st.st_ino)))
}

impl NamedSemaphore {
    /// Creates the semaphore `name` with the initial `value`, failing if it exists (what
    /// `sem_open` with `O_CREAT | O_EXCL` and mode `0o600` does).
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidName`]: not a valid POSIX name, or longer than 251 bytes (checked
    ///   before any syscall).
    /// - [`ErrorKind::AlreadyExists`]: the name is taken (by a semaphore or by any file at
    ///   `/dev/shm/sem.NAME`).
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

    /// [`create`](NamedSemaphore::create) with permission bits `mode`, exactly: unlike
    /// `sem_open`, the umask does not apply (the file is made without a name, `fchmod`ed and
    /// then linked, so it never has another mode under the name).
    ///
    /// Makes `open(/dev/shm, O_TMPFILE)`, `fchmod`, `fallocate` (its page is reserved, so a
    /// full `/dev/shm` is [`ErrorKind::LimitExceeded`] naming its free bytes, not a `SIGBUS` in
    /// `sem_init`), `mmap`, `sem_init` and `linkat` to `/dev/shm/sem.NAME`: the file `sem_open`
    /// makes, so C programs and other libraries open it with `sem_open` as usual. A creator
    /// killed at any step leaves either nothing or a complete semaphore.
    ///
    /// # Errors
    /// As [`create`](NamedSemaphore::create), and [`ErrorKind::InvalidInput`] for a mode with
    /// bits beyond `0o777` (set-user-ID, set-group-ID, sticky), before any syscall.
    pub fn create_with_mode(
        name: impl TryInto<PosixName, Error = Error>,
        value: u32,
        mode: u32,
    ) -> Result<Self> {
        let name = check_name(name)?;
        let fail = |e: Error| {
            let e = e.in_op("sem_open(O_CREAT|O_EXCL)").on(&name);
            tracing::debug!(error = %e, "named semaphore not created");
            e
        };
        if mode & !0o777 != 0 {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidInput,
                format!("mode {mode:#o} has bits beyond 0o777 (permission bits only)"),
            )));
        }
        if value > SEM_VALUE_MAX {
            return Err(fail(Error::limit(
                "SEM_VALUE_MAX",
                Some(u64::from(SEM_VALUE_MAX)),
            )));
        }
        let (sem, file) = create_mapped(&name, value, mode).map_err(|e| {
            // Keep the step that failed (linkat, fchmod, ...) in the message.
            let step = e.op().map(|op| format!("sem_open(O_CREAT|O_EXCL): {op}"));
            let e = fail(e);
            match step {
                Some(op) => e.in_op(op),
                None => e,
            }
        })?;
        tracing::trace!(name = %name, value, mode = format_args!("{mode:#o}"), "created named semaphore");
        Ok(NamedSemaphore::mapped(sem, file, name))
    }

    fn mapped(sem: SemPtr, file: (u64, u64), name: PosixName) -> NamedSemaphore {
        NamedSemaphore {
            sem,
            file,
            label: Arc::from(name.as_str()),
            name,
            remove: None,
        }
    }

    /// Opens the existing semaphore `name`, if this process's user owns it (what `sem_open`
    /// without `O_CREAT` does, with checks `sem_open` lacks).
    ///
    /// The file `/dev/shm/sem.NAME` is checked before it is used: it must be a regular file
    /// (a FIFO, socket, directory, device or symbolic link planted there is refused with
    /// [`ErrorKind::WrongType`], without blocking), at least one `sem_t` long (an empty file
    /// would kill the process with `SIGBUS` at the first `wait`), and owned by this process's
    /// effective user: another user's semaphore is refused, as every object of this workspace
    /// is by default, since its owner can remove it or change its mode at will.
    /// [`NamedOpenOptions::owner`] opens one anyway. (A process that
    /// may write the file can still truncate it after the check, as with `sem_open`; the owner
    /// check is what keeps other users from doing so.)
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is none; [`ErrorKind::PermissionDenied`] for another
    /// user's semaphore or without access; [`ErrorKind::WrongType`];
    /// [`ErrorKind::InvalidName`].
    ///
    /// # References
    /// - [`sem_open(3)`](https://man7.org/linux/man-pages/man3/sem_open.3.html)
    #[doc(alias = "sem_open")]
    pub fn open(name: impl TryInto<PosixName, Error = Error>) -> Result<Self> {
        NamedOpenOptions::new().open(name)
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
        Removable::Semaphore(check_name(name)?).remove()
    }

    /// Makes this value the owner of the name: dropping it (also during a panic) closes the
    /// semaphore, then unlinks the name (`sem_unlink`) with an [`ipc_core::RemoveGuard`],
    /// quietly if it is gone already. The same builder as
    /// [`SemaphoreSet::remove_on_drop`](crate::SemaphoreSet::remove_on_drop) and ipc-shm's
    /// `Segment::remove_on_drop`; for a name with no value of its own, use a
    /// [`RemoveGuard`] with [`Removable::Semaphore`] directly.
    ///
    /// The name is removed only while it still names this semaphore's file (its device and
    /// inode, compared just before the unlink): if another process removed the name and
    /// created a new semaphore under it meanwhile, the new one is left alone.
    #[must_use]
    pub fn remove_on_drop(mut self) -> Self {
        let path = std::ffi::OsStr::from_bytes(sem_path(&self.name).as_bytes()).into();
        let (dev, ino) = self.file;
        self.remove = Some(RemoveGuard::new(Removable::SameFile { path, dev, ino }));
        self
    }

    /// The semaphore's name.
    pub fn name(&self) -> &PosixName {
        &self.name
    }

    /// Adds one to the value, waking a waiter (what `sem_post` does). Never blocks.
    ///
    /// Operates on glibc's `sem_t` words itself, as glibc's `sem_post` does (one
    /// compare-and-swap; `FUTEX_WAKE` only when a waiter is registered), so it interoperates
    /// with every program that uses `sem_open`. It does not go through glibc because glibc
    /// takes the flags of its futex calls from a word in the file (`private`), which any
    /// program of the user can overwrite: glibc then aborts the process (an invalid futex
    /// operation) or makes its post wait on its own value, for ever. This crate's futex calls
    /// are always shared. It still puts that word back if it was overwritten, for the sake of
    /// other programs' glibc, whose posts would otherwise wake nobody in another process.
    ///
    /// # Errors
    /// - [`ErrorKind::LimitExceeded`] if the value is [`SEM_VALUE_MAX`] (`EOVERFLOW`).
    /// - [`ErrorKind::Corrupted`] if the value is above [`SEM_VALUE_MAX`]: another process
    ///   overwrote it (glibc would add one, and wrap at `u32::MAX`). Nothing is changed.
    ///
    /// # References
    /// - [`sem_post(3)`](https://man7.org/linux/man-pages/man3/sem_post.3.html)
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<()> {
        self.keep_shared();
        let words = self.words();
        let mut d = words.data.load(Ordering::Relaxed);
        loop {
            let value = d as u32;
            if value >= SEM_VALUE_MAX {
                let e = if value == SEM_VALUE_MAX {
                    Error::limit("SEM_VALUE_MAX", Some(u64::from(SEM_VALUE_MAX)))
                } else {
                    Error::corrupted(format!(
                        "the value is {value}, above SEM_VALUE_MAX ({SEM_VALUE_MAX}): another \
                         process overwrote it"
                    ))
                }
                .in_op("sem_post")
                .on_shared(&self.label);
                tracing::debug!(error = %e, "sem_post refused");
                return Err(e);
            }
            // The value is below SEM_VALUE_MAX: adding one leaves the waiter count alone.
            match words
                .data
                .compare_exchange_weak(d, d + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => d = now,
            }
        }
        if d >> WAITERS_SHIFT != 0 {
            futex::wake(words.value, 1);
        }
        Ok(())
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

    /// Takes one unit, waiting until `deadline` (what `sem_clockwait` with `CLOCK_MONOTONIC`
    /// does, so a change of the wall clock does not matter; `sem_trywait` for
    /// [`Deadline::Now`]).
    ///
    /// Operates on glibc's `sem_t` words itself, as glibc does (see
    /// [`post`](NamedSemaphore::post) for why): takes a unit with a compare-and-swap, or
    /// registers as a waiter and sleeps on the value (`FUTEX_WAIT_BITSET`, shared) while it
    /// is zero. Interrupted waits resume; each sleep lasts at most
    /// [`futex::RECHECK`](crate::futex::RECHECK) before the value is looked at again, so that
    /// a wake-up lost to an overwritten `sem_t` (another program's post through an
    /// overwritten sharing word, or a waiter count overwritten with 0) delays the wait
    /// instead of ending it never. A waiter killed in its sleep leaves its registration
    /// behind, as with glibc: posts then make a spare `FUTEX_WAKE`.
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] for [`Deadline::Now`] and [`ErrorKind::TimedOut`] otherwise,
    /// when the value stayed zero.
    ///
    /// # References
    /// - [`sem_wait(3)`](https://man7.org/linux/man-pages/man3/sem_wait.3.html)
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    #[doc(alias = "sem_clockwait")]
    pub fn wait_until(&self, deadline: Deadline) -> Result<()> {
        self.keep_shared();
        let words = self.words();
        if take(words.data) {
            return Ok(());
        }
        if deadline == Deadline::Now {
            return Err(Error::would_block(Blocked::Empty)
                .in_op("sem_trywait")
                .on_shared(&self.label));
        }
        // Register as a waiter (a post wakes only when one is registered), then sleep while
        // the value is zero; take a unit and deregister in one step (glibc's protocol). Any
        // count a peer wrote is a count: the arithmetic wraps, never panics.
        let mut d = words.data.fetch_add(WAITER, Ordering::SeqCst);
        loop {
            if d as u32 != 0 {
                match words.data.compare_exchange_weak(
                    d,
                    d.wrapping_sub(1 + WAITER),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(now) => d = now,
                }
                continue;
            }
            if let Err(e) = futex::wait_recheck(words.value, 0, deadline) {
                words.data.fetch_sub(WAITER, Ordering::SeqCst);
                // A post may have woken us just as the deadline passed: take its unit rather
                // than leave it with the other sleepers asleep.
                if take(words.data) {
                    return Ok(());
                }
                let e = if e.kind() == ErrorKind::TimedOut {
                    Error::timed_out()
                } else {
                    tracing::debug!(error = %e, "named semaphore wait failed");
                    e
                };
                return Err(e.in_op("sem_clockwait").on_shared(&self.label));
            }
            d = words.data.load(Ordering::SeqCst);
        }
    }

    /// Puts back the `sem_t`'s futex-sharing word if another process (a stray write into the
    /// file, any program mapping it) changed it. This crate's operations do not read it, but
    /// other programs' glibc does: with another value, their posts would not wake a waiter
    /// here, and their own waits and posts could abort or hang. The value and waiter count
    /// need no such care: any value is a count.
    fn keep_shared(&self) {
        // SAFETY: `self.sem` is mapped until `Drop`.
        if let Some(was) = unsafe { sys::sem_keep_shared(self.sem) } {
            tracing::debug!(
                semaphore = %self.label,
                was,
                "the sem_t's futex-sharing word was overwritten; put back"
            );
        }
    }

    /// glibc's words of the `sem_t`.
    fn words(&self) -> SemWords<'_> {
        // SAFETY: `self.sem` is mapped until `Drop`, which the borrow of `self` outlives.
        unsafe { sys::sem_words(self.sem) }
    }

    /// The current value (what `sem_getvalue` reports; a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`] if the value is above [`SEM_VALUE_MAX`]: another process
    /// overwrote it (`sem_getvalue` would report it as negative).
    ///
    /// # References
    /// - [`sem_getvalue(3)`](https://man7.org/linux/man-pages/man3/sem_getvalue.3.html)
    #[doc(alias = "sem_getvalue")]
    pub fn value(&self) -> Result<u32> {
        let value = self.words().data.load(Ordering::Relaxed) as u32;
        if value > SEM_VALUE_MAX {
            return Err(Error::corrupted(format!(
                "the value is {value}, above SEM_VALUE_MAX ({SEM_VALUE_MAX}): another process \
                 overwrote it"
            ))
            .in_op("sem_getvalue")
            .on_shared(&self.label));
        }
        Ok(value)
    }
}

/// One registered waiter in glibc's `data` word (its high half counts them).
const WAITERS_SHIFT: u32 = 32;
const WAITER: u64 = 1 << WAITERS_SHIFT;

/// Takes a unit from `data` if its value is not zero (glibc's `sem_trywait`).
#[inline]
fn take(data: &AtomicU64) -> bool {
    let mut d = data.load(Ordering::Relaxed);
    while d as u32 != 0 {
        // The value is at least 1: taking one leaves the waiter count alone.
        match data.compare_exchange_weak(d, d - 1, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => d = now,
        }
    }
    false
}

impl Drop for NamedSemaphore {
    fn drop(&mut self) {
        // SAFETY: `self.sem` was mapped by `sem_map` and is unmapped only here.
        if let Err(e) = unsafe { sys::sem_unmap(self.sem) } {
            tracing::debug!(name = %self.name, error = %e, "munmap of a semaphore failed");
        }
        // Then `self.remove`, if set, unlinks the name.
    }
}

impl fmt::Debug for NamedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedSemaphore")
            .field("name", &self.name)
            .field("remove_on_drop", &self.remove.is_some())
            .finish()
    }
}

/// How a [`NamedSemaphore`] is opened: whose semaphore is accepted
/// ([`owner`](NamedOpenOptions::owner)). [`NamedSemaphore::open`] is these options with their
/// defaults.
///
/// ```no_run
/// use ipc_sync::{NamedOpenOptions, Owner};
///
/// // A semaphore that user 1001 created, on purpose:
/// let sem = NamedOpenOptions::new().owner(Owner::Uid(1001)).open("/jobs")?;
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NamedOpenOptions {
    owner: Owner,
}

impl NamedOpenOptions {
    /// Only semaphores owned by this process's effective user ([`Owner::Me`]).
    pub fn new() -> NamedOpenOptions {
        NamedOpenOptions::default()
    }

    /// Whose semaphore to accept: [`Owner::Me`] by default, [`Owner::Uid`] for one other user,
    /// [`Owner::Any`] for anybody (its mode still decides whether we may open it), checked
    /// against the owner `fstat` reports on the opened file. Every other check of
    /// [`NamedSemaphore::open`] stays.
    pub fn owner(&mut self, owner: Owner) -> &mut NamedOpenOptions {
        self.owner = owner;
        self
    }

    /// Opens the existing semaphore `name` as [`NamedSemaphore::open`] does, with this owner
    /// policy.
    ///
    /// # Errors
    /// As [`NamedSemaphore::open`]; the refusal of another user's semaphore says which
    /// [`Owner`] accepts it.
    ///
    /// # References
    /// - [`sem_open(3)`](https://man7.org/linux/man-pages/man3/sem_open.3.html)
    #[doc(alias = "sem_open")]
    pub fn open(&self, name: impl TryInto<PosixName, Error = Error>) -> Result<NamedSemaphore> {
        let name = check_name(name)?;
        let (sem, file) = open_mapped(&name, self.owner).map_err(|e| {
            let e = e.in_op("sem_open").on(&name);
            tracing::debug!(error = %e, "named semaphore not opened");
            e
        })?;
        tracing::trace!(name = %name, "opened named semaphore");
        Ok(NamedSemaphore::mapped(sem, file, name))
    }
}
