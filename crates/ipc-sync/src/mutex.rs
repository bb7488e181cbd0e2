//! [`Mutex`]: a process-shared mutex that survives the death of its holder, on glibc's robust
//! pthread mutexes; [`MutexGuard`] and [`LockError`] (owner died, flagged like poisoning).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_core::{Blocked, Deadline, Error, ErrorKind, Result};
use rustix::io::Errno;
use rustix::time::ClockId;

use crate::robust;
use crate::shared::{Header, Kind, SharedData, SharedObject, check_ptr};
use crate::spin::{NO_CPU, Spin, record_cpu};
use crate::sys::{self, Take};

static KIND: Kind = Kind::new("ipc_sync::Mutex", u32::from_le_bytes(*b"iMTX"), 1);

/// The owner-TID bits of glibc's lock word (`FUTEX_TID_MASK`).
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// The "somebody sleeps on the lock word" bit (`FUTEX_WAITERS`).
const FUTEX_WAITERS: u32 = 0x8000_0000;

/// A mutex shared between processes, guarding a `T` in the same shared memory, that tells the
/// next locker when a holder died.
///
/// It is glibc's robust, process-shared, error-checking pthread mutex. When a thread dies
/// holding it (its process is `SIGKILL`ed, or the thread exits), the kernel walks the thread's
/// robust list (which glibc registered with `set_robust_list` and owns: this crate never
/// touches it, so it coexists with every other robust mutex in the process) and marks the lock
/// word. The next [`lock`](Mutex::lock) then succeeds with [`LockError::OwnerDied`]: the lock
/// is held, through a guard flagged inconsistent, and the data may be half-updated.
///
/// - Repair the data through the guard and call [`MutexGuard::mark_consistent`]: the mutex
///   works normally again.
/// - Drop the guard without doing so (including by propagating the error with `?`): the mutex
///   becomes permanently unusable, and every later lock fails with
///   [`ErrorKind::NotRecoverable`]. This is the safe default of POSIX robust mutexes: nobody
///   uses data that nobody vouched for.
/// - Die while repairing: the next locker is told the owner died again.
///
/// # Another process writing over the mutex
///
/// glibc keeps in the `pthread_mutex_t`, in the shared memory, the mutex's kind and, while it
/// is held, its links in the holder's robust list, which its unlock writes through. A stray
/// write from another process must not turn into a write anywhere in this one:
/// - a lock refuses a mutex whose kind word changed ([`ErrorKind::Corrupted`]): glibc would
///   take it for a mutex that is not robust, so a holder's death would go unnoticed;
/// - an unlock first checks the links against this thread's list, and restores them from the
///   list when they were overwritten (see [`MutexGuard::unlock`] for what it cannot mend);
/// - an unlock and [`MutexGuard::mark_consistent`] write back the owner word glibc keeps while
///   the mutex is held, which decides whether the mutex survives the unlock: overwritten, a
///   healthy mutex would become [not recoverable](ErrorKind::NotRecoverable), one nobody
///   repaired would stay usable, and a repair would be refused.
///
/// What no check can mend, since glibc and the kernel decide by these words alone: a lock word
/// a peer wrote so that it names a thread that does not hold the mutex (or none, with only
/// the waiters bit set) keeps every locker waiting, so lock with a deadline where peers are
/// not trusted; an owner word written to say "not recoverable" is taken at its word; and a
/// holder that dies while a peer's write is in the links of one of the mutexes it holds stops
/// the kernel's walk of its robust list there, so the mutexes it locked before that one are
/// not marked as a dead owner's (their lockers wait as for a live holder).
///
/// The check makes no system call in the common case, a thread holding one robust mutex at a
/// time; unlocking one of several held at once costs one `process_vm_readv` system call.
///
/// [`Init`](SharedObject::Init) is the initial value of the data. `T` must be [`SharedData`]:
/// valid for every bit pattern, no pointers.
///
/// ```
/// use ipc_sync::{LockError, Mutex, Shared};
///
/// let m = Shared::<Mutex<[u64; 2]>>::create([0, 0])?;
/// let mut g = match m.lock() {
///     Ok(g) => g,
///     Err(LockError::OwnerDied(mut g)) => {
///         // A holder died, maybe halfway through an update: restore the invariant.
///         g[1] = g[0];
///         g.mark_consistent()?;
///         g
///     }
///     Err(LockError::Failed(e)) => return Err(e),
/// };
/// g[0] += 1;
/// g[1] += 1;
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # Layout
/// `#[repr(C)]`, align `max(8, align_of::<T>())`:
///
/// | offset | field        | meaning                                                   |
/// |--------|--------------|-----------------------------------------------------------|
/// | 0      | header       | magic `"iMTX"`, layout version 1, `size_of::<Mutex<T>>()`, extra = `align_of::<T>()` |
/// | 16     | `holder_cpu` | the CPU of the last locker, for adaptive spinning         |
/// | 20     | reserved     | 0                                                         |
/// | 24     | `raw`        | glibc's `pthread_mutex_t` (40 bytes on x86-64 and aarch64) |
/// | 64     | `data`       | the `T` (at the next multiple of its alignment)           |
///
/// The `pthread_mutex_t` must never be copied or moved, which is why a `Mutex` exists only in
/// place, behind a reference ([`SharedObject::init_at`], [`Shared`](crate::Shared)).
///
/// The header records the size in 32 bits: a `Mutex<T>` of more than `u32::MAX` bytes (data
/// of about 4 GiB) is refused by [`init_at`](SharedObject::init_at) with
/// [`ErrorKind::InvalidInput`]. Keep such data beside a `Mutex<()>` in the mapping instead.
///
/// # References
/// - [`pthread_mutexattr_setrobust(3)`](https://man7.org/linux/man-pages/man3/pthread_mutexattr_setrobust.3.html)
/// - [`pthread_mutex_consistent(3)`](https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html)
/// - [`set_robust_list(2)`](https://man7.org/linux/man-pages/man2/set_robust_list.2.html)
#[repr(C)]
pub struct Mutex<T: SharedData> {
    header: Header,
    holder_cpu: AtomicU32,
    _reserved: AtomicU32,
    raw: UnsafeCell<libc::pthread_mutex_t>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, which exists only while the lock is held;
// `T: SharedData` is `Send`, so handing it from thread to thread (or process) is fine. The
// pthread mutex is process-shared, so it is certainly thread-safe.
unsafe impl<T: SharedData> Sync for Mutex<T> {}

impl<T: SharedData> Mutex<T> {
    /// Locks the mutex, waiting as long as it takes (`pthread_mutex_lock`, after an adaptive
    /// spin).
    ///
    /// Blocks on: the holder unlocking, or dying.
    ///
    /// # Errors
    /// - [`LockError::OwnerDied`]: the previous holder died; the lock is held (see the type's
    ///   documentation).
    /// - [`ErrorKind::NotRecoverable`]: a holder died earlier and nobody marked the state
    ///   consistent; the mutex is unusable for good.
    /// - [`ErrorKind::Io`] with `EDEADLK`: this thread holds the lock already.
    /// - [`ErrorKind::Corrupted`]: the `pthread_mutex_t` in shared memory was overwritten.
    ///
    /// # References
    /// - [`pthread_mutex_lock(3p)`](https://man7.org/linux/man-pages/man3/pthread_mutex_lock.3p.html)
    #[doc(alias = "pthread_mutex_lock")]
    pub fn lock(&self) -> LockResult<'_, T> {
        self.lock_with(Deadline::Never, Spin::Adaptive)
    }

