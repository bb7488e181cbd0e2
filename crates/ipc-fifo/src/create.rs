//! Creating a FIFO: [`Fifo`], the creator's guard that unlinks it on drop, and
//! [`CreateOptions`] for the mode.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ipc_core::pipe::descriptor_error;
use ipc_core::{Error, ErrorKind, Result};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, fstat, mkfifoat, openat, statat, unlinkat};
use rustix::io::Errno;

use crate::Owner;
use crate::open::{Target, check_fifo, debug_err};

/// The mode a FIFO is created with unless the caller asks otherwise: read and write for the
/// owner only.
pub const DEFAULT_MODE: u32 = 0o600;

/// Options for creating a FIFO; see [`Fifo::create`] for the defaults.
///
/// # How the mode is set exactly and without a race
///
/// `mkfifo(3)` applies the process umask, so a FIFO asked for as `0o660` may come out `0o640`.
/// Setting the mode afterwards by path (`chmod`) would race: between the two calls, anyone who
/// can write to the directory could replace the FIFO with a symbolic link and the `chmod`
/// would change the link's target instead. Changing the umask instead is process-wide and
/// races with every other thread that creates files.
///
/// So the FIFO is made with `mkfifoat` in a directory handle, then taken with
/// `openat(O_PATH | O_NOFOLLOW)` (no I/O open, never blocks, never follows a link), checked with
/// `fstat` (a FIFO, ours), and its mode set through the handle (`chmod` of the handle's
/// `/proc/self/fd/N` magic link, which names the inode itself, not the path; without `/proc`,
/// `fchmod` on a non-blocking read-only open of the same inode). In the window before the
/// mode is set, the FIFO's mode is the owner's bits of the requested mode, narrowed by the
/// umask: never wider than asked, so nobody gets access they would not have afterwards.
///
/// A default ACL on the directory takes the umask's place and gives the new FIFO an access ACL
/// of its own (named users and groups, the owning group's entry, counting through the mask the
/// group bits show). It is removed through the same handle before the group and other bits are
/// set (they are 0 until then, so its entries grant nothing meanwhile): the mode alone decides
/// who may open the FIFO, exactly. An `fchmodat` by path is not
/// used: Linux's `fchmodat` follows symbolic links and ignores `AT_SYMLINK_NOFOLLOW` before
/// `fchmodat2` (Linux 6.6).
///
/// # Example
///
/// ```
/// use std::os::unix::fs::{FileTypeExt, PermissionsExt};
/// use ipc_fifo::CreateOptions;
///
/// let dir = std::env::temp_dir().join(format!("ipc-fifo-doc-mode-{}", std::process::id()));
/// std::fs::create_dir(&dir)?;
/// // Exactly 0o620, whatever the umask is.
/// let fifo = CreateOptions::new().mode(0o620).create(dir.join("requests"))?;
/// let meta = std::fs::symlink_metadata(fifo.path())?;
/// assert!(meta.file_type().is_fifo());
/// assert_eq!(meta.permissions().mode() & 0o777, 0o620);
/// drop(fifo); // unlinks it
/// std::fs::remove_dir(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct CreateOptions {
    mode: u32,
}

impl Default for CreateOptions {
    fn default() -> CreateOptions {
        CreateOptions::new()
    }
}

impl CreateOptions {
    /// Mode [`DEFAULT_MODE`] (`0o600`).
    pub fn new() -> CreateOptions {
        CreateOptions { mode: DEFAULT_MODE }
    }

    /// The permission bits the FIFO gets, exactly (the umask does not narrow them). Only the
    /// bits `0o777` are accepted.
    pub fn mode(&mut self, mode: u32) -> &mut CreateOptions {
        self.mode = mode;
        self
    }

