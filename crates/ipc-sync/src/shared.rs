//! Placing primitives in shared memory: the header each primitive starts with, the
//! [`SharedObject`] trait (initialise in place once, open and validate), the [`SharedData`]
//! marker for what a [`Mutex`](crate::Mutex) may guard, and [`Shared`], one object in a sealed
//! memfd of its own.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use ipc_core::{Error, ErrorKind, Result, ResultExt};
use rustix::fs::{MemfdFlags, SealFlags};

/// The 16 bytes every primitive of this crate starts with.
///
/// # Layout
/// | offset | field     | meaning                                                        |
/// |--------|-----------|----------------------------------------------------------------|
/// | 0      | `magic`   | identifies the type; written last, with `Release`, by the creator |
/// | 4      | `version` | layout version of the type                                      |
/// | 8      | `size`    | `size_of` the whole object, as the creator compiled it          |
/// | 12     | `extra`   | type-specific (the event's reset mode, the mutex data's alignment) |
///
/// All fields are atomics: a peer may write them at any time, and reading them must not be a
/// data race.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    magic: AtomicU32,
    version: AtomicU32,
    size: AtomicU32,
    extra: AtomicU32,
}

/// What a header must say for one type.
#[derive(Debug)]
pub(crate) struct Kind {
    /// The type's name, for messages.
    pub(crate) name: &'static str,
    /// Its magic number.
    pub(crate) magic: u32,
    /// Its layout version.
    pub(crate) version: u32,
    /// `name`, shared: see [`Kind::label`].
    label: OnceLock<Arc<str>>,
}

impl Kind {
    pub(crate) const fn new(name: &'static str, magic: u32, version: u32) -> Kind {
        Kind {
            name,
            magic,
            version,
            label: OnceLock::new(),
        }
    }

    /// The object the expected errors of a wait (would-block, timed out) name: the type's
    /// name, formatted once per process and shared, so that making such an error allocates
    /// nothing. (Other errors name the object's address too.)
    pub(crate) fn label(&'static self) -> &'static Arc<str> {
        self.label.get_or_init(|| Arc::from(self.name))
    }
}

impl Header {
    /// A header for an object of type `T` (of `kind`), not yet published (magic 0).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `size_of::<T>()` does not fit the 32-bit size field:
    /// recorded as anything else, the size would never match at [`check`](Header::check), so
    /// the object could be created but never opened. Refused before anything is written.
    pub(crate) fn new<T>(kind: &Kind, extra: u32) -> Result<Header> {
        let size = std::mem::size_of::<T>();
        let Ok(recorded) = u32::try_from(size) else {
            let e = Error::with_note(
                ErrorKind::InvalidInput,
                format!(
                    "{} is {size} bytes; a shared object's header records its size in 32 bits \
                     (at most {} bytes), so no process could open it. Keep large data beside \
                     the object in the shared mapping (a Mutex<()> guarding it), or split it",
                    std::any::type_name::<T>(),
                    u32::MAX
                ),
            )
            .in_op("init")
            .on(kind.name);
            tracing::debug!(error = %e, "refusing to initialise a shared object");
            return Err(e);
        };
        Ok(Header {
            magic: AtomicU32::new(0),
            version: AtomicU32::new(0),
            size: AtomicU32::new(recorded),
            extra: AtomicU32::new(extra),
        })
    }

    /// Makes the object visible to openers: everything written before this call is seen by an
    /// opener whose [`check`](Header::check) succeeds.
    pub(crate) fn publish(&self, kind: &Kind) {
        self.version.store(kind.version, Ordering::Relaxed);
        self.magic.store(kind.magic, Ordering::Release);
        tracing::trace!(object = kind.name, at = ?(self as *const Header), "initialised");
    }

    /// The `extra` field as it is now (a peer may have changed it since
    /// [`check`](Header::check)): for a type that compares it with a copy of its own on use.
    pub(crate) fn extra(&self) -> u32 {
        self.extra.load(Ordering::Relaxed)
    }