    /// Locks the mutex if nobody holds it, without waiting (`pthread_mutex_trylock`).
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`] if another thread holds it; otherwise as [`lock`](Mutex::lock).
    #[doc(alias = "pthread_mutex_trylock")]
    pub fn try_lock(&self) -> LockResult<'_, T> {
        self.lock_with(Deadline::Now, Spin::Never)
    }

    /// Locks the mutex, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if it stayed held; otherwise as [`lock`](Mutex::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<'_, T> {
        self.lock_with(Deadline::after(timeout), Spin::Adaptive)
    }

    /// Locks the mutex, waiting until `deadline` (`pthread_mutex_clocklock` with
    /// `CLOCK_MONOTONIC`, so a change of the wall clock does not shorten or stretch the wait).
    ///
    /// # Errors
    /// As [`lock`](Mutex::lock), plus [`ErrorKind::TimedOut`] and, for [`Deadline::Now`],
    /// [`ErrorKind::WouldBlock`].
    ///
    /// # References
    /// - [`pthread_mutex_timedlock(3p)`](https://man7.org/linux/man-pages/man3/pthread_mutex_timedlock.3p.html);
    ///   `pthread_mutex_clocklock` is its glibc 2.30 variant that takes the clock
    #[doc(alias = "pthread_mutex_clocklock")]
    #[doc(alias = "pthread_mutex_timedlock")]
    pub fn lock_until(&self, deadline: Deadline) -> LockResult<'_, T> {
        self.lock_with(deadline, Spin::Adaptive)
    }

    /// Locks the mutex, waiting until `deadline`, spinning first as `spin` says.
    ///
    /// The spin only reads the lock word and tries to lock when it looks free, so it does not
    /// slow the holder down. See [`lock_until`](Mutex::lock_until) for the errors.
    pub fn lock_with(&self, deadline: Deadline, spin: Spin) -> LockResult<'_, T> {
        let kind = self.kind_word().load(Ordering::Relaxed);
        if kind != robust::KIND {
            // glibc would take it as whatever the word says now: a mutex that is not robust
            // would leave every later locker waiting forever for a dead holder.
            let e = Error::corrupted(format!(
                "the pthread_mutex_t's kind was overwritten ({kind}, not {}: robust, \
                 process-shared, error-checking)",
                robust::KIND
            ))
            .in_op("lock")
            .on(self.describe());
            tracing::debug!(error = %e, "lock refused");
            return Err(LockError::Failed(e));
        }
        let mut rc = self.try_take();
        if rc == libc::EBUSY && deadline != Deadline::Now {
            spin.run(&self.holder_cpu, || {
                if self.lock_word().load(Ordering::Relaxed) & FUTEX_TID_MASK != 0 {
                    return false;
                }
                rc = self.try_take();
                rc != libc::EBUSY
            });
            if rc == libc::EBUSY {
                let how = match deadline {
                    Deadline::At(_) => Take::Until(
                        deadline
                            .absolute(ClockId::Monotonic)
                            .expect("a deadline with an instant converts"),
                    ),
                    _ => Take::Block,
                };
                // SAFETY: `self.raw` is the mutex initialised by `init_at`, in place for `'_`.
                rc = unsafe { sys::mutex_take(self.raw.get(), how) };
            }
        }
        self.finish(rc, deadline)
    }

    /// Turns a pthread result code into a guard or an error.
    fn finish(&self, rc: i32, deadline: Deadline) -> LockResult<'_, T> {
        let guard = |consistent| MutexGuard {
            mutex: self,
            consistent,
            tid: self.lock_word().load(Ordering::Relaxed) & FUTEX_TID_MASK,
            _not_send: PhantomData,
        };
        let err = match rc {
            0 => {
                record_cpu(&self.holder_cpu);
                return Ok(guard(true));
            }
            libc::EOWNERDEAD => {
                record_cpu(&self.holder_cpu);
                tracing::debug!(mutex = %self.describe(), "lock: previous owner died");
                return Err(LockError::OwnerDied(guard(false)));
            }
            libc::ENOTRECOVERABLE => Error::with_note(
                ErrorKind::NotRecoverable,
                "a holder died and nobody marked the state consistent",
            )
            .with_source(std::io::Error::from_raw_os_error(rc)),
            libc::EBUSY => Error::would_block(Blocked::Full),
            libc::ETIMEDOUT => deadline.expired_error(Blocked::Full),
            libc::EDEADLK => Error::with_note(ErrorKind::Io, "this thread holds the lock already")
                .with_source(std::io::Error::from_raw_os_error(rc)),
            libc::EINVAL => Error::corrupted("the pthread_mutex_t is not a valid mutex")
                .with_source(std::io::Error::from_raw_os_error(rc)),
            _ => Error::from(Errno::from_raw_os_error(rc)),
        };
        let err = err.in_op("lock");
        // Would-block and timed out are expected: named without allocating, not logged.
        if matches!(rc, libc::EBUSY | libc::ETIMEDOUT) {
            return Err(LockError::Failed(err.on_shared(KIND.label())));
        }
        let err = err.on(self.describe());
        tracing::debug!(error = %err, "lock failed");
        Err(LockError::Failed(err))
    }

    /// `pthread_mutex_trylock`, working around a glibc bug.
    ///
    /// glibc's `pthread_mutex_trylock` on a robust mutex that is not recoverable returns
    /// `ENOTRECOVERABLE` but leaves the lock word holding the caller's TID (checked on glibc
    /// 2.36: its `if (oldval == id) lll_unlock (...)` compares the result of a successful
    /// compare-and-swap, which is 0). Every later lock from another thread or process would
    /// then sleep forever. `pthread_mutex_lock` and `pthread_mutex_clocklock` release it
    /// properly; so do we, after a trylock: if the lock word still names this thread, clear
    /// it and wake a sleeper, as glibc's unlock would. A fixed glibc leaves nothing to do.
    fn try_take(&self) -> i32 {
        // SAFETY: `self.raw` is the mutex initialised by `init_at`, in place for `'_`.
        let rc = unsafe { sys::mutex_take(self.raw.get(), Take::Try) };
        if rc == libc::ENOTRECOVERABLE {
            let word = self.lock_word();
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            let mut cur = word.load(Ordering::Relaxed);
            while cur & FUTEX_TID_MASK == tid {
                match word.compare_exchange(cur, 0, Ordering::Release, Ordering::Relaxed) {
                    Ok(_) => {
                        if cur & FUTEX_WAITERS != 0 {
                            crate::futex::wake(word, 1);
                        }
                        break;
                    }
                    Err(now) => cur = now,
                }
            }
        }
        rc
    }

    /// glibc's lock word (`__data.__lock`, the first field of every `pthread_mutex_t` layout):
    /// the owner's TID, plus the waiters and owner-died bits. Read for spinning, and written
    /// only by the workaround in [`try_take`](Mutex::try_take).
    fn lock_word(&self) -> &AtomicU32 {
        // SAFETY: the lock word is an aligned 32-bit integer at offset 0 of the mutex, which
        // glibc only accesses atomically; atomic accesses to it are therefore no data race.
        unsafe { &*self.raw.get().cast::<AtomicU32>() }
    }

    /// glibc's `__kind` word: which kind of mutex glibc takes this one for.
    fn kind_word(&self) -> &AtomicU32 {
        // SAFETY: `__kind` is an aligned 32-bit integer at offset 16 of the 40-byte mutex; glibc
        // only reads it after `pthread_mutex_init`, and this crate accesses it atomically.
        unsafe {
            &*self
                .raw
                .get()
                .cast::<u8>()
                .add(robust::KIND_AT)
                .cast::<AtomicU32>()
        }
    }

    /// glibc's `__owner` word: the holder's TID, or [`robust::OWNER_INCONSISTENT`].
    fn owner_word(&self) -> &AtomicU32 {
        // SAFETY: `__owner` is an aligned 32-bit integer at offset 8 of the 40-byte mutex, in
        // the shared mapping while `self` is borrowed. Any process may write it (that is what
        // `restore_words` mends); this crate only ever accesses it atomically, and glibc's
        // plain stores to it come from the thread holding the mutex.
        unsafe {
            &*self
                .raw
                .get()
                .cast::<u8>()
                .add(robust::OWNER_AT)
                .cast::<AtomicU32>()
        }
    }

    /// Puts back the words glibc decides by in a mutex this thread holds (`tid`, as the lock
    /// word said at locking), if another process overwrote them: the kind word, and, while
    /// the lock word still names this thread, the owner word, which is `tid` for a
    /// `consistent` guard and glibc's "inconsistent" mark otherwise. Overwritten, the owner
    /// word would make glibc's unlock declare a healthy mutex not recoverable, or leave one
    /// nobody vouched for recoverable, and `pthread_mutex_consistent` refuse a repaired one.
    ///
    /// Returns what it found in each word it put back.
    fn restore_words(&self, tid: u32, consistent: bool) -> (Option<u32>, Option<u32>) {
        let put = |word: &AtomicU32, want: u32| {
            let was = word.load(Ordering::Relaxed);
            (was != want).then(|| {
                word.store(want, Ordering::Relaxed);
                was
            })
        };
        let kind_was = put(self.kind_word(), robust::KIND);
        let owner_was = if self.lock_word().load(Ordering::Relaxed) & FUTEX_TID_MASK == tid {
            let owner = if consistent {
                tid
            } else {
                robust::OWNER_INCONSISTENT
            };
            put(self.owner_word(), owner)
        } else {
            None
        };
        (kind_was, owner_was)
    }

    /// Before glibc unlocks the mutex this thread holds: puts right what glibc would trust in it
    /// and another process may have overwritten (see [`robust`](crate::robust)).
    ///
    /// - A kind word that changed is written back: the mutex was locked as this crate's kind.
    /// - An owner word that changed is written back: this thread's id for a `consistent`
    ///   guard, glibc's "inconsistent" mark otherwise (see [`Mutex::restore_words`]).
    /// - Robust-list links that do not point at their neighbours are restored from the list.
    /// - A lock word that no longer names this thread (`tid`, as it was at locking): glibc would refuse to unlock and leave
    ///   the mutex in this thread's list; it is taken out by hand and the word left alone.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`] for the lock word, and when this thread's robust list does
    /// not lead to the mutex (the list was overwritten elsewhere): then the mutex stays locked,
    /// since unlocking would write through the overwritten links; the kernel releases it, as
    /// a dead owner's, when the thread ends.
    pub(crate) fn before_unlock(&self, tid: u32, consistent: bool) -> Result<()> {
        let (kind_was, owner_was) = self.restore_words(tid, consistent);
        // SAFETY: `self.raw` is this mutex, mapped as long as `self` is borrowed; the calling
        // thread holds it, so only it (in glibc or here) changes the links.
        let entry = unsafe { robust::Entry::of(self.raw.get()) };
        let mended = entry.mend().map_err(|why| {
            let e = Error::corrupted(format!("{why}; the mutex stays locked by this thread"))
                .in_op("unlock")
                .on(self.describe());
            tracing::debug!(error = %e, "unlock refused");
            e
        })?;
        if self.lock_word().load(Ordering::Relaxed) & FUTEX_TID_MASK != tid {
            entry.unlink();
            let e = Error::corrupted("the lock word no longer names this thread")
                .in_op("unlock")
                .on(self.describe());
            tracing::debug!(error = %e, "unlock refused");
            return Err(e);
        }
        if mended || kind_was.is_some() || owner_was.is_some() {
            tracing::debug!(
                mutex = %self.describe(),
                ?kind_was,
                ?owner_was,
                links_restored = mended,
                "unlock: another process had overwritten the pthread_mutex_t; put right"
            );
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} at {:p}", KIND.name, self as *const Mutex<T>)
    }

    /// The header of a new `Mutex<T>`, from the type alone: refused for a layout larger than
    /// the header's size field records (see [`Header::new`]), before `init_at` writes anything.
    fn header() -> Result<Header> {
        let align = u32::try_from(std::mem::align_of::<T>()).unwrap_or(u32::MAX);
        Header::new::<Mutex<T>>(&KIND, align)
    }
}

