//! System V shared memory (`shmget`/`shmat`/`shmdt`/`shmctl(IPC_RMID)`), for interop with
//! programs that still use it, and [`SysvGuard`] that removes a segment on drop.

use ipc_core::{Error, ErrorKind, Result};
use rustix::io::Errno;

use crate::segment::{Segment, SegmentKind};
use crate::sys;

/// A System V IPC key: [`SysvKey::Private`] for a segment only reachable by its id, or a
/// number (as `ftok` makes) that other programs can find it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysvKey {
    /// `IPC_PRIVATE`: always a new segment, found only by its id.
    Private,
    /// A key other programs can use with `shmget`.
    Key(i32),
}

impl SysvKey {
    fn raw(self) -> libc::key_t {
        match self {
            SysvKey::Private => libc::IPC_PRIVATE,
            SysvKey::Key(k) => k,
        }
    }
}

/// `/proc/sys/kernel/shmmax`: the largest System V segment, in bytes.
const SHMMAX: &str = "/proc/sys/kernel/shmmax";
/// `/proc/sys/kernel/shmall`: the pages all System V segments of the IPC namespace may take.
const SHMALL: &str = "/proc/sys/kernel/shmall";
/// `/proc/sys/kernel/shmmni`: how many System V segments the IPC namespace may hold.
const SHMMNI: &str = "/proc/sys/kernel/shmmni";
/// The segments of this process's IPC namespace, one line each after a header line.
const SYSVIPC_SHM: &str = "/proc/sysvipc/shm";

/// How many segments exist in this IPC namespace, if `/proc/sysvipc/shm` can be read.
fn segments_in_use() -> Option<u64> {
    let text = std::fs::read_to_string(SYSVIPC_SHM).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count() as u64,
    )
}

fn shmget_error(e: Errno, size: usize, what: String) -> Error {
    let src = || std::io::Error::from_raw_os_error(e.raw_os_error());
    let err = match e {
        // EINVAL: size above SHMMAX (or below SHMMIN, 1, which `sysv_create` refuses first).
        Errno::INVAL if ipc_core::knob::read(SHMMAX).is_some_and(|max| size as u64 > max) => {
            ipc_core::knob::limit_error(SHMMAX).with_source(src())
        }
        // ENOSPC: either every id is in use (SHMMNI) or the namespace's page total would pass
        // SHMALL. Which one: count the segments; when the count is unknown, the size decides
        // (a segment larger than SHMALL pages can never fit).
        Errno::NOSPC => {
            let mni = ipc_core::knob::read(SHMMNI);
            let used = segments_in_use();
            let out_of_ids = match (used, mni) {
                (Some(used), Some(mni)) => used >= mni,
                _ => false,
            };
            if out_of_ids {
                ipc_core::knob::limit_error(SHMMNI).with_source(src())
            } else {
                ipc_core::knob::limit_error(SHMALL).with_source(src())
            }
        }
        e => Error::from(e),
    };
    let err = err.in_op("shmget").on(what);
    tracing::debug!(error = %err, "shmget failed");
    err
}

fn attach(id: i32, read_only: bool, min_len: usize, any_owner: bool) -> Result<Segment> {
    let kind = SegmentKind::SysV { id };
    let st = sys::shm_stat(id).map_err(|e| Error::from(e).in_op("shmctl(IPC_STAT)").on(&kind))?;
    let me = rustix::process::geteuid().as_raw();
    if !any_owner && st.uid != me {
        return Err(Error::with_note(
            ErrorKind::PermissionDenied,
            format!(
                "owned by uid {}, not by this process's uid {me}; \
                 Segment::sysv_attach_any_owner attaches it anyway",
                st.uid
            ),
        )
        .in_op("shmat")
        .on(&kind));
    }
    if st.size < min_len.max(1) {
        return Err(Error::with_note(
            ErrorKind::WrongType,
            format!(
                "the segment has {} bytes, fewer than the {min_len} required",
                st.size
            ),
        )
        .in_op("shmat")
        .on(&kind));
    }
    let addr = sys::shmat(id, read_only).map_err(|e| {
        let e = Error::from(e).in_op("shmat").on(&kind);
        tracing::debug!(error = %e, "shmat failed");
        e
    })?;
    tracing::trace!(id, size = st.size, read_only, "attached System V segment");
    // The kernel maps whole pages, but only `size` bytes are the segment's: stay within them.
    Ok(Segment::from_sysv(addr, st.size, !read_only, id))
}

impl Segment {
    /// Creates a System V segment of `size` bytes with mode `0o600` and attaches it
    /// read-write. With a [`SysvKey::Key`], fails if a segment with that key exists
    /// (`IPC_EXCL`). [`sysv_create_with_mode`](Segment::sysv_create_with_mode) takes the mode.
    ///
    /// Makes `shmget(key, size, IPC_CREAT | IPC_EXCL | 0600)` and `shmat`. The segment
    /// stays until removed with [`Segment::sysv_remove`] or a [`SysvGuard`], even after every
    /// process detached: System V segments are not reference-counted like memfds.
    ///
    /// Errors: [`ErrorKind::AlreadyExists`] for a key in use, [`ErrorKind::LimitExceeded`]
    /// naming the knob and its value: `/proc/sys/kernel/shmmax` for a size above it,
    /// `/proc/sys/kernel/shmmni` when the IPC namespace has that many segments,
    /// `/proc/sys/kernel/shmall` when the pages of all segments would pass it.
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    #[doc(alias = "shmget")]
    pub fn sysv_create(key: SysvKey, size: usize) -> Result<Segment> {
        Segment::sysv_create_with_mode(key, size, 0o600)
    }

