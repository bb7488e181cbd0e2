//! The libc calls rustix does not wrap: glibc's robust process-shared pthread mutexes (and the
//! robust list's head, and a read that cannot fault, to check that list), POSIX named
//! semaphores, System V semaphore sets, and `sched_getcpu` (glibc reads it from the rseq area or
//! the vDSO; rustix makes the `getcpu` syscall, too slow for a spin decision).
//!
//! Functions taking raw pointers are `unsafe fn`s with their preconditions spelled out; the
//! callers (mutex.rs, named.rs) hold the invariants that make them true. Everything else here is
//! a safe function over plain values.

use std::ffi::c_int;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::io::Errno;
use rustix::time::Timespec;

unsafe extern "C" {
    // glibc 2.30+; not (yet) declared by the libc crate.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clockid: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int;
    // glibc 2.3.3+.
    fn semtimedop(
        semid: c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> c_int;
}

fn errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}

fn c_timespec(ts: &Timespec) -> libc::timespec {
    libc::timespec {
        tv_sec: ts.tv_sec as libc::time_t,
        tv_nsec: ts.tv_nsec as _,
    }
}

/// The CPU the calling thread runs on, or `u32::MAX` if unknown.
pub(crate) fn current_cpu() -> u32 {
    #[cfg(miri)]
    {
        u32::MAX
    }
    #[cfg(not(miri))]
    {
        // SAFETY: `sched_getcpu` takes no arguments and only reads per-thread kernel data.
        let cpu = unsafe { libc::sched_getcpu() };
        u32::try_from(cpu).unwrap_or(u32::MAX)
    }
}

// ---------------------------------------------------------------------------------------------
// Robust process-shared pthread mutexes.

/// How to take a mutex.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Take {
    /// `pthread_mutex_trylock`.
    Try,
    /// `pthread_mutex_lock`.
    Block,
    /// `pthread_mutex_clocklock` with `CLOCK_MONOTONIC` and this absolute time.
    Until(Timespec),
}

/// Initialises `*m` as an error-checking, robust, process-shared mutex.
///
/// # Safety
/// - `m` is valid for writes of a `pthread_mutex_t` and suitably aligned;
/// - no thread or process uses `*m` until this returns, and `*m` is never moved afterwards.
pub(crate) unsafe fn mutex_init(m: *mut libc::pthread_mutex_t) -> Result<(), Errno> {
    let check = |rc: c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(rc))
        }
    };
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is a local, writable attribute object; it is initialised by
    // `pthread_mutexattr_init` before any other call uses it and destroyed before returning.
    // `m` is valid for writes per this function's contract.
    unsafe {
        check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
        let a = attr.as_mut_ptr();
        let result = check(libc::pthread_mutexattr_settype(
            a,
            libc::PTHREAD_MUTEX_ERRORCHECK,
        ))
        .and_then(|()| {
            check(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))
        })
        .and_then(|()| {
            check(libc::pthread_mutexattr_setrobust(
                a,
                libc::PTHREAD_MUTEX_ROBUST,
            ))
        })
        .and_then(|()| check(libc::pthread_mutex_init(m, a)));
        libc::pthread_mutexattr_destroy(a);
        result
    }
}

/// Takes `*m`; returns the pthread result code (0, `EOWNERDEAD`, `ENOTRECOVERABLE`, `EBUSY`,
/// `ETIMEDOUT`, `EDEADLK`, ...).
///
/// # Safety
/// - `m` points to a mutex initialised by [`mutex_init`] that stays mapped at this address.
pub(crate) unsafe fn mutex_take(m: *mut libc::pthread_mutex_t, how: Take) -> c_int {
    // SAFETY: `m` is an initialised mutex per the contract; `abs` is a valid local timespec.
    unsafe {
        match how {
            Take::Try => libc::pthread_mutex_trylock(m),
            Take::Block => libc::pthread_mutex_lock(m),
            Take::Until(ts) => {
                let abs = c_timespec(&ts);
                pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &abs)
            }
        }
    }
}

/// Releases `*m`; returns the pthread result code.
///
/// # Safety
/// - `m` points to a mutex initialised by [`mutex_init`], held by the calling thread.
pub(crate) unsafe fn mutex_unlock(m: *mut libc::pthread_mutex_t) -> c_int {
    // SAFETY: per the contract.
    unsafe { libc::pthread_mutex_unlock(m) }
}

/// Marks the state protected by `*m` consistent after its owner died.
///
/// # Safety
/// - `m` points to a mutex initialised by [`mutex_init`], held by the calling thread after a
///   lock that returned `EOWNERDEAD`.
pub(crate) unsafe fn mutex_consistent(m: *mut libc::pthread_mutex_t) -> c_int {
    // SAFETY: per the contract.
    unsafe { libc::pthread_mutex_consistent(m) }
}