    /// Creates a FIFO at `path` and returns the guard that unlinks it on drop.
    ///
    /// Makes `mkfifoat(2)` in the parent directory, then sets the mode through an `O_PATH`
    /// handle on the new FIFO (see [above](CreateOptions#how-the-mode-is-set-exactly-and-without-a-race) for why this is race-free).
    /// Never blocks. Symbolic links in the parent directories are followed; the last component
    /// never is (`mkfifo` fails with `EEXIST` on any existing entry, a link included).
    ///
    /// # Errors
    /// - [`ErrorKind::AlreadyExists`]: something (anything) is at `path` already.
    /// - [`ErrorKind::NotFound`]: the parent directory does not exist.
    /// - [`ErrorKind::PermissionDenied`]: the directory is not writable for this process.
    /// - [`ErrorKind::InvalidInput`]: the mode has bits outside `0o777`.
    /// - [`ErrorKind::InvalidName`]: `path` has no file name (it ends in `..` or is `/`), or
    ///   ends in `/` or `/.` (it names a directory; `mkfifo(3)` refuses it too).
    /// - [`ErrorKind::LimitExceeded`]: the process is out of descriptors (naming
    ///   `RLIMIT_NOFILE` and its value), or the system is (`/proc/sys/fs/file-max`); checked
    ///   before the FIFO is made, so nothing is left at `path`.
    ///
    /// # References
    /// - [`mkfifo(3)`](https://man7.org/linux/man-pages/man3/mkfifo.3.html),
    ///   [`mknodat(2)`](https://man7.org/linux/man-pages/man2/mknodat.2.html)
    /// - [`open(2)`](https://man7.org/linux/man-pages/man2/open.2.html) (`O_PATH`)
    #[doc(alias = "mkfifo")]
    #[doc(alias = "mkfifoat")]
    pub fn create(&self, path: impl AsRef<Path>) -> Result<Fifo> {
        let path = path.as_ref();
        let op = "create FIFO";
        let fail = |e: Error| debug_err(e.in_op(op).on(path.display()));
        if self.mode & !0o777 != 0 {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidInput,
                format!("mode {:#o} has bits outside 0o777", self.mode),
            )));
        }
        // `Path` hides a trailing `/` or `/.` (`file_name` of `dir/name/` is `name`), but to
        // the kernel such a path names a directory, and `mkfifo(3)` fails on it (`ENOENT`, or
        // `EEXIST`). Refuse it the same way rather than create `dir/name`.
        let raw = path.as_os_str().as_bytes();
        if raw.ends_with(b"/") || raw.ends_with(b"/.") || raw == b"." {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidName,
                "the path ends in '/' or '/.', so it names a directory, not a new file \
                 (mkfifo(3) refuses it too)",
            )));
        }
        let Some(name) = path.file_name() else {
            return Err(fail(Error::with_note(
                ErrorKind::InvalidName,
                "the path has no file name",
            )));
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = openat(
            CWD,
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(descriptor_error(e)))?;
        // The descriptor of the handle below, taken before the FIFO exists: a process out of
        // descriptors (RLIMIT_NOFILE) fails here with nothing created, not after `mkfifoat`
        // (which needs none) with a FIFO at the path that nobody would remove. (Another thread
        // could take the number between its release and the `openat`; then that fails as
        // before.)
        let reserved =
            rustix::io::fcntl_dupfd_cloexec(&dir, 0).map_err(|e| fail(descriptor_error(e)))?;
        let mode = Mode::from_raw_mode(self.mode);
        // Made with the owner's bits only: a default ACL on the directory (which takes the
        // umask's place) gives the new FIFO an access ACL whose named entries and owning
        // group count through its mask, the group bits, which are 0 now; the ACL is removed
        // below before the group and other bits are set. Never wider than asked meanwhile.
        mkfifoat(&dir, name, Mode::from_raw_mode(self.mode & 0o700))
            .map_err(|e| fail(Error::from(e)))?;
        drop(reserved);
        tracing::trace!(path = %path.display(), mode = format_args!("{:#o}", self.mode), "FIFO created");

        // Take a handle on what is at the name now and check it is the FIFO we made, before
        // anything else (someone with write access to the directory may have swapped it).
        let handle = openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(descriptor_error(e)))?;
        let stat = fstat(&handle).map_err(|e| fail(Error::from(e)))?;
        check_fifo(&stat, Owner::Me).map_err(|e| {
            fail(e.with_detail(ipc_core::Detail::Note(
                "the new FIFO was replaced right after mkfifo; left alone".into(),
            )))
        })?;
        // From here on the guard owns it: a failure below unlinks it.
        let fifo = Fifo {
            path: path.to_path_buf(),
            unlink: Some(Unlink {
                handle,
                dir,
                name: name.to_os_string(),
                dev: stat.st_dev,
                ino: stat.st_ino,
            }),
        };
        drop_access_acl(&fifo).map_err(fail)?;
        if stat.st_mode & 0o7777 != self.mode {
            set_mode(&fifo, mode).map_err(fail)?;
        }
        Ok(fifo)
    }
}

/// The access ACL a new file inherits from a default ACL on its directory.
const ACL_ACCESS: &str = "system.posix_acl_access";

/// The unlink record of a FIFO just made, and the `/proc/self/fd/N` magic link of its `O_PATH`
/// handle, through which it is changed without a path lookup.
fn fresh(fifo: &Fifo) -> (&Unlink, String) {
    let u = fifo
        .unlink
        .as_ref()
        .expect("a fresh guard has its unlink record");
    let magic = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&u.handle)
    );
    (u, magic)
}