    /// [`sysv_create`](Segment::sysv_create) with permission bits `mode` (at most `0o777`;
    /// System V modes are exact, no umask applies).
    ///
    /// Errors: as `sysv_create`, and [`ErrorKind::InvalidInput`] for bits beyond `0o777`,
    /// before any system call.
    #[doc(alias = "shmget")]
    pub fn sysv_create_with_mode(key: SysvKey, size: usize, mode: u32) -> Result<Segment> {
        let what = format!("System V key {key:?}");
        if size == 0 {
            return Err(
                Error::with_note(ErrorKind::InvalidInput, "size must be above 0")
                    .in_op("shmget")
                    .on(what),
            );
        }
        if mode & !0o777 != 0 {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                format!("mode {mode:#o} has bits beyond 0o777 (permission bits only)"),
            )
            .in_op("shmget")
            .on(what));
        }
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode as libc::c_int;
        let id = sys::shmget(key.raw(), size, flags).map_err(|e| shmget_error(e, size, what))?;
        tracing::trace!(
            id,
            size,
            mode = format_args!("{mode:#o}"),
            "created System V segment"
        );
        // Our own new segment: the owner is us (root included), so no owner check is needed.
        attach(id, false, size, true).inspect_err(|_| {
            let _ = sys::shm_rmid(id);
        })
    }

    /// The id of the existing segment with `key` (`shmget(key, 0, 0)`), to attach with
    /// [`sysv_attach`](Segment::sysv_attach).
    ///
    /// Errors: [`ErrorKind::NotFound`] if no segment has that key.
    #[doc(alias = "shmget")]
    pub fn sysv_lookup(key: i32) -> Result<i32> {
        sys::shmget(key, 0, 0).map_err(|e| shmget_error(e, 0, format!("System V key {key}")))
    }

    /// Attaches the existing System V segment `id`, read-write or read-only, after checking
    /// with `shmctl(IPC_STAT)` that it is owned by this user and at least `min_len` bytes.
    /// Only the segment's own size is accessible, not the rest of its last page.
    ///
    /// A segment owned by another user is refused: its owner can change its mode, or remove
    /// it and let another take the id, at will. To attach one anyway, use
    /// [`sysv_attach_any_owner`](Segment::sysv_attach_any_owner).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] or [`ErrorKind::Disconnected`] for an id that does
    /// not exist or was removed, [`ErrorKind::PermissionDenied`] for a foreign owner or mode,
    /// [`ErrorKind::WrongType`] if it is smaller than `min_len`.
    ///
    /// # References
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "shmat")]
    pub fn sysv_attach(id: i32, read_only: bool, min_len: usize) -> Result<Segment> {
        attach(id, read_only, min_len, false)
    }

    /// [`sysv_attach`](Segment::sysv_attach) without the owner check: attaches a segment
    /// whatever user owns it (its mode still decides whether the kernel lets us).
    #[doc(alias = "shmat")]
    pub fn sysv_attach_any_owner(id: i32, read_only: bool, min_len: usize) -> Result<Segment> {
        attach(id, read_only, min_len, true)
    }

    /// The System V id, for a System V segment.
    pub fn sysv_id(&self) -> Option<i32> {
        match self.kind() {
            SegmentKind::SysV { id } => Some(*id),
            _ => None,
        }
    }

    /// Marks System V segment `id` for removal (`shmctl(IPC_RMID)`): it disappears once the
    /// last process detaches. Does not block.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_RMID")]
    pub fn sysv_remove(id: i32) -> Result<()> {
        sys::shm_rmid(id).map_err(|e| {
            let e = Error::from(e)
                .in_op("shmctl(IPC_RMID)")
                .on(SegmentKind::SysV { id });
            tracing::debug!(error = %e, "remove System V segment failed");
            e
        })?;
        tracing::trace!(id, "removed System V segment");
        Ok(())
    }
}

/// Removes a System V segment (`IPC_RMID`) when dropped, also when unwinding from a panic.
#[derive(Debug)]
#[must_use = "the segment is removed when the guard is dropped"]
pub struct SysvGuard {
    id: Option<i32>,
}

impl SysvGuard {
    /// A guard for segment `id`.
    pub fn new(id: i32) -> SysvGuard {
        SysvGuard { id: Some(id) }
    }

    /// Keeps the segment: the guard will not remove it.
    pub fn disarm(mut self) -> i32 {
        self.id.take().expect("armed until disarmed")
    }
}

impl Drop for SysvGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = Segment::sysv_remove(id) {
                tracing::debug!(error = %e, "System V guard failed");
            }
        }
    }
}