// SAFETY: `#[repr(C)]`; the header and hint are atomics; the pthread mutex is passed to glibc
// only after its kind word was checked (at lock) and its robust-list links (at unlock, the only
// words glibc uses as pointers; see `robust`); the data is `SharedData`, valid for every bit
// pattern.
unsafe impl<T: SharedData> SharedObject for Mutex<T> {
    type Init = T;

    unsafe fn init_at<'a>(ptr: *mut Mutex<T>, value: T) -> Result<&'a Mutex<T>> {
        check_ptr(ptr, KIND.name)?;
        let header = Mutex::<T>::header()?;
        // SAFETY: the caller vouches that `ptr` is valid for writes and unused by others;
        // `check_ptr` checked alignment. Fields are written in place, so the pthread mutex is
        // initialised where it will stay.
        unsafe {
            (&raw mut (*ptr).header).write(header);
            (&raw mut (*ptr).holder_cpu).write(AtomicU32::new(NO_CPU));
            (&raw mut (*ptr)._reserved).write(AtomicU32::new(0));
            (&raw mut (*ptr).data).write(UnsafeCell::new(value));
            let raw = UnsafeCell::raw_get(&raw const (*ptr).raw);
            sys::mutex_init(raw).map_err(|e| {
                Error::from(e)
                    .in_op("pthread_mutex_init")
                    .on(format_args!("{} at {ptr:p}", KIND.name))
            })?;
        }
        // SAFETY: every field was initialised above.
        let m = unsafe { &*ptr };
        m.header.publish(&KIND);
        Ok(m)
    }