/// Removes the access ACL the FIFO behind the guard may have inherited from a default ACL on
/// the directory (named users and groups beyond the mode, the owning group's entry apart from
/// the mode's group bits), so that the mode alone decides who may open it, exactly; through
/// the guard's handle, without a path lookup (`removexattr` of the `/proc/self/fd/N` magic
/// link; without `/proc`, `fremovexattr` on an open of the same inode).
fn drop_access_acl(fifo: &Fifo) -> Result<()> {
    let (u, magic) = fresh(fifo);
    let r = match rustix::fs::removexattr(&magic, ACL_ACCESS) {
        // No /proc: a real open of the same inode.
        Err(Errno::NOENT) => rustix::fs::fremovexattr(open_own(u, "remove its ACL")?, ACL_ACCESS),
        r => r,
    };
    match r {
        // None inherited, or a filesystem without ACLs.
        Ok(()) | Err(Errno::NODATA | Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(Error::from(e).in_op("removexattr(system.posix_acl_access)")),
    }
}

/// A non-blocking read-only open of the FIFO the guard made, checked to be that inode (for
/// changes to it without `/proc`; `what` says which, in errors).
fn open_own(u: &Unlink, what: &str) -> Result<OwnedFd> {
    // A non-blocking read-only open of a FIFO never blocks; O_NOFOLLOW and the inode check
    // make sure it is the FIFO we made.
    let fd = openat(
        &u.dir,
        &u.name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        descriptor_error(e).in_op(format!(
            "open to {what} (no /proc: needs read permission after the umask)"
        ))
    })?;
    let st = fstat(&fd)?;
    if (st.st_dev, st.st_ino) != (u.dev, u.ino) {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            format!("the new FIFO was replaced before it could {what}"),
        ));
    }
    Ok(fd)
}

/// Sets `mode` on the FIFO behind the guard's `O_PATH` handle without a path lookup.
fn set_mode(fifo: &Fifo, mode: Mode) -> Result<()> {
    let (u, magic) = fresh(fifo);
    match rustix::fs::chmod(&magic, mode) {
        Ok(()) => return Ok(()),
        Err(Errno::NOENT) => {} // No /proc: fall back to a real open of the same inode.
        Err(e) => return Err(Error::from(e).in_op("chmod")),
    }
    let fd = open_own(u, "set its mode")?;
    rustix::fs::fchmod(fd.as_fd(), mode).map_err(|e| Error::from(e).in_op("fchmod"))
}

/// What a guard needs to unlink its FIFO: the directory, the name, and the identity of the
/// FIFO it made, so it never unlinks something else that took the name since.
struct Unlink {
    /// An `O_PATH` handle on the FIFO: while it is open the inode cannot be freed, so its
    /// number cannot be reused by a file that takes the name after ours was removed.
    handle: OwnedFd,
    dir: OwnedFd,
    name: OsString,
    dev: u64,
    ino: u64,
}

/// A FIFO this process created; unlinks it on drop.
///
/// Opening the FIFO is separate: [`OpenOptions::open_read`](crate::OpenOptions::open_read) and
/// [`open_write`](crate::OpenOptions::open_write) take a `Fifo` as a path (it is
/// `AsRef<Path>`), or use the shortcuts [`open_read`](Fifo::open_read) and
/// [`open_write`](Fifo::open_write). Ends that are open keep working after the FIFO is
/// unlinked: the name is only needed to open it.
///
/// Dropping the guard unlinks the path if it is still the FIFO the guard made (same device and
/// inode; something else that took the name since is left alone). [`keep`](Fifo::keep) lets
/// the FIFO outlive the guard; [`unlink`](Fifo::unlink) removes it now and reports errors.
///
/// This is the creator's guard, and it is stricter than the workspace's generic
/// [`RemoveGuard`](ipc_core::RemoveGuard): [`Removable::Path`](ipc_core::Removable::Path)
/// unlinks whatever the path names when it runs, while `Fifo` unlinks only the inode it made
/// (relative to the directory handle it holds). To hand a FIFO to the generic guard anyway
/// (one that somebody else made, say), `RemoveGuard::new(Removable::Path(fifo.keep()))`.
pub struct Fifo {
    path: PathBuf,
    /// `None` once kept or unlinked.
    unlink: Option<Unlink>,
}

impl fmt::Debug for Fifo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fifo")
            .field("path", &self.path)
            .field("unlink_on_drop", &self.unlink.is_some())
            .finish()
    }
}