/// The address of the calling thread's robust-list head (`get_robust_list(2)` with pid 0):
/// the one glibc registered when the thread started (`&THREAD_SELF->robust_head`).
pub(crate) fn robust_list_head() -> Result<usize, Errno> {
    let mut head: *mut libc::c_void = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: pid 0 names the calling thread; the kernel writes one pointer and one size to the
    // two valid locals.
    let rc = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &raw mut head, &raw mut len) };
    if rc == 0 {
        Ok(head as usize)
    } else {
        Err(errno())
    }
}

/// Reads the word at `addr` of this process without faulting (`process_vm_readv(2)` on
/// itself): `Ok(None)` when nothing readable is mapped there (`EFAULT`), `Err` when the call is
/// refused (`ENOSYS`, or `EPERM` under a seccomp policy).
pub(crate) fn read_word_checked(addr: usize) -> Result<Option<usize>, Errno> {
    let mut word = 0usize;
    let local = libc::iovec {
        iov_base: (&raw mut word).cast(),
        iov_len: size_of::<usize>(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: size_of::<usize>(),
    };
    // SAFETY: `local` describes the local `word`; the kernel reads `remote` with its own fault
    // handling (an unmapped address is `EFAULT`, not a signal) and writes only into `word`.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    match n {
        n if n == size_of::<usize>() as isize => Ok(Some(word)),
        -1 if errno() == Errno::FAULT => Ok(None),
        -1 => Err(errno()),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// POSIX named semaphores.

/// The size of a `sem_t`: what a named semaphore's file holds.
pub(crate) const SEM_SIZE: usize = std::mem::size_of::<libc::sem_t>();

/// A `sem_t` in this process's shared mapping of a semaphore file (the file `sem_open` would
/// map), valid until [`sem_unmap`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SemPtr(NonNull<libc::sem_t>);

/// Maps the first [`SEM_SIZE`] bytes of the semaphore file `fd`, shared and read-write.
///
/// The caller has checked that the file is a regular file of at least [`SEM_SIZE`] bytes.
pub(crate) fn sem_map(fd: BorrowedFd<'_>) -> Result<SemPtr, Errno> {
    // SAFETY: a new shared mapping at an address the kernel picks: no memory of ours is
    // replaced or aliased.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            SEM_SIZE,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // The mapping is page-aligned, so aligned for `sem_t`.
    NonNull::new(p.cast::<libc::sem_t>())
        .map(SemPtr)
        .ok_or(Errno::INVAL)
}

/// `sem_init(s, 1, value)`: a process-shared semaphore with `value`, laid out as `sem_open`
/// lays out a new one (glibc writes the same `struct new_sem` with `FUTEX_SHARED`).
///
/// # Safety
/// - `s` came from [`sem_map`], was not unmapped, and no other process uses it yet.
pub(crate) unsafe fn sem_init_shared(s: SemPtr, value: u32) -> Result<(), Errno> {
    // SAFETY: `s` points to SEM_SIZE writable bytes nobody else uses, per the contract.
    if unsafe { libc::sem_init(s.0.as_ptr(), 1, value) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

// This crate operates on glibc's 64-bit `struct new_sem` itself (see `SemWords`), and
// `robust.rs` checks the robust-list links at their 64-bit offsets in `pthread_mutex_t`;
// 32-bit targets lay both out differently.
#[cfg(not(target_pointer_width = "64"))]
compile_error!(
    "ipc-sync follows glibc's 64-bit sem_t and pthread_mutex_t layouts (named semaphores, the \
     robust mutex's unlock check); 32-bit targets are not supported"
);

/// Where glibc's `struct new_sem` keeps its futex-sharing word (`private`): after the 64-bit
/// value-and-waiters word.
const SEM_SHARING_AT: usize = 8;
/// Its value in a process-shared semaphore (glibc's `FUTEX_SHARED`, what `sem_open` and
/// `sem_init(.., 1, ..)` write): shared futex calls. glibc turns the word into the flags of
/// its futex calls: another value makes them process-private (a post in one process no
/// longer wakes a waiter in another), another operation (a post that waits on its own value,
/// for ever), or an invalid one (glibc aborts the process). This crate's own operations never
/// read it; other programs' glibc does.
const SEM_FUTEX_SHARED: u32 = 128;

/// Writes the sharing word of `*s` back if it is not [`SEM_FUTEX_SHARED`] (another process
/// overwrote it); returns what it found then.
///
/// # Safety
/// - `s` came from [`sem_map`] and was not passed to [`sem_unmap`].
pub(crate) unsafe fn sem_keep_shared(s: SemPtr) -> Option<u32> {
    // SAFETY: the word is 4-aligned inside the mapped `sem_t` (per the contract), which every
    // process accesses with atomic instructions or through glibc.
    let word = unsafe {
        &*s.0
            .as_ptr()
            .cast::<u8>()
            .add(SEM_SHARING_AT)
            .cast::<AtomicU32>()
    };
    let was = word.load(std::sync::atomic::Ordering::Relaxed);
    if was == SEM_FUTEX_SHARED {
        return None;
    }
    word.store(SEM_FUTEX_SHARED, std::sync::atomic::Ordering::Relaxed);
    Some(was)
}

/// glibc's words of a `sem_t` (64-bit `struct new_sem`): what its `sem_post`, `sem_wait` and
/// `sem_getvalue` use, and what this crate's named semaphore uses in the same way, so that
/// both interoperate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SemWords<'a> {
    /// `data`: the value in the low 32 bits, the number of registered waiters in the high 32.
    pub(crate) data: &'a AtomicU64,
    /// The value's half of `data`: the futex word waiters sleep on and posts wake.
    pub(crate) value: &'a AtomicU32,
}

/// Where the value's half of `data` is: the low half of a 64-bit word.
#[cfg(target_endian = "little")]
const SEM_VALUE_AT: usize = 0;
#[cfg(target_endian = "big")]
const SEM_VALUE_AT: usize = 4;

/// The words of `*s`.
///
/// # Safety
/// - `s` came from [`sem_map`] and is not passed to [`sem_unmap`] during `'a`.
pub(crate) unsafe fn sem_words<'a>(s: SemPtr) -> SemWords<'a> {
    let base = s.0.as_ptr().cast::<u8>();
    // SAFETY: the mapping is page-aligned and SEM_SIZE (32) bytes long, so both words are
    // inside it and aligned; it stays mapped for `'a` per the contract. Every process
    // accesses these bytes atomically (glibc and this crate). `value` overlaps `data`: this
    // crate only hands its address to the futex calls (the kernel reads it) and never
    // operates on it with Rust atomics, as glibc does the same.
    unsafe {
        SemWords {
            data: &*base.cast::<AtomicU64>(),
            value: &*base.add(SEM_VALUE_AT).cast::<AtomicU32>(),
        }
    }
}

/// Unmaps a semaphore mapped by [`sem_map`].
///
/// # Safety
/// - `s` came from [`sem_map`], was not unmapped before, and is not used afterwards.
pub(crate) unsafe fn sem_unmap(s: SemPtr) -> Result<(), Errno> {
    // SAFETY: per the contract, the mapping of SEM_SIZE bytes at `s` is ours and unused.
    unsafe { rustix::mm::munmap(s.0.as_ptr().cast(), SEM_SIZE) }
}

// ---------------------------------------------------------------------------------------------
// System V semaphore sets.

/// The `union semun` that `semctl` takes as its fourth argument.
#[repr(C)]
#[derive(Clone, Copy)]
union Semun {
    val: c_int,
    buf: *mut libc::semid_ds,
    array: *mut libc::c_ushort,
}

/// `semget(key, nsems, flags)`.
pub(crate) fn semget(key: libc::key_t, nsems: c_int, flags: c_int) -> Result<c_int, Errno> {
    // SAFETY: plain integer arguments.
    let id = unsafe { libc::semget(key, nsems, flags) };
    if id == -1 { Err(errno()) } else { Ok(id) }
}

/// `semtimedop(id, ops, timeout)` (`semop` when `timeout` is `None`).
pub(crate) fn sem_op(
    id: c_int,
    ops: &mut [libc::sembuf],
    timeout: Option<&Timespec>,
) -> Result<(), Errno> {
    let ts = timeout.map(c_timespec);
    let tp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `ops` is a valid, writable slice of `ops.len()` sembufs; `tp` is null or points
    // to a local timespec that outlives the call.
    let rc = unsafe { semtimedop(id, ops.as_mut_ptr(), ops.len(), tp) };
    if rc == -1 { Err(errno()) } else { Ok(()) }
}

/// `semctl(id, num, cmd)` for the commands that return a value (`GETVAL`, `GETNCNT`,
/// `GETZCNT`, `GETPID`).
pub(crate) fn sem_get(id: c_int, num: u16, cmd: c_int) -> Result<c_int, Errno> {
    // SAFETY: these commands read no fourth argument.
    let rc = unsafe { libc::semctl(id, c_int::from(num), cmd, Semun { val: 0 }) };
    if rc == -1 { Err(errno()) } else { Ok(rc) }
}

/// `semctl(id, num, SETVAL, value)`.
pub(crate) fn sem_setval(id: c_int, num: u16, value: u16) -> Result<(), Errno> {
    let arg = Semun {
        val: c_int::from(value),
    };
    // SAFETY: SETVAL reads `arg.val`.
    let rc = unsafe { libc::semctl(id, c_int::from(num), libc::SETVAL, arg) };
    if rc == -1 { Err(errno()) } else { Ok(()) }
}

/// `n` values for `GETALL` and `SETALL`, at the very end of a private anonymous mapping that
/// an inaccessible page follows.
///
/// Those commands copy as many values as the set has *now*, and a set id is a plain number:
/// the set can be removed and its id given to a larger set by another process (once the
/// kernel's sequence wraps, or at once through `/proc/sys/kernel/sem_next_id`) between the
/// `IPC_STAT` that sized the buffer and the copy. Past the `n` values the kernel meets the
/// inaccessible page and fails with `EFAULT`: it never writes into or reads from other memory
/// of this process.
struct GuardedValues {
    map: NonNull<libc::c_void>,
    map_len: usize,
    /// Offset of the first value in the mapping.
    at: usize,
    n: usize,
}

impl GuardedValues {
    fn new(n: usize) -> Result<GuardedValues, Errno> {
        // SAFETY: sysconf reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let bytes = n.checked_mul(2).ok_or(Errno::NOMEM)?;
        let data = bytes
            .div_ceil(page)
            .max(1)
            .checked_mul(page)
            .ok_or(Errno::NOMEM)?;
        let map_len = data.checked_add(page).ok_or(Errno::NOMEM)?;
        // SAFETY: a new private mapping at an address the kernel picks: nothing of ours is
        // replaced or aliased.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }?;
        let map = NonNull::new(p).ok_or(Errno::NOMEM)?;
        let guarded = GuardedValues {
            map,
            map_len,
            at: data - bytes,
            n,
        };
        // SAFETY: the last page of the mapping made above, which nothing references.
        unsafe {
            rustix::mm::mprotect(
                p.cast::<u8>().add(data).cast(),
                page,
                rustix::mm::MprotectFlags::empty(),
            )
        }?;
        Ok(guarded)
    }

    fn values(&mut self) -> &mut [u16] {
        // SAFETY: `at .. at + 2n` lies in the readable and writable part of the mapping, which
        // `self` owns until `Drop`; `at` is even, so the start is aligned for `u16` (the
        // mapping is page-aligned); zero-filled memory is valid `u16`s.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.map.as_ptr().cast::<u8>().add(self.at).cast::<u16>(),
                self.n,
            )
        }
    }
}

impl Drop for GuardedValues {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped only here; no reference into it
        // outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.map.as_ptr(), self.map_len) };
    }
}