    unsafe fn open_at<'a>(ptr: *const Mutex<T>) -> Result<&'a Mutex<T>> {
        check_ptr(ptr, KIND.name)?;
        // SAFETY: the caller vouches that `ptr` is valid for `'a` and accessed only through
        // this library's types. The header and hint are atomics, the data is `SharedData`
        // (any bytes are valid), and the pthread mutex is behind an `UnsafeCell` that only
        // glibc reads.
        let m = unsafe { &*ptr };
        let align = m.header.check(&KIND, std::mem::size_of::<Mutex<T>>())?;
        if usize::try_from(align).ok() != Some(std::mem::align_of::<T>()) {
            return Err(Error::with_note(
                ErrorKind::WrongType,
                format!(
                    "guarded data aligned to {align} bytes, this type to {}",
                    std::mem::align_of::<T>()
                ),
            )
            .in_op("open")
            .on(m.describe()));
        }
        Ok(m)
    }
}

impl<T: SharedData> fmt::Debug for Mutex<T> {
    /// Shows where the mutex is, not its data: locking in `Debug` could take over a dead
    /// owner's lock.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("at", &(self as *const Mutex<T>))
            .field("data", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// The lock of a [`Mutex`], held: dereferences to the data; unlocks on drop
/// (`pthread_mutex_unlock`).
///
/// Not `Send`: a pthread mutex is unlocked by the thread that locked it.
#[must_use = "the mutex unlocks when the guard is dropped"]
pub struct MutexGuard<'a, T: SharedData> {
    mutex: &'a Mutex<T>,
    consistent: bool,
    /// This thread's id, as glibc wrote it into the lock word when it took the lock (read
    /// there: cheaper than a `gettid` system call).
    tid: u32,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard between threads shares only `&T`.
unsafe impl<T: SharedData + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: SharedData> MutexGuard<'a, T> {
    /// Whether the data is vouched for: `false` after [`LockError::OwnerDied`] until
    /// [`mark_consistent`](MutexGuard::mark_consistent).
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }

