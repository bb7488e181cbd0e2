//! [`Segment`]: a shared mapping of one of the three kinds (POSIX, memfd, System V), with
//! bounds-checked byte access and atomics at checked offsets. The constructors live in
//! `posix.rs`, `memfd.rs` and `sysv.rs`.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use ipc_core::sysv::SysvKind;
use ipc_core::{Error, ErrorKind, PosixName, Removable, RemoveGuard, Result};

/// Which kind of shared memory a [`Segment`] maps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentKind {
    /// A POSIX shared memory object (`shm_open`), by name under `/dev/shm`.
    Posix(PosixName),
    /// An anonymous memory file (`memfd_create`), shared by handing its descriptor over.
    Memfd {
        /// The debugging name it was created with (shown in `/proc/PID/fd`), if known.
        name: Option<String>,
    },
    /// A System V segment (`shmget`), by id.
    SysV {
        /// The segment id.
        id: i32,
    },
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentKind::Posix(name) => write!(f, "shm {name}"),
            SegmentKind::Memfd { name: Some(n) } => write!(f, "memfd {n:?}"),
            SegmentKind::Memfd { name: None } => f.write_str("memfd"),
            SegmentKind::SysV { id } => write!(f, "System V segment {id}"),
        }
    }
}

pub(crate) enum Backing {
    /// A file mapping: POSIX shm or memfd. The descriptor stays open so the segment can be
    /// handed on (to a child, over a socket).
    Mmap { _map: memmap2::MmapRaw, fd: OwnedFd },
    /// A System V attachment, detached on drop.
    SysV { addr: NonNull<u8> },
}

/// A shared memory segment mapped into this process.
///
/// Made by [`Segment::create`] / [`Segment::open`] (POSIX), [`Segment::memfd`] /
/// [`Segment::adopt`] (memfd) or [`Segment::sysv_create`] / [`Segment::sysv_attach`] (System
/// V). The mapping lives until the `Segment` is dropped; the object behind it lives until it is
/// removed ([`Segment::unlink`], [`Segment::sysv_remove`], or on drop after
/// [`remove_on_drop`](Segment::remove_on_drop)) or, for a memfd, until the last descriptor and
/// mapping are gone.
///
/// # Access
///
/// Every byte of a segment can be written by another process at any time, so this type never
/// hands out a plain `&[u8]` by default. It offers:
/// - [`read_at`](Segment::read_at) / [`write_at`](Segment::write_at): bounds-checked copies;
/// - [`atomic_u32`](Segment::atomic_u32) / [`atomic_u64`](Segment::atomic_u64): atomics at
///   checked, aligned offsets (atomics are the right way to share words between processes);
/// - [`as_ptr`](Segment::as_ptr) and the `unsafe` [`as_slice`](Segment::as_slice) /
///   [`as_mut_slice`](Segment::as_mut_slice) for callers that synchronise on their own.
///
/// A segment is `Send` and `Sync`: like memory shared with another process, it is shared
/// between threads through atomics and copies only.
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    kind: SegmentKind,
    backing: Backing,
    /// Removes the name or id after the mapping is gone, if [`Segment::remove_on_drop`] asked
    /// for it. Declared after `backing`, so it is dropped after the mapping.
    remove: Option<RemoveGuard>,
    /// This process's private open of the file for the presence marks of the ends it opens
    /// here (`peer.rs`), made at the first: one descriptor for all of them.
    marks: std::sync::Mutex<Option<std::sync::Arc<ipc_core::process::Marks>>>,
}

// SAFETY: a `Segment` owns its mapping (or attachment); the raw pointer is only dereferenced
// through bounds-checked copies and atomics, which are as valid from any thread as they are
// from another process.
unsafe impl Send for Segment {}
// SAFETY: as above: no method takes `&self` and gives out unsynchronised references, except the
// `unsafe` slice views whose callers take that responsibility.
unsafe impl Sync for Segment {}

