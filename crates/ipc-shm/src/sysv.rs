//! System V shared memory (`shmget`/`shmat`/`shmdt`/`shmctl(IPC_RMID)`), for interop with
//! programs that still use it. Keys, lookup and removal are the OS layer's
//! ([`ipc_core::sysv`]); attaching goes through [`OpenOptions::sysv_attach`].

use ipc_core::sysv::{self, Key, SysvKind};
use ipc_core::{Error, ErrorKind, Owner, Removable, Result, knob};
use rustix::io::Errno;

use crate::posix::OpenOptions;
use crate::segment::{Segment, SegmentKind};
use crate::sys;

fn shmget_error(e: Errno, size: usize, what: String) -> Error {
    let src = || std::io::Error::from_raw_os_error(e.raw_os_error());
    let err = match e {
        // EINVAL: size above SHMMAX (or below SHMMIN, 1, which `sysv_create` refuses first).
        Errno::INVAL if knob::read(knob::SHMMAX).is_some_and(|max| size as u64 > max) => {
            knob::limit_error(knob::SHMMAX).with_source(src())
        }
        // ENOSPC: either every id is in use (SHMMNI) or the namespace's page total would pass
        // SHMALL. Which one: count the segments; when the count is unknown, the size decides
        // (a segment larger than SHMALL pages can never fit).
        Errno::NOSPC => {
            let mni = knob::read(knob::SHMMNI);
            let used = sysv::in_use(SysvKind::SharedMemory);
            let out_of_ids = match (used, mni) {
                (Some(used), Some(mni)) => used >= mni,
                _ => false,
            };
            if out_of_ids {
                knob::limit_error(knob::SHMMNI).with_source(src())
            } else {
                knob::limit_error(knob::SHMALL).with_source(src())
            }
        }
        e => Error::from(e),
    };
    let err = err.in_op("shmget").on(what);
    tracing::debug!(error = %err, "shmget failed");
    err
}

fn attach(id: i32, read_only: bool, min_len: usize, owner: Owner) -> Result<Segment> {
    let kind = SegmentKind::SysV { id };
    let stat = || sys::shm_stat(id).map_err(|e| Error::from(e).in_op("shmctl(IPC_STAT)").on(&kind));
    // The id can change hands between the look and `shmat` (the segment removed and another
    // made at the same id): so the segment is looked at again once attached, when the id
    // can no longer change hands (our attachment keeps it), and kept only if it is the one
    // checked. Otherwise detached, and the whole attach made again.
    for _ in 0..ATTACH_TRIES {
        let st = stat()?;
        owner.check_with_creator(st.uid, st.cuid, &kind)?;
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
            let e = knob::mapping_error(e, st.size).in_op("shmat").on(&kind);
            tracing::debug!(error = %e, "shmat failed");
            e
        })?;
        let again = stat();
        if again.as_ref().is_ok_and(|a| a.same_segment(&st)) {
            tracing::trace!(id, size = st.size, read_only, "attached System V segment");
            // The kernel maps whole pages, but only `size` bytes are the segment's: stay
            // within them.
            return Ok(Segment::from_sysv(addr, st.size, !read_only, id));
        }
        // SAFETY: `addr` was just returned by `shmat` and nothing has used it.
        let _ = unsafe { sys::shmdt(addr) };
        again?;
        tracing::debug!(
            id,
            "System V id changed hands during attach; attaching again"
        );
    }
    Err(Error::with_note(
        ErrorKind::Disconnected,
        format!(
            "the segment at this id was removed and replaced {ATTACH_TRIES} times while it was \
             being attached"
        ),
    )
    .in_op("shmat")
    .on(&kind))
}

/// How many times [`attach`] looks again when the id changed hands under it.
const ATTACH_TRIES: usize = 16;

impl OpenOptions {
    /// Attaches the existing System V segment `id` (from [`Segment::sysv_id`] in another
    /// process, or [`Segment::sysv_lookup`]) with these options: read-only or not, at least
    /// [`min_len`](OpenOptions::min_len) bytes, owned as [`owner`](OpenOptions::owner) says.
    ///
    /// Makes `shmctl(IPC_STAT)` and checks the owner and size it reports before `shmat`, and
    /// `IPC_STAT` again once attached: if the id changed hands in between (the segment
    /// removed and another made at the same id), it detaches and starts over, so the segment
    /// mapped is always the one checked, at its own size. Only the segment's own size is
    /// accessible, not the rest of its last page. Does not block.
    ///
    /// A segment marked for removal (`IPC_RMID`) while another process still has it attached
    /// is still attached: Linux allows that (see `shmctl(2)`), and it is gone once the last
    /// process detaches.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] or [`ErrorKind::Disconnected`] for an id that does
    /// not exist or was removed and detached by all (or that changed hands 16 times during
    /// one attach), [`ErrorKind::PermissionDenied`] for an owner the policy
    /// refuses (the message names both uids and the [`Owner`] that accepts it), a creator it
    /// refuses (unless root: a creator keeps the owner's rights after giving the segment away,
    /// [`Owner::check_with_creator`]) or a mode that refuses us, [`ErrorKind::WrongType`] if it is smaller than `min_len`.
    ///
    /// # References
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "shmat")]
    pub fn sysv_attach(&self, id: i32) -> Result<Segment> {
        attach(id, self.read_only, self.min_len, self.owner)
    }
}

