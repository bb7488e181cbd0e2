//! POSIX shared memory objects (`shm_open`): create exclusively with an exact mode, open after
//! checking type, owner and real size on the descriptor ([`OpenOptions`], which also attaches
//! System V segments under the same checks), and unlink.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ipc_core::pipe::descriptor_error;
use ipc_core::{Error, ErrorKind, Owner, PosixKind, PosixName, Removable, Result, ResultExt, knob};
use rustix::fs::{FileType, Mode};
use rustix::shm;

use crate::segment::{Segment, SegmentKind};

/// The mode new segments get unless the caller picks another: owner read and write only.
pub const DEFAULT_MODE: u32 = 0o600;

use ipc_core::fd::SHM_DIR;

fn flags(extra: rustix::fs::OFlags) -> shm::OFlags {
    use rustix::fs::OFlags;
    // rustix's shm_open opens `/dev/shm/NAME` and accepts any `O_*` bit. O_NOFOLLOW refuses a
    // symbolic link planted under the name (glibc's shm_open adds it too); O_NONBLOCK makes
    // the open itself return at once whatever is planted there (a FIFO would otherwise block
    // it until a writer comes), and O_NOCTTY keeps a planted terminal from becoming ours. The
    // type is then checked on the descriptor before anything else uses it (`check_fd`).
    // O_NONBLOCK means nothing for the memory object itself.
    shm::OFlags::from_bits_retain(
        (extra | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC).bits(),
    )
}

/// What a file type is called in an error.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "a file of unknown type",
    }
}

/// The error of a `shm_open` that failed, naming what was found where the kernel's errno
/// tells it: a symbolic link (refused by `O_NOFOLLOW`), a directory, a socket.
fn open_error(e: rustix::io::Errno, name: &PosixName) -> Error {
    use rustix::io::Errno;
    let found = match e {
        Errno::LOOP => Some("a symbolic link (never followed)"),
        Errno::ISDIR => Some("a directory"),
        Errno::NXIO => Some("a socket"),
        _ => None,
    };
    let e = match found {
        Some(found) => Error::with_note(
            ErrorKind::WrongType,
            format!("not a shared memory object: {found} is at that name"),
        )
        .with_source(std::io::Error::from(e)),
        None => descriptor_error(e),
    };
    e.in_op("shm_open").on(name)
}

/// Maps `len` bytes of `fd` from offset 0.
pub(crate) fn map_fd(
    fd: OwnedFd,
    len: usize,
    writable: bool,
    kind: SegmentKind,
) -> Result<Segment> {
    let mut opts = memmap2::MmapOptions::new();
    opts.len(len);
    let map = if writable {
        opts.map_raw(&fd)
    } else {
        opts.map_raw_read_only(&fd)
    }
    .map_err(|e| knob::mapping_error_io(e, len).in_op("mmap").on(&kind))?;
    Ok(Segment::from_mmap(map, fd, writable, kind))
}

/// A POSIX name valid for shared memory (at most `NAME_MAX` bytes after the `/`), refused
/// before any syscall otherwise.
fn shm_name(name: impl TryInto<PosixName, Error = Error>) -> Result<PosixName> {
    let name: PosixName = name.try_into()?;
    name.check_kind(PosixKind::SharedMemory)?;
    Ok(name)
}

/// Checks the descriptor of a segment to be mapped: a regular file (memory object), owned as
/// `owner` says, at least `min_len` bytes and not empty. Returns its real size.
pub(crate) fn check_fd(
    fd: impl AsFd,
    min_len: usize,
    owner: Owner,
    what: &SegmentKind,
) -> Result<usize> {
    let st = rustix::fs::fstat(&fd).ctx("fstat", what)?;
    let file_type = FileType::from_raw_mode(st.st_mode);
    if file_type != FileType::RegularFile {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            format!(
                "not a shared memory object: {} is at that name",
                type_name(file_type)
            ),
        )
        .in_op("open")
        .on(what));
    }
    owner.check(st.st_uid, what)?;
    let size = usize::try_from(st.st_size).map_err(|_| {
        Error::with_note(
            ErrorKind::Corrupted,
            format!("size {} is negative or too large", st.st_size),
        )
        .in_op("open")
        .on(what)
    })?;
    if size == 0 {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            "the object is empty: its creator has not set its size (yet)",
        )
        .in_op("open")
        .on(what));
    }
    if size < min_len {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            format!("the object has {size} bytes, fewer than the {min_len} required"),
        )
        .in_op("open")
        .on(what));
    }
    Ok(size)
}