impl Segment {
    pub(crate) fn from_mmap(
        map: memmap2::MmapRaw,
        fd: OwnedFd,
        writable: bool,
        kind: SegmentKind,
    ) -> Segment {
        let ptr = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        Segment {
            ptr,
            len: map.len(),
            writable,
            kind,
            backing: Backing::Mmap { _map: map, fd },
            remove: None,
            marks: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn from_sysv(addr: NonNull<u8>, len: usize, writable: bool, id: i32) -> Segment {
        Segment {
            ptr: addr,
            len,
            writable,
            kind: SegmentKind::SysV { id },
            backing: Backing::SysV { addr },
            remove: None,
            marks: std::sync::Mutex::new(None),
        }
    }

    /// Makes this value the owner of the segment's name or id: dropping it (also during a
    /// panic) unmaps the segment, then removes the POSIX name (`shm_unlink`), or removes the
    /// System V id (`IPC_RMID`), then detaches, with an [`ipc_core::RemoveGuard`], quietly if
    /// it is gone already.
    /// Other processes keep their mappings; the memory goes with the last one. A memfd has
    /// nothing to remove (it goes with its last descriptor and mapping): unchanged.
    ///
    /// A POSIX name is removed only while it still names this segment's object (its device
    /// and inode, compared just before the unlink): if another process removed the name and
    /// created a new segment under it meanwhile, the new one is left alone. A System V id is
    /// removed before the segment is detached, while this attachment keeps the id naming this
    /// segment: had another process removed it already, a new segment made at the id once it
    /// is free is left alone too.
    ///
    /// This is how every type of this workspace that owns a named object ties the name to
    /// its lifetime (`NamedSemaphore::remove_on_drop`, `SemaphoreSet::remove_on_drop` in
    /// `ipc-sync`); for a name with no value of its own, use an [`ipc_core::RemoveGuard`]
    /// directly.
    ///
    /// ```
    /// use ipc_shm::Segment;
    ///
    /// let name = format!("/ipc-shm-doc-remove-{}", std::process::id());
    /// let seg = Segment::create(name.as_str(), 4096)?.remove_on_drop();
    /// let peer = Segment::open(name.as_str())?;
    /// drop(seg); // the name is gone; `peer` stays mapped
    /// assert!(Segment::open(name.as_str()).is_err());
    /// peer.write_at(0, b"still here")?;
    /// # Ok::<(), ipc_shm::Error>(())
    /// ```
    #[must_use]
    pub fn remove_on_drop(mut self) -> Segment {
        self.remove = match &self.kind {
            // The name is removed only while it still names this object (rustix's `shm_*`
            // keep objects in `/dev/shm`): should another process have unlinked it and made a
            // new object under it meanwhile, that one is left alone.
            SegmentKind::Posix(name) => Some(RemoveGuard::new(match self.fd() {
                Some(fd) => crate::posix::same_object(name, fd),
                None => Removable::Shm(name.clone()),
            })),
            SegmentKind::SysV { id } => Some(RemoveGuard::new(Removable::Sysv(
                SysvKind::SharedMemory,
                *id,
            ))),
            SegmentKind::Memfd { .. } => None,
        };
        self
    }

    /// The size of the mapping in bytes: the object's real size when it was mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping has no bytes (never true: empty objects are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping is writable (not mapped read-only).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// What kind of segment this is, with its name or id.
    pub fn kind(&self) -> &SegmentKind {
        &self.kind
    }

    /// [`kind`](Segment::kind) formatted once, for an endpoint to name itself in errors
    /// without formatting on its expected path ([`Error::on_shared`]).
    pub(crate) fn shared_name(&self) -> std::sync::Arc<str> {
        std::sync::Arc::from(self.kind.to_string())
    }

    /// The POSIX name, for a POSIX segment.
    pub fn name(&self) -> Option<&PosixName> {
        match &self.kind {
            SegmentKind::Posix(n) => Some(n),
            _ => None,
        }
    }

    /// The open descriptor behind a POSIX or memfd segment (to hand it to a child with
    /// [`ipc_core::inherit::ChildFds`] or over a socket with
    /// [`send_fd`](Segment::send_fd)); `None` for System V.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backing {
            Backing::Mmap { fd, .. } => Some(fd.as_fd()),
            Backing::SysV { .. } => None,
        }
    }