    /// Declares the data repaired after the previous owner died (`pthread_mutex_consistent`):
    /// the mutex works normally again. Does nothing if the guard is consistent already.
    ///
    /// # Errors
    /// The error of `pthread_mutex_consistent` (none is expected for a guard flagged by
    /// [`LockError::OwnerDied`]).
    ///
    /// # References
    /// - [`pthread_mutex_consistent(3)`](https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html)
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn mark_consistent(&mut self) -> Result<()> {
        if self.consistent {
            return Ok(());
        }
        // glibc refuses unless the kind and owner words say "robust, taken from a dead owner",
        // as they did at locking: another process may have written over them since.
        self.mutex.restore_words(self.tid, false);
        // SAFETY: this thread holds the mutex after a lock that returned EOWNERDEAD (the only
        // way to get an inconsistent guard).
        let rc = unsafe { sys::mutex_consistent(self.mutex.raw.get()) };
        if rc != 0 {
            let e = Error::from(Errno::from_raw_os_error(rc))
                .in_op("pthread_mutex_consistent")
                .on(self.mutex.describe());
            tracing::debug!(error = %e, "mark_consistent failed");
            return Err(e);
        }
        self.consistent = true;
        tracing::trace!(mutex = %self.mutex.describe(), "marked consistent");
        Ok(())
    }