/// How to open an existing segment, POSIX ([`open`](OpenOptions::open)) or System V
/// ([`sysv_attach`](OpenOptions::sysv_attach)): read-only or not, the least size to accept,
/// and whose segment to accept ([`owner`](OpenOptions::owner)).
///
/// This is the one place an owner policy is given in this crate: [`Segment::open`] and
/// [`Segment::sysv_attach`] are these options with their defaults.
///
/// ```no_run
/// use ipc_shm::{OpenOptions, Owner};
///
/// let seg = OpenOptions::new().read_only(true).min_len(4096).open("/frames")?;
/// assert!(!seg.is_writable() && seg.len() >= 4096);
/// // A segment another user created, on purpose:
/// let theirs = OpenOptions::new().owner(Owner::Uid(1001)).sysv_attach(42)?;
/// # Ok::<(), ipc_shm::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub(crate) read_only: bool,
    pub(crate) min_len: usize,
    pub(crate) owner: Owner,
    pub(crate) wait: Option<std::time::Duration>,
}

impl OpenOptions {
    /// Read-write, any size above zero, owned by this process's effective user
    /// ([`Owner::Me`]).
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Maps the segment read-only (`O_RDONLY`, `PROT_READ`): writes through it are impossible.
    pub fn read_only(&mut self, read_only: bool) -> &mut OpenOptions {
        self.read_only = read_only;
        self
    }

    /// Refuses a segment smaller than `min_len` bytes (before mapping it).
    pub fn min_len(&mut self, min_len: usize) -> &mut OpenOptions {
        self.min_len = min_len;
        self
    }

    /// Whose segment to accept: [`Owner::Me`] by default, [`Owner::Uid`] for one other user,
    /// [`Owner::Any`] for anybody. The owner is the one the kernel reports for the opened
    /// object (`fstat` on the descriptor, `IPC_STAT` on the id), never a second lookup of the
    /// name. Another user's segment is refused by default because its owner could resize,
    /// rewrite or remove it at will, and anyone could create it under the name first.
    pub fn owner(&mut self, owner: Owner) -> &mut OpenOptions {
        self.owner = owner;
        self
    }

    /// Makes [`open`](OpenOptions::open) wait up to `timeout` for a segment of that name to
    /// be made, when there is none yet (for a process that may start before the one that
    /// creates the segment). Anything else at the name is answered at once, as without a wait.
    /// A segment this library creates gets its name only once it is whole, so the one found
    /// is ready to open as a channel or pattern; one made with a plain `shm_open` and
    /// `ftruncate` may be found empty between the two (`WrongType`, "empty": open it again).
    ///
    /// The wait watches `/dev/shm` (`inotify`; where no watch can be set, it looks again in
    /// sleeps of up to 50 ms): no polling loop of your own.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
    /// use ipc_shm::{ChannelOptions, OpenOptions, Receiver, Sender};
    ///
    /// let name = format!("/doc-wait-{}", std::process::id());
    /// // The receiver starts first; the sender's process makes the channel a little later.
    /// let receiver = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || -> ipc_core::Result<Vec<u8>> {
    ///         let seg = OpenOptions::new().wait(Duration::from_secs(10)).open(name.as_str())?;
    ///         let mut rx = Receiver::open(seg)?;
    ///         let mut buf = [0u8; 64];
    ///         let n = rx.recv(&mut buf)?;
    ///         Ok(buf[..n].to_vec())
    ///     }
    /// });
    /// std::thread::sleep(Duration::from_millis(50));
    /// let seg = ChannelOptions::new().capacity(4096).create_posix(name.as_str())?.remove_on_drop();
    /// let mut tx = Sender::open(seg)?;
    /// tx.send(b"hello")?;
    /// assert_eq!(receiver.join().unwrap()?, b"hello");
    ///
    /// // Nobody makes it: `TimedOut`, naming what was waited for.
    /// let none = OpenOptions::new().wait(Duration::from_millis(20)).open("/doc-wait-never");
    /// assert_eq!(none.unwrap_err().kind(), ErrorKind::TimedOut);
    /// # Ok::<(), ipc_core::Error>(())
    /// ```
    pub fn wait(&mut self, timeout: std::time::Duration) -> &mut OpenOptions {
        self.wait = Some(timeout);
        self
    }