impl Segment {
    /// Creates a System V segment of `size` bytes with mode `0o600` and attaches it
    /// read-write. With a key other than [`Key::PRIVATE`], fails if a segment with that key
    /// exists (`IPC_EXCL`). [`sysv_create_with_mode`](Segment::sysv_create_with_mode) takes
    /// the mode.
    ///
    /// Makes `shmget(key, size, IPC_CREAT | IPC_EXCL | 0600)` and `shmat`. The segment
    /// stays until removed with [`Segment::sysv_remove`] or [`Segment::remove_on_drop`], even
    /// after every process detached: System V segments are not reference-counted like memfds.
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
    pub fn sysv_create(key: Key, size: usize) -> Result<Segment> {
        Segment::sysv_create_with_mode(key, size, 0o600)
    }

    /// [`sysv_create`](Segment::sysv_create) with permission bits `mode` (at most `0o777`;
    /// System V modes are exact, no umask applies).
    ///
    /// Errors: as `sysv_create`, and [`ErrorKind::InvalidInput`] for bits beyond `0o777`,
    /// before any system call.
    #[doc(alias = "shmget")]
    pub fn sysv_create_with_mode(key: Key, size: usize, mode: u32) -> Result<Segment> {
        let what = format!("System V segment with key {key}");
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
        let id = sys::shmget(key.as_raw(), size, flags).map_err(|e| shmget_error(e, size, what))?;
        tracing::trace!(
            id,
            size,
            mode = format_args!("{mode:#o}"),
            "created System V segment"
        );
        // Our own new segment: the owner is us (root included), so no owner check is needed.
        attach(id, false, size, Owner::Any).inspect_err(|_| {
            let _ = sysv::remove(SysvKind::SharedMemory, id);
        })
    }

    /// The id of the existing segment with `key` (`shmget(key, 0, 0)`, through
    /// [`ipc_core::sysv::lookup`]), to attach with [`sysv_attach`](Segment::sysv_attach).
    ///
    /// Errors: [`ErrorKind::NotFound`] if no segment has that key ([`Key::PRIVATE`] never
    /// does), [`ErrorKind::PermissionDenied`] if its mode gives us no access.
    ///
    /// # References
    /// - [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html)
    #[doc(alias = "shmget")]
    pub fn sysv_lookup(key: Key) -> Result<i32> {
        sysv::lookup(SysvKind::SharedMemory, key)
    }

    /// Attaches the existing System V segment `id`, read-write or read-only, after checking
    /// with `shmctl(IPC_STAT)` that it is owned by this process's effective user and at least
    /// `min_len` bytes: [`OpenOptions::sysv_attach`] with these options and the default
    /// [`Owner::Me`].
    ///
    /// A segment owned by another user is refused: its owner can change its mode, or remove
    /// it and let another take the id, at will. To attach one anyway, say whose it may be with
    /// [`OpenOptions::owner`].
    ///
    /// Errors: as [`OpenOptions::sysv_attach`].
    ///
    /// # References
    /// - [`shmat(2)`](https://man7.org/linux/man-pages/man2/shmat.2.html)
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "shmat")]
    pub fn sysv_attach(id: i32, read_only: bool, min_len: usize) -> Result<Segment> {
        attach(id, read_only, min_len, Owner::Me)
    }

    /// The System V id, for a System V segment.
    pub fn sysv_id(&self) -> Option<i32> {
        match self.kind() {
            SegmentKind::SysV { id } => Some(*id),
            _ => None,
        }
    }

    /// Marks System V segment `id` for removal (`shmctl(IPC_RMID)`, through
    /// [`ipc_core::sysv::remove`]): it disappears once the last process detaches. Does not
    /// block.
    ///
    /// Errors: [`ErrorKind::NotFound`] if there is no such id (removed already);
    /// [`ErrorKind::PermissionDenied`] if we neither own nor created it.
    ///
    /// # References
    /// - [`shmctl(2)`](https://man7.org/linux/man-pages/man2/shmctl.2.html)
    #[doc(alias = "IPC_RMID")]
    pub fn sysv_remove(id: i32) -> Result<()> {
        Removable::Sysv(SysvKind::SharedMemory, id).remove()
    }
}