    /// The mutex this guard holds.
    pub fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }

    /// Unlocks now, and says whether it could (dropping the guard unlocks too, but cannot
    /// tell).
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`]: another process overwrote the mutex so that it cannot be
    /// unlocked safely. Its lock word names another thread (then this thread no longer holds
    /// it), or this thread's robust list does not lead to it (then it stays locked by this
    /// thread, and the kernel releases it as a dead owner's when the thread ends). A kind
    /// word, owner word or list links overwritten while the lock was held are put right, not
    /// reported.
    ///
    /// # References
    /// - [`pthread_mutex_unlock(3p)`](https://man7.org/linux/man-pages/man3/pthread_mutex_unlock.3p.html)
    #[doc(alias = "pthread_mutex_unlock")]
    pub fn unlock(self) -> Result<()> {
        let mutex = self.mutex;
        self.warn_if_inconsistent();
        let (tid, consistent) = (self.tid, self.consistent);
        std::mem::forget(self);
        mutex.before_unlock(tid, consistent)?;
        MutexGuard::unlock_raw(mutex)
    }

    /// Unlocks without dropping (for [`Condvar`](crate::Condvar)): the caller relocks with
    /// [`Mutex::lock`] and must not use the guard in between.
    ///
    /// Call right after [`Mutex::before_unlock`] returned `Ok`.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupted`] when glibc refuses (`EPERM`): its own look at the lock word,
    /// after `before_unlock`'s, found another thread there, which another process wrote in
    /// between. glibc then left the mutex in this thread's robust list; it is taken out, as
    /// `before_unlock` does for a lock word it finds changed.
    pub(crate) fn unlock_raw(mutex: &Mutex<T>) -> Result<()> {
        // SAFETY: the caller held the mutex through a guard it has forgotten, and checked what
        // glibc trusts in it (`before_unlock`).
        let rc = unsafe { sys::mutex_unlock(mutex.raw.get()) };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: `mutex.raw` is mapped while `mutex` is borrowed; glibc refused the unlock, so
        // the mutex is still in this thread's list and only this thread changes its links.
        unsafe { robust::Entry::of(mutex.raw.get()) }.unlink();
        let e = Error::corrupted(format!(
            "glibc refused the unlock ({}): the lock word no longer names this thread, or the \
             kind word is not a robust kind any more (another process wrote it during the \
             unlock); the mutex is not this thread's any more",
            std::io::Error::from_raw_os_error(rc)
        ))
        .with_source(std::io::Error::from_raw_os_error(rc))
        .in_op("unlock")
        .on(mutex.describe());
        tracing::debug!(error = %e, "unlock refused");
        Err(e)
    }

    /// What [`Mutex::before_unlock`] needs: the thread id in the lock word at locking.
    pub(crate) fn tid(&self) -> u32 {
        self.tid
    }

    fn warn_if_inconsistent(&self) {
        if !self.consistent {
            tracing::debug!(
                mutex = %self.mutex.describe(),
                "unlocking after owner death without mark_consistent: the mutex is now not recoverable"
            );
        }
    }
}