    /// Opens the POSIX segment `name` and maps all of it.
    ///
    /// Makes `shm_open(name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)` (or
    /// `O_RDONLY`), so the open returns at once whatever was planted at the name (a FIFO, a
    /// device), then `fstat` on the descriptor, before anything else is done with it: the
    /// object must be a regular memory object, owned as [`owner`](OpenOptions::owner) says,
    /// non-empty and at least
    /// [`min_len`](OpenOptions::min_len) bytes. Then `mmap` of exactly its real size, so no
    /// access can reach past its end. Does not block, unless [`wait`](OpenOptions::wait) says
    /// to wait for the name.
    ///
    /// A POSIX object cannot be sealed: any process that can open it for writing (its owner,
    /// or anyone its mode lets in) can `ftruncate` it smaller later, and this process then
    /// dies of `SIGBUS` when it touches a page past the new end. That holds for a channel in
    /// a POSIX segment too. With a peer you do not trust that far, use a sealed memfd segment
    /// ([`Segment::memfd`], [`Segment::adopt`]).
    ///
    /// Errors: [`ErrorKind::InvalidName`] for a malformed name or one longer than `NAME_MAX`
    /// (255) bytes after the `/` (before any syscall), [`ErrorKind::NotFound`] if no
    /// such segment exists ([`ErrorKind::TimedOut`] after a [`wait`](OpenOptions::wait) for
    /// it), [`ErrorKind::WrongType`] for anything at the name that is not a
    /// memory object (a symbolic link, FIFO, socket, directory or device: the error names the
    /// type found) or an empty or too small one, [`ErrorKind::PermissionDenied`] for mode bits
    /// that forbid the access or a foreign owner.
    ///
    /// # References
    /// - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html)
    /// - [`fstat(2)`](https://man7.org/linux/man-pages/man2/fstat.2.html)
    /// - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "shm_open")]
    pub fn open(&self, name: impl TryInto<PosixName, Error = Error>) -> Result<Segment> {
        let name = shm_name(name)?;
        let Some(timeout) = self.wait else {
            return self.open_now(&name);
        };
        let found = ipc_core::fd::wait_for_name(
            std::path::Path::new(ipc_core::fd::SHM_DIR),
            ipc_core::Deadline::after(timeout),
            || match self.open_now(&name) {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                other => other.map(Some),
            },
        )
        .map_err(|e| e.on(SegmentKind::Posix(name.clone())))?;
        found.ok_or_else(|| {
            Error::with_note(
                ErrorKind::TimedOut,
                format!("no shared memory segment {name} was made within {timeout:?}"),
            )
            .in_op("open (waiting for the name)")
            .on(SegmentKind::Posix(name.clone()))
        })
    }

    /// [`open`](OpenOptions::open) of `name`, once, without waiting.
    fn open_now(&self, name: &PosixName) -> Result<Segment> {
        let name = name.clone();
        let kind = SegmentKind::Posix(name.clone());
        let access = if self.read_only {
            rustix::fs::OFlags::RDONLY
        } else {
            rustix::fs::OFlags::RDWR
        };
        let fd = shm::open(name.as_c_str(), flags(access), Mode::empty()).map_err(|e| {
            let e = open_error(e, &name);
            tracing::debug!(error = %e, "open shared memory failed");
            e
        })?;
        let size = check_fd(&fd, self.min_len.max(1), self.owner, &kind)
            .inspect_err(|e| tracing::debug!(error = %e, "open shared memory refused"))?;
        let seg = map_fd(fd, size, !self.read_only, kind)?;
        tracing::trace!(%name, size, read_only = self.read_only, "opened POSIX shared memory");
        Ok(seg)
    }
}