/// `semctl(id, 0, GETALL)` of a set of `n` semaphores. `EFAULT` if the set at `id` has more
/// than `n` now (see [`GuardedValues`]: nothing is written past them).
pub(crate) fn sem_getall(id: c_int, n: usize) -> Result<Vec<u16>, Errno> {
    let mut buf = GuardedValues::new(n)?;
    let arg = Semun {
        array: buf.values().as_mut_ptr(),
    };
    // SAFETY: GETALL writes as many values as the set has now to `arg.array`: the first `n`
    // into `buf`, and at the next one the kernel meets the inaccessible page and stops
    // (EFAULT).
    let rc = unsafe { libc::semctl(id, 0, libc::GETALL, arg) };
    if rc == -1 {
        Err(errno())
    } else {
        Ok(buf.values().to_vec())
    }
}

/// `semctl(id, 0, SETALL, values)` of a set of `values.len()` semaphores. `EFAULT` if the set
/// at `id` has more now (see [`GuardedValues`]: nothing past them is read).
pub(crate) fn sem_setall(id: c_int, values: &[u16]) -> Result<(), Errno> {
    let mut buf = GuardedValues::new(values.len())?;
    buf.values().copy_from_slice(values);
    let arg = Semun {
        array: buf.values().as_mut_ptr(),
    };
    // SAFETY: SETALL reads as many values as the set has now from `arg.array` and never
    // writes through it: the first `values.len()` from `buf`, and at the next one the kernel
    // meets the inaccessible page and stops (EFAULT).
    let rc = unsafe { libc::semctl(id, 0, libc::SETALL, arg) };
    if rc == -1 { Err(errno()) } else { Ok(()) }
}

/// `semctl(id, 0, IPC_STAT)`.
pub(crate) fn sem_stat(id: c_int) -> Result<libc::semid_ds, Errno> {
    // SAFETY: `semid_ds` is plain data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    let arg = Semun { buf: &mut ds };
    // SAFETY: IPC_STAT writes one `semid_ds` to `arg.buf`, which points to `ds`.
    let rc = unsafe { libc::semctl(id, 0, libc::IPC_STAT, arg) };
    if rc == -1 { Err(errno()) } else { Ok(ds) }
}