impl<T: SharedData> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other thread or process accesses the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: SharedData> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: SharedData> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.warn_if_inconsistent();
        // A refusal is logged where it happens; a drop has nobody to tell it to.
        if self.mutex.before_unlock(self.tid, self.consistent).is_ok() {
            let _ = MutexGuard::unlock_raw(self.mutex);
        }
    }
}

impl<T: SharedData + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard")
            .field("consistent", &self.consistent)
            .field("data", &**self)
            .finish()
    }
}

/// What [`Mutex::lock`] and friends return.
pub type LockResult<'a, T> = std::result::Result<MutexGuard<'a, T>, LockError<'a, T>>;

/// Why a lock did not simply succeed.
pub enum LockError<'a, T: SharedData> {
    /// The previous holder died while holding the lock. The lock is held now, through this
    /// guard; the data may be inconsistent. Repair it and call
    /// [`MutexGuard::mark_consistent`], or drop the guard to make the mutex unusable for good.
    OwnerDied(MutexGuard<'a, T>),
    /// The lock was not taken.
    Failed(Error),
}

impl<'a, T: SharedData> LockError<'a, T> {
    /// [`ErrorKind::OwnerDied`], or the kind of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LockError::OwnerDied(_) => ErrorKind::OwnerDied,
            LockError::Failed(e) => e.kind(),
        }
    }

    /// The guard, if the lock is held ([`LockError::OwnerDied`]).
    pub fn into_guard(self) -> Option<MutexGuard<'a, T>> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Failed(_) => None,
        }
    }
}

impl<T: SharedData> From<LockError<'_, T>> for Error {
    /// [`ErrorKind::OwnerDied`] drops the guard unrepaired, which makes the mutex unusable for
    /// good (see [`Mutex`]): propagating an owner death with `?` gives up on the data.
    fn from(e: LockError<'_, T>) -> Error {
        match e {
            LockError::OwnerDied(g) => {
                let e = Error::new(ErrorKind::OwnerDied)
                    .in_op("lock")
                    .on(g.mutex.describe());
                drop(g);
                e
            }
            LockError::Failed(e) => e,
        }
    }
}