/// [`ErrorKind::AlreadyExists`] for a create whose name is taken: most often by the segment of
/// an earlier run that crashed, so the note says how to find out and how to remove it.
fn name_taken(name: &PosixName) -> Error {
    Error::with_note(
        ErrorKind::AlreadyExists,
        format!(
            "something is at {name} already (left by an earlier run? `ipc inspect {name}` says \
             what and who uses it; `ipc clean --stale {name}` or Segment::unlink removes a \
             segment nobody uses)"
        ),
    )
    .with_source(std::io::Error::from_raw_os_error(libc::EEXIST))
}

impl Segment {
    /// Creates the POSIX segment `name` of `size` bytes with mode `0o600`, and maps it.
    ///
    /// Same as [`create_with_mode`](Segment::create_with_mode) with [`DEFAULT_MODE`].
    #[doc(alias = "shm_open")]
    pub fn create(name: impl TryInto<PosixName, Error = Error>, size: usize) -> Result<Segment> {
        Segment::create_with_mode(name, size, DEFAULT_MODE)
    }

    /// Creates the POSIX segment `name` of `size` bytes with exactly `mode` (the umask does not
    /// apply), filled with zeros, and maps it read-write.
    ///
    /// The segment is made whole before it gets its name: an unnamed file in `/dev/shm`
    /// (`open(O_TMPFILE)`, where `shm_open` keeps its objects), `fchmod(mode)` (so the umask
    /// cannot narrow the mode asked for), `ftruncate(size)`, `fallocate(size)` and `mmap`, and
    /// only then a link under the name (`linkat`), which fails if anything is there (a
    /// segment somebody else created, a symbolic link planted at the name). So no other
    /// process ever opens a segment of the wrong size or mode, and a creator killed at any
    /// step leaves nothing behind. Does not block.
    ///
    /// Every page is reserved here (`fallocate`), because tmpfs lets a file grow past the
    /// mount's free space and a page it then has no room for kills the process that touches
    /// it with `SIGBUS`. So the memory is taken at creation, not at first use, and a full
    /// `/dev/shm` is an error now instead of a crash later.
    ///
    /// The name stays until [`Segment::unlink`] (or [`Segment::remove_on_drop`]) removes it;
    /// the memory stays until the last mapping of it is gone too.
    ///
    /// Errors: [`ErrorKind::InvalidName`] (also for a name longer than `NAME_MAX`, 255 bytes,
    /// after the `/`, before any syscall), [`ErrorKind::InvalidInput`] for a size of 0 or a
    /// mode with bits beyond `0o777`, [`ErrorKind::AlreadyExists`] if the name is taken (looked
    /// at before the memory is reserved, and decided by the link),
    /// [`ErrorKind::LimitExceeded`] naming `/dev/shm`'s free space if it has no room for `size`
    /// bytes.
    ///
    /// # References
    /// - [`open(2)`, `O_TMPFILE`](https://man7.org/linux/man-pages/man2/open.2.html)
    /// - [`ftruncate(2)`](https://man7.org/linux/man-pages/man2/ftruncate.2.html)
    /// - [`fallocate(2)`](https://man7.org/linux/man-pages/man2/fallocate.2.html)
    /// - [`linkat(2)`](https://man7.org/linux/man-pages/man2/linkat.2.html)
    #[doc(alias = "shm_open")]
    pub fn create_with_mode(
        name: impl TryInto<PosixName, Error = Error>,
        size: usize,
        mode: u32,
    ) -> Result<Segment> {
        Segment::create_then(&shm_name(name)?, size, mode, |_| Ok(()))
    }