impl Fifo {
    /// Creates a FIFO at `path` with mode `0o600` (exactly, whatever the umask): see
    /// [`CreateOptions::create`], which this is a shortcut for.
    ///
    /// ```
    /// use ipc_fifo::ErrorKind;
    /// use ipc_fifo::Fifo;
    ///
    /// let path = std::env::temp_dir().join(format!("ipc-fifo-doc-create-{}", std::process::id()));
    /// let fifo = Fifo::create(&path)?;
    /// assert_eq!(Fifo::create(&path).unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// drop(fifo);
    /// assert!(!path.exists());
    /// # Ok::<(), ipc_fifo::Error>(())
    /// ```
    #[doc(alias = "mkfifo")]
    pub fn create(path: impl AsRef<Path>) -> Result<Fifo> {
        CreateOptions::new().create(path)
    }

    /// The path the FIFO was created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the FIFO for reading with the default [`OpenOptions`](crate::OpenOptions): waits
    /// for a writer. See [`open_read_with`](Fifo::open_read_with).
    pub fn open_read(&self) -> Result<crate::FifoReader> {
        self.open_read_with(&crate::OpenOptions::new())
    }

    /// Opens the FIFO for writing with the default [`OpenOptions`](crate::OpenOptions): waits
    /// for a reader. See [`open_write_with`](Fifo::open_write_with).
    pub fn open_write(&self) -> Result<crate::FifoWriter> {
        self.open_write_with(&crate::OpenOptions::new())
    }

    /// Opens the FIFO this guard made for reading, with `options`.
    ///
    /// Unlike [`OpenOptions::open_read`](crate::OpenOptions::open_read) with the path, this
    /// opens the guard's own FIFO through the handle it holds: no path lookup at all, so it
    /// works even after the FIFO was unlinked or its name taken by something else.
    ///
    /// # Errors
    /// As [`OpenOptions::open_read`](crate::OpenOptions::open_read); the FIFO is this
    /// process's, so the type and owner checks pass unless `options` asks for another owner.
    pub fn open_read_with(&self, options: &crate::OpenOptions) -> Result<crate::FifoReader> {
        let deadline = options.deadline();
        options.read_target(self.target(options, "open FIFO for reading")?, deadline)
    }

    /// Opens the FIFO this guard made for writing, with `options`; see
    /// [`open_read_with`](Fifo::open_read_with).
    pub fn open_write_with(&self, options: &crate::OpenOptions) -> Result<crate::FifoWriter> {
        let deadline = options.deadline();
        options.write_target(self.target(options, "open FIFO for writing")?, deadline)
    }

    pub(crate) fn target(&self, options: &crate::OpenOptions, op: &'static str) -> Result<Target> {
        let Some(u) = &self.unlink else {
            unreachable!("a guard's unlink record lives until the guard is consumed or dropped")
        };
        let handle = rustix::io::fcntl_dupfd_cloexec(&u.handle, 0)
            .map_err(|e| debug_err(descriptor_error(e).in_op("dup").on(self.path.display())))?;
        Target::from_handle(handle, &self.path, options.owner_setting(), op)
    }

    /// Gives up the guard: the FIFO stays after this, and its path is returned.
    pub fn keep(mut self) -> PathBuf {
        self.unlink = None;
        std::mem::take(&mut self.path)
    }

    /// Unlinks the FIFO now (`unlinkat(2)`), if the path still names the FIFO this guard made.
    ///
    /// # Errors
    /// - [`ErrorKind::NotFound`]: the path was already removed.
    /// - [`ErrorKind::WrongType`]: the path names something else now; it is left alone.
    /// - [`ErrorKind::PermissionDenied`]: the directory does not let this process remove it.
    ///
    /// # References
    /// - [`unlinkat(2)`](https://man7.org/linux/man-pages/man2/unlinkat.2.html)
    #[doc(alias = "unlinkat")]
    pub fn unlink(mut self) -> Result<()> {
        self.unlink_now()
            .map_err(|e| debug_err(e.in_op("unlink FIFO").on(self.path.display())))
    }

    fn unlink_now(&mut self) -> Result<()> {
        let Some(u) = self.unlink.take() else {
            return Ok(());
        };
        let st = statat(&u.dir, &u.name, AtFlags::SYMLINK_NOFOLLOW)?;
        if (st.st_dev, st.st_ino) != (u.dev, u.ino) {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                "the path names another file now; left alone",
            ));
        }
        unlinkat(&u.dir, &u.name, AtFlags::empty())?;
        tracing::trace!(path = %self.path.display(), "FIFO unlinked");
        Ok(())
    }
}

impl AsRef<Path> for Fifo {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if self.unlink.is_some() {
            if let Err(e) = self.unlink_now() {
                if e.kind() != ErrorKind::NotFound {
                    tracing::debug!(path = %self.path.display(), error = %e, "FIFO not unlinked on drop");
                }
            }
        }
    }
}