impl<T: SharedData> fmt::Debug for LockError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(g) => f
                .debug_tuple("OwnerDied")
                .field(&g.mutex.describe())
                .finish(),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<T: SharedData> fmt::Display for LockError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(g) => write!(
                f,
                "lock {}: owner died (the lock is held; repair the data and mark it consistent)",
                g.mutex.describe()
            ),
            LockError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<T: SharedData> std::error::Error for LockError<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Heap;

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn lock_try_lock_and_timeout_in_one_process() {
        let m = Heap::<Mutex<u64>>::new(5);
        {
            let mut g = m.lock().unwrap();
            assert!(g.is_consistent());
            *g += 1;
            // The same thread again: error-checking, not a self-deadlock.
            let e = m.lock_timeout(Duration::from_millis(1)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io);
            assert_eq!(
                std::thread::scope(|s| s.spawn(|| m.try_lock().unwrap_err().kind()).join())
                    .unwrap(),
                ErrorKind::WouldBlock
            );
            let timed = std::thread::scope(|s| {
                s.spawn(|| m.lock_timeout(Duration::from_millis(5)).unwrap_err().kind())
                    .join()
            })
            .unwrap();
            assert_eq!(timed, ErrorKind::TimedOut);
        }
        assert_eq!(*m.try_lock().unwrap(), 6);
    }

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn a_thread_that_exits_holding_the_lock_is_an_owner_death() {
        let m = Heap::<Mutex<[u32; 2]>>::new([0, 0]);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock().unwrap();
                g[0] = 1; // half an update
                std::mem::forget(g); // the thread ends holding the lock
            });
        });
        let mut g = match m.lock() {
            Err(LockError::OwnerDied(g)) => g,
            other => panic!("expected owner died, got {:?}", other.map(|_| ())),
        };
        assert!(!g.is_consistent());
        assert_eq!(*g, [1, 0]);
        g[1] = 1;
        g.mark_consistent().unwrap();
        drop(g);
        assert_eq!(*m.lock().unwrap(), [1, 1]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn unlocking_without_mark_consistent_is_not_recoverable() {
        let m = Heap::<Mutex<u8>>::new(0);
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(m.lock().unwrap()));
        });
        let e = Error::from(m.lock().unwrap_err());
        assert_eq!(e.kind(), ErrorKind::OwnerDied);
        // Every way of locking says so, again and again, from any thread (a trylock must not
        // leave it locked: see `Mutex::try_take`).
        for _ in 0..2 {
            assert_eq!(m.try_lock().unwrap_err().kind(), ErrorKind::NotRecoverable);
            assert_eq!(m.lock().unwrap_err().kind(), ErrorKind::NotRecoverable);
            let timed = m.lock_timeout(Duration::from_secs(30)).unwrap_err();
            assert_eq!(timed.kind(), ErrorKind::NotRecoverable);
            let other = std::thread::scope(|s| {
                s.spawn(|| m.lock_timeout(Duration::from_secs(30)).unwrap_err().kind())
                    .join()
                    .unwrap()
            });
            assert_eq!(other, ErrorKind::NotRecoverable);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn open_checks_the_data_type() {
        let m = Heap::<Mutex<u64>>::new(1);
        // SAFETY: initialised and alive; `Mutex<u64>` is what it is.
        assert!(unsafe { Mutex::<u64>::open_at(&*m as *const Mutex<u64>) }.is_ok());
        // The same bytes as a mutex over two u32s: same size, other alignment.
        let p = (&*m as *const Mutex<u64>).cast::<Mutex<[u32; 2]>>();
        // SAFETY: the sizes are equal and the alignment of the target is not larger.
        let e = unsafe { Mutex::<[u32; 2]>::open_at(p) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);
    }

    /// A `Mutex<T>` larger than the header's 32-bit size field: its header is refused (so
    /// `init_at` refuses it before writing anything), instead of being recorded with a size
    /// no opener could ever match. Type-level only: no such value (or memory) is made.
    #[test]
    fn a_layout_larger_than_the_size_field_is_refused_at_init() {
        // 64 bytes before the data: the largest layout that fits, and the smallest that does not.
        type Largest = Mutex<[u8; (1 << 32) - 72]>;
        type TooLarge = Mutex<[u8; (1 << 32) - 64]>;
        type Huge = Mutex<[u64; 5 << 27]>;
        assert_eq!(std::mem::size_of::<Largest>(), (1 << 32) - 8);
        assert_eq!(std::mem::size_of::<TooLarge>(), 1 << 32);
        let h = Largest::header().unwrap();
        h.publish(&KIND);
        assert_eq!(h.check(&KIND, std::mem::size_of::<Largest>()).unwrap(), 1);
        for (e, size) in [
            (TooLarge::header().unwrap_err(), size_of::<TooLarge>()),
            (Huge::header().unwrap_err(), size_of::<Huge>()),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("is {size} bytes")), "{msg}");
            assert!(msg.contains("Mutex<()>"), "says what to do instead: {msg}");
        }
    }

    /// Another process writes the lock word after the unlock's own check and before glibc's:
    /// glibc refuses the unlock (`EPERM`). That is a typed error, not a panic (it was a
    /// `debug_assert`, in a guard's `drop` too), and the mutex leaves this thread's robust list,
    /// where glibc left it: once its memory holds something else, glibc's next lock of another
    /// mutex would write a link into it.
    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn a_lock_word_written_during_the_unlock_is_a_typed_error_not_a_panic() {
        let (m, other) = (Heap::<Mutex<u64>>::new(0), Heap::<Mutex<u64>>::new(0));
        let g = m.lock().unwrap();
        m.before_unlock(g.tid(), true).unwrap();
        // The window: another process's write lands here.
        m.lock_word().store(1, Ordering::Relaxed);
        std::mem::forget(g);
        let e = MutexGuard::unlock_raw(&*m).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
        assert!(e.to_string().contains("lock word"), "{e}");
        // The mutex's memory is given to something else.
        let raw = m.raw.get().cast::<u8>();
        let size = size_of::<libc::pthread_mutex_t>();
        // SAFETY: the mutex's own bytes, which nothing uses any more (nobody holds or locks
        // it; this thread's list no longer leads to it).
        unsafe { raw.write_bytes(0xAB, size) };
        other.lock().unwrap().unlock().unwrap();
        // SAFETY: as above; read back as plain bytes.
        let bytes = unsafe { std::slice::from_raw_parts(raw, size) };
        assert!(
            bytes.iter().all(|&b| b == 0xAB),
            "glibc wrote into it: {bytes:x?}"
        );
    }
}