    /// Checks magic, version and size; returns the `extra` field for the caller to validate.
    pub(crate) fn check(&self, kind: &Kind, size: usize) -> Result<u32> {
        let at = format!("{} at {:p}", kind.name, self as *const Header);
        let magic = self.magic.load(Ordering::Acquire);
        if magic != kind.magic {
            let why = if magic == 0 {
                format!(
                    "not initialised (magic is 0, expected {:#010x})",
                    kind.magic
                )
            } else {
                format!(
                    "magic {magic:#010x}, expected {:#010x}: not a {}",
                    kind.magic, kind.name
                )
            };
            return Err(wrong(why, &at));
        }
        let version = self.version.load(Ordering::Relaxed);
        if version != kind.version {
            return Err(wrong(
                format!(
                    "layout version {version}, this library reads version {}",
                    kind.version
                ),
                &at,
            ));
        }
        let found = self.size.load(Ordering::Relaxed);
        if usize::try_from(found).ok() != Some(size) {
            return Err(wrong(
                format!(
                    "created with size {found} bytes, this type has {size} bytes \
                     (a different type parameter or library version)"
                ),
                &at,
            ));
        }
        Ok(self.extra.load(Ordering::Relaxed))
    }
}

fn wrong(why: String, at: &str) -> Error {
    let e = Error::with_note(ErrorKind::WrongType, why)
        .in_op("open")
        .on(at);
    tracing::debug!(error = %e, "refusing shared object");
    e
}

/// Checks that `ptr` is non-null and aligned for `T`.
pub(crate) fn check_ptr<T>(ptr: *const T, name: &'static str) -> Result<()> {
    if ptr.is_null() || !ptr.is_aligned() {
        return Err(Error::with_note(
            ErrorKind::InvalidInput,
            format!(
                "address is null or not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        )
        .on(format_args!("{name} at {ptr:p}")));
    }
    Ok(())
}

/// A primitive that lives in shared memory: initialised in place once by its creator, then
/// opened (and validated) in place by every process that maps the memory.
///
/// The types of this crate ([`Mutex`](crate::Mutex), [`Semaphore`](crate::Semaphore),
/// [`Condvar`](crate::Condvar), [`Event`](crate::Event)) and arrays of them implement it.
/// Place them in any `MAP_SHARED` mapping (a memfd, a POSIX or System V shared memory
/// segment, a file), at an offset aligned for the type; or let [`Shared`] make a sealed memfd
/// for one object.
///
/// ```
/// use std::mem::MaybeUninit;
/// use ipc_sync::{Semaphore, SharedObject};
///
/// // Any memory works for one process; between processes it is a shared mapping.
/// let mut place = Box::new(MaybeUninit::<Semaphore>::uninit());
/// // SAFETY: `place` is aligned, writable, outlives `sem`, and nobody else uses it.
/// let sem = unsafe { Semaphore::init_at(place.as_mut_ptr(), 1)? };
/// sem.try_wait()?;
/// // What another process does with the same bytes:
/// // SAFETY: as above; the object was initialised.
/// let again = unsafe { Semaphore::open_at(place.as_ptr())? };
/// assert_eq!(again.value(), 0);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # Safety
/// Implementors guarantee that `Self` is `#[repr(C)]` with a layout that does not depend on
/// the compiler's choices, contains no pointers, and that any bytes another process may have
/// written are harmless to read once [`open_at`](SharedObject::open_at) has validated them
/// (fields a peer can change are atomics or are read through raw pointers).
pub unsafe trait SharedObject: Sync + Sized {
    /// What the creator chooses at initialisation (the initial count, the reset mode, the
    /// guarded value).
    type Init;

    /// Writes a fresh object at `ptr` and returns it.
    ///
    /// Openers in other processes see the object as initialised once this returns.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `ptr` is null or misaligned, or if `Self` is larger
    /// than the header's size field can record (a [`Mutex`](crate::Mutex) guarding more than
    /// about 4 GiB: see its `# Layout`), before anything is written; for a
    /// [`Mutex`](crate::Mutex), the error of `pthread_mutex_init`.
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `size_of::<Self>()` bytes for `'a`, and the
    ///   memory stays mapped at this address for `'a`;
    /// - nothing else (no thread, no process) accesses those bytes until this returns: the
    ///   creator tells the others to open only after it;
    /// - the bytes are not part of a live Rust object that is accessed during `'a` through
    ///   any other reference.
    unsafe fn init_at<'a>(ptr: *mut Self, init: Self::Init) -> Result<&'a Self>;

    /// Checks the object at `ptr` (magic number, layout version, size) and returns it.
    ///
    /// # Errors
    /// - [`ErrorKind::WrongType`]: the bytes are not an initialised object of this type and
    ///   layout (not initialised yet, another type, another version, another size of the
    ///   guarded data).
    /// - [`ErrorKind::Corrupted`]: the header is right but a field holds an impossible value.
    /// - [`ErrorKind::InvalidInput`]: `ptr` is null or misaligned.
    ///
    /// # Safety
    /// - `ptr` is valid for reads and writes of `size_of::<Self>()` bytes for `'a`, and the
    ///   memory stays mapped at this address for `'a`;
    /// - during `'a` the bytes are accessed only through this library's types (by any number
    ///   of processes), never through plain reads and writes.
    unsafe fn open_at<'a>(ptr: *const Self) -> Result<&'a Self>;
}

// SAFETY: an array of shared objects is `#[repr(C)]`-like (elements at fixed strides, no
// padding chosen by the compiler), holds no pointers, and each element is validated by its own
// `open_at`.
unsafe impl<T: SharedObject, const N: usize> SharedObject for [T; N]
where
    T::Init: Clone,
{
    type Init = T::Init;

    /// Initialises every element with a clone of `init`.
    unsafe fn init_at<'a>(ptr: *mut Self, init: T::Init) -> Result<&'a Self> {
        check_ptr(ptr, "array")?;
        let first = ptr.cast::<T>();
        for i in 0..N {
            // SAFETY: element `i` lies inside the array the caller vouched for, and is aligned
            // because the array is.
            unsafe { T::init_at(first.add(i), init.clone())? };
        }
        // SAFETY: every element was initialised above; the caller's contract covers `'a`.
        Ok(unsafe { &*ptr })
    }

    unsafe fn open_at<'a>(ptr: *const Self) -> Result<&'a Self> {
        check_ptr(ptr, "array")?;
        let first = ptr.cast::<T>();
        for i in 0..N {
            // SAFETY: as in `init_at`.
            unsafe { T::open_at(first.add(i))? };
        }
        // SAFETY: every element was validated above; the caller's contract covers `'a`.
        Ok(unsafe { &*ptr })
    }
}

/// Data a [`Mutex`](crate::Mutex) in shared memory may guard.
///
/// Another process writes these bytes, possibly a buggy one or one that died halfway through
/// an update, so the type must be valid for *every* bit pattern and must not point anywhere.
/// Its destructor never runs: shared memory is unmapped, not dropped.
///
/// Implemented for integers, floats, integer atomics, `()` and arrays of these. Implement it
/// for your own `#[repr(C)]` structs made of such fields.
///
/// # Safety
/// Implementors guarantee that every bit pattern of `size_of::<Self>()` bytes is a valid
/// `Self`, that `Self` contains no pointers or references, and that its layout is fixed
/// (`#[repr(C)]` or `#[repr(transparent)]`).
pub unsafe trait SharedData: Send + Sized {}

macro_rules! shared_data {
    ($($t:ty),*) => { $(
        // SAFETY: a plain number (or an atomic one): every bit pattern is valid, no pointers.
        unsafe impl SharedData for $t {}
    )* };
}
shared_data!(
    (),
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize
);

// SAFETY: an array of such values is valid for every bit pattern and holds no pointers.
unsafe impl<T: SharedData, const N: usize> SharedData for [T; N] {}

/// One [`SharedObject`] in a memfd of its own, mapped shared: the easy way to share a
/// primitive with a child process.
///
/// [`create`](Shared::create) makes an anonymous file (`memfd_create`), sizes it, seals it
/// against shrinking and growing (so no peer can make our accesses fault with `SIGBUS`), maps
/// it and initialises the object. Hand the descriptor ([`AsFd`]) to another process, which
/// calls [`open`](Shared::open) to map and validate it. The object lives as long as any process
/// maps it or holds the descriptor.
///
/// ```
/// use ipc_sync::{Semaphore, Shared};
///
/// let sem = Shared::<Semaphore>::create(0)?;
/// // A child process gets a copy of the descriptor (for example with ipc_core::inherit) and
/// // opens it; here the same process opens a duplicate.
/// let fd = sem.as_fd().try_clone_to_owned()?;
/// let other = Shared::<Semaphore>::open(fd)?;
/// other.post()?;
/// sem.wait()?;
/// # use std::os::fd::AsFd;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shared<T: SharedObject> {
    map: memmap2::MmapRaw,
    fd: OwnedFd,
    _object: PhantomData<T>,
}

impl<T: SharedObject> Shared<T> {
    /// Creates a sealed memfd holding a new `T` initialised with `init`
    /// (`memfd_create`, `ftruncate`, `F_ADD_SEALS`, `mmap`).
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`] when out of descriptors or memory; the errors of
    /// [`SharedObject::init_at`].
    ///
    /// # References
    /// - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
    #[doc(alias = "memfd_create")]
    pub fn create(init: T::Init) -> Result<Shared<T>> {
        let size = std::mem::size_of::<T>();
        let fd =
            rustix::fs::memfd_create("ipc-sync", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(|e| {
                ipc_core::pipe::descriptor_error(e)
                    .in_op("memfd_create")
                    .on("ipc-sync object")
            })?;
        ipc_core::knob::check_file_size(size as u64).ctx("ftruncate", "ipc-sync memfd")?;
        rustix::fs::ftruncate(&fd, size as u64).ctx("ftruncate", "ipc-sync memfd")?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .ctx("seal", "ipc-sync memfd")?;
        let map = memmap2::MmapOptions::new()
            .len(size)
            .map_raw(&fd)
            .map_err(|e| {
                ipc_core::knob::mapping_error_io(e, size)
                    .in_op("mmap")
                    .on("ipc-sync memfd")
            })?;
        // SAFETY: the mapping is fresh, page-aligned, `size` bytes long, and owned by the
        // returned value, so it outlives the borrow; nobody else has the descriptor yet.
        unsafe { T::init_at(map.as_mut_ptr().cast::<T>(), init)? };
        tracing::trace!(fd = fd.as_raw_fd(), size, "created shared memfd object");
        Ok(Shared {
            map,
            fd,
            _object: PhantomData,
        })
    }

    /// Maps the memfd `fd` made by [`create`](Shared::create) (in this or another process) and
    /// validates the object in it (`fstat`, `F_GET_SEALS`, `mmap`).
    ///
    /// # Errors
    /// - [`ErrorKind::WrongType`]: `fd` is not a regular file sealed against shrinking, is too
    ///   small, or holds no valid `T` (see [`SharedObject::open_at`]).
    /// - [`ErrorKind::Corrupted`]: the object's state is impossible.
    pub fn open(fd: OwnedFd) -> Result<Shared<T>> {
        let size = std::mem::size_of::<T>();
        let what = format!("fd {}", fd.as_raw_fd());
        let st = rustix::fs::fstat(&fd).ctx("fstat", &what)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(
                Error::with_note(ErrorKind::WrongType, "not a regular file (memfd)")
                    .in_op("open")
                    .on(what),
            );
        }
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|e| {
            Error::with_note(ErrorKind::WrongType, "not a sealable memfd")
                .with_source(e.into())
                .in_op("open")
                .on(&what)
        })?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                "memfd is not sealed against shrinking (F_SEAL_SHRINK): a peer could truncate it",
            )
            .in_op("open")
            .on(what));
        }
        if u64::try_from(st.st_size).unwrap_or(0) < size as u64 {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!("{} bytes, the object needs {size}", st.st_size),
            )
            .in_op("open")
            .on(what));
        }
        let map = memmap2::MmapOptions::new()
            .len(size)
            .map_raw(&fd)
            .ctx("mmap", &what)?;
        // SAFETY: the mapping is page-aligned, `size` bytes long, backed by a file that cannot
        // shrink, and owned by the returned value; its bytes are accessed only through `T`.
        unsafe { T::open_at(map.as_ptr().cast::<T>())? };
        tracing::trace!(fd = fd.as_raw_fd(), size, "opened shared memfd object");
        Ok(Shared {
            map,
            fd,
            _object: PhantomData,
        })
    }
}

impl<T: SharedObject> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the object was initialised or validated when `self` was made, and the
        // mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().cast::<T>() }
    }
}

impl<T: SharedObject> AsFd for Shared<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<T: SharedObject> AsRawFd for Shared<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<T: SharedObject + fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("fd", &self.fd.as_raw_fd())
            .field("object", &**self)
            .finish()
    }
}

/// One shared object on the heap, for single-process tests (and Miri, which has no
/// `memfd_create`).
#[cfg(test)]
pub(crate) struct Heap<T>(Box<std::mem::MaybeUninit<T>>);

#[cfg(test)]
impl<T: SharedObject> Heap<T> {
    pub(crate) fn new(init: T::Init) -> Heap<T> {
        let mut b = Box::new(std::mem::MaybeUninit::<T>::uninit());
        // SAFETY: a fresh, aligned, exclusively owned allocation that outlives the borrow.
        unsafe { T::init_at(b.as_mut_ptr(), init).expect("init_at on the heap") };
        Heap(b)
    }
}

#[cfg(test)]
impl<T> Deref for Heap<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: initialised in `new`; lives as long as `self`.
        unsafe { self.0.assume_init_ref() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    static KIND: Kind = Kind::new("Test", 0x7465_7374, 3);

    #[test]
    fn header_check_reports_each_mismatch() {
        let h = Header::new::<[u64; 4]>(&KIND, 9).unwrap();
        let e = h.check(&KIND, 32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);
        assert!(e.to_string().contains("not initialised"), "{e}");
        h.publish(&KIND);
        assert_eq!(h.check(&KIND, 32).unwrap(), 9);
        let e = h.check(&KIND, 40).unwrap_err();
        assert!(e.to_string().contains("size 32"), "{e}");
        h.version.store(4, Ordering::Relaxed);
        let e = h.check(&KIND, 32).unwrap_err();
        assert!(e.to_string().contains("layout version 4"), "{e}");
        h.magic.store(0xdead_beef, Ordering::Relaxed);
        let e = h.check(&KIND, 32).unwrap_err();
        assert!(e.to_string().contains("0xdeadbeef"), "{e}");
    }

    #[test]
    fn misaligned_and_null_pointers_are_refused() {
        let mut buf = Box::new(MaybeUninit::<[u64; 8]>::uninit());
        let p = buf.as_mut_ptr().cast::<u8>().wrapping_add(1).cast::<u64>();
        assert_eq!(
            check_ptr(p, "x").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(check_ptr(std::ptr::null::<u64>(), "x").is_err());
        assert!(check_ptr(buf.as_ptr().cast::<u64>(), "x").is_ok());
    }
}