    /// [`create_with_mode`](Segment::create_with_mode), with `init` run on the new segment
    /// before it gets its name: other processes see the segment with its header laid out, or
    /// not at all. The one way a named segment is made (the patterns lay out their headers in
    /// `init`).
    pub(crate) fn create_then(
        name: &PosixName,
        size: usize,
        mode: u32,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        name.check_kind(PosixKind::SharedMemory)?;
        let fail = |e: Error, op: &'static str| {
            let e = e.in_op(op).on(name);
            tracing::debug!(error = %e, "create shared memory failed");
            e
        };
        if size == 0 || mode & !0o777 != 0 {
            return Err(fail(
                Error::with_note(
                    ErrorKind::InvalidInput,
                    format!("size {size} must be above 0 and mode {mode:#o} within 0o777"),
                ),
                "create shared memory",
            ));
        }
        let path = std::path::Path::new(SHM_DIR).join(name.file_name());
        if rustix::fs::lstat(&path).is_ok() {
            return Err(fail(name_taken(name), "create shared memory"));
        }
        let fd = ipc_core::fd::create_unnamed_shm(mode, size as u64).map_err(|e| {
            let e = e.on(name);
            tracing::debug!(error = %e, "create shared memory failed");
            e
        })?;
        let seg = map_fd(fd, size, true, SegmentKind::Posix(name.clone()))?;
        init(&seg)?;
        let fd = seg.fd().expect("a POSIX segment keeps its descriptor");
        ipc_core::fd::link_unnamed(fd, &path).map_err(|e| {
            let e = match e.kind() {
                ErrorKind::AlreadyExists => name_taken(name).in_op("linkat"),
                _ => e,
            };
            let e = e.on(name);
            tracing::debug!(error = %e, "create shared memory failed");
            e
        })?;
        tracing::trace!(%name, size, "created POSIX shared memory");
        Ok(seg)
    }

    /// Opens the existing POSIX segment `name` read-write; see [`OpenOptions::open`].
    #[doc(alias = "shm_open")]
    pub fn open(name: impl TryInto<PosixName, Error = Error>) -> Result<Segment> {
        OpenOptions::new().open(name)
    }

    /// Opens the existing POSIX segment `name` read-only; see [`OpenOptions::open`].
    #[doc(alias = "shm_open")]
    pub fn open_read_only(name: impl TryInto<PosixName, Error = Error>) -> Result<Segment> {
        OpenOptions::new().read_only(true).open(name)
    }

    /// Removes the name `name` (`shm_unlink`). Processes that have the segment mapped keep
    /// it; the memory is freed when the last mapping goes. Does not block.
    ///
    /// Errors: [`ErrorKind::InvalidName`], [`ErrorKind::NotFound`] if no such name exists.
    ///
    /// # References
    /// - [`shm_unlink(3)`](https://man7.org/linux/man-pages/man3/shm_unlink.3.html)
    #[doc(alias = "shm_unlink")]
    pub fn unlink(name: impl TryInto<PosixName, Error = Error>) -> Result<()> {
        Removable::Shm(shm_name(name)?).remove()
    }
}

/// What removes the name `name` while it still names the object open at `fd` (rustix's
/// `shm_*` keep objects in `/dev/shm`): its device and inode, compared just before the unlink;
/// by name only if `fstat` fails.
pub(crate) fn same_object(name: &PosixName, fd: BorrowedFd<'_>) -> Removable {
    match rustix::fs::fstat(fd) {
        Ok(st) => Removable::SameFile {
            path: std::path::Path::new(SHM_DIR).join(name.file_name()),
            dev: st.st_dev,
            ino: st.st_ino,
        },
        Err(_) => Removable::Shm(name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "shm_open is beyond Miri")]
    fn a_name_too_long_for_shm_open_is_refused_before_any_syscall() {
        // 255 bytes after the '/': a valid POSIX name, one byte too long for shm_open.
        let name = format!("/{}", "n".repeat(ipc_core::NAME_MAX));
        let checks: [(&str, Result<()>); 4] = [
            ("create", Segment::create(name.as_str(), 4096).map(drop)),
            ("open", Segment::open(name.as_str()).map(drop)),
            (
                "open read-only",
                OpenOptions::new()
                    .read_only(true)
                    .owner(Owner::Any)
                    .open(name.as_str())
                    .map(drop),
            ),
            ("unlink", Segment::unlink(name.as_str())),
        ];
        for (what, r) in checks {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{what}: {e}");
            // Refused by the name check, not by the kernel or rustix.
            assert_eq!(e.op(), Some("validate name"), "{what}: {e}");
            assert_eq!(e.raw_os_error(), None, "{what}: {e}");
        }
    }
}