    /// The private open this process makes its ends' presence marks on
    /// ([`ipc_core::process::Marks`]), made at the first call; `None` for System V (no file)
    /// or where none can be made.
    ///
    /// Errors: the descriptor limit.
    pub(crate) fn marks(&self) -> Result<Option<std::sync::Arc<ipc_core::process::Marks>>> {
        let Some(fd) = self.fd() else {
            return Ok(None);
        };
        let mut slot = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = ipc_core::process::Marks::open(fd)?.map(std::sync::Arc::new);
        }
        Ok(slot.clone())
    }

    /// The start of the mapping.
    ///
    /// Reading or writing through it is `unsafe` and subject to the same rules as
    /// [`as_slice`](Segment::as_slice); writing to a read-only mapping faults.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn check_range(&self, offset: usize, len: usize, op: &'static str) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::with_note(
                ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at offset {offset} do not fit in {} bytes",
                    self.len
                ),
            )
            .in_op(op)
            .on(&self.kind)),
        }
    }

    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(
                Error::with_note(ErrorKind::PermissionDenied, "the mapping is read-only")
                    .in_op(op)
                    .on(&self.kind),
            )
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the segment.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] if the range does not fit in the mapping. The bytes
    /// are whatever the segment held while they were copied: a peer writing at the same time
    /// can leave a mix of old and new bytes.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len(), "read")?;
        // SAFETY: the range is inside the mapping (checked above) and `buf` is a distinct,
        // writable buffer of ours. Bytes in the mapping may change under the copy (another
        // process), which can only produce unexpected byte values in `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] if the range does not fit,
    /// [`ErrorKind::PermissionDenied`] if the mapping is read-only.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_writable("write")?;
        self.check_range(offset, data.len(), "write")?;
        // SAFETY: the range is inside a writable mapping (checked above) and `data` is ours.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    fn atomic_at<T>(&self, offset: usize, op: &'static str) -> Result<NonNull<T>> {
        self.check_writable(op)?;
        self.check_range(offset, std::mem::size_of::<T>(), op)?;
        if offset % std::mem::align_of::<T>() != 0 {
            return Err(Error::with_note(
                ErrorKind::InvalidInput,
                format!(
                    "offset {offset} is not {}-byte aligned",
                    std::mem::align_of::<T>()
                ),
            )
            .in_op(op)
            .on(&self.kind));
        }
        // SAFETY: in bounds (checked above), so the pointer is non-null.
        Ok(unsafe { NonNull::new_unchecked(self.as_ptr().add(offset).cast::<T>()) })
    }

    /// The 4-byte word at `offset` as an atomic (for flags, counters and futex words shared
    /// with other processes).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] if the word does not fit or `offset` is not a
    /// multiple of 4; [`ErrorKind::PermissionDenied`] on a read-only mapping (an atomic could
    /// store, which would fault).
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        let p = self.atomic_at::<AtomicU32>(offset, "atomic_u32")?;
        // SAFETY: aligned, in bounds of a writable mapping that lives as long as `&self`; an
        // `AtomicU32` may alias memory other processes access atomically.
        Ok(unsafe { p.as_ref() })
    }

    /// The 8-byte word at `offset` as an atomic; see [`atomic_u32`](Segment::atomic_u32).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        let p = self.atomic_at::<AtomicU64>(offset, "atomic_u64")?;
        // SAFETY: as in `atomic_u32`.
        Ok(unsafe { p.as_ref() })
    }

    /// The whole mapping as a byte slice.
    ///
    /// # Safety
    ///
    /// - no process (this one or another) writes to the segment while the slice is alive, for
    ///   example because the data is published once and only read afterwards, or because a
    ///   lock in the segment is held.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes; the caller guarantees nobody writes meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The whole mapping as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// - the mapping is writable ([`is_writable`](Segment::is_writable));
    /// - no other process or thread reads or writes the segment while the slice is alive, and
    ///   no other slice of it exists.
    #[allow(clippy::mut_from_ref)] // Shared memory: exclusivity is the caller's contract.
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the caller guarantees exclusive access to a writable mapping of `len` bytes.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Backing::SysV { addr } = self.backing {
            // The id first (`remove_on_drop`), while this attachment keeps it naming this
            // segment: detached first, a segment someone else removed already would be
            // destroyed, and a new one made at the freed id would be removed in its place.
            drop(self.remove.take());
            // SAFETY: `addr` is our live attachment; the segment is being dropped, so nothing
            // borrowed from it is alive any more.
            if let Err(e) = unsafe { crate::sys::shmdt(addr) } {
                tracing::debug!(segment = %self.kind, error = %e, "shmdt failed");
            }
        }
        tracing::trace!(segment = %self.kind, len = self.len, "unmapped shared memory segment");
        // An Mmap backing unmaps in its own Drop, then closes the descriptor.
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Segment");
        d.field("kind", &self.kind)
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .field("remove_on_drop", &self.remove.is_some());
        if let Backing::Mmap { fd, .. } = &self.backing {
            d.field("fd", fd);
        }
        d.finish()
    }
}
