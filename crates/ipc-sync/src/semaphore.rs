//! [`Semaphore`]: a counting semaphore on a shared futex, living in shared memory.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_core::{Blocked, Deadline, Error, Result};

use crate::futex;
use crate::shared::{Header, Kind, SharedObject, check_ptr};
use crate::spin::{NO_CPU, Spin, record_cpu};

static KIND: Kind = Kind::new("ipc_sync::Semaphore", u32::from_le_bytes(*b"iSEM"), 1);

/// A counting semaphore in shared memory: [`post`](Semaphore::post) adds one,
/// [`wait`](Semaphore::wait) takes one, sleeping while the count is zero.
///
/// Built on a shared futex: an uncontended `post` or `wait` is one atomic instruction and no
/// syscall; a `post` makes the `FUTEX_WAKE` syscall only when someone may sleep (a bit in the
/// count word says so). Waiters may [spin](Spin) briefly before sleeping, adaptively by
/// default.
///
/// Place it in shared memory with [`SharedObject::init_at`] / [`SharedObject::open_at`], or
/// in a memfd of its own with [`Shared`](crate::Shared). [`Init`](SharedObject::Init) is the
/// initial count.
///
/// # Crashes
/// A process that dies while waiting leaves no trace: the kernel drops it from the futex
/// queue, and the "sleepers" bit it set costs the next `post` one spare `FUTEX_WAKE`, after
/// which the bit is clear again (a dead waiter cannot make every later post a syscall). A
/// process that dies
/// after taking a unit does not give it back: a semaphore used as a lock is not robust; use a
/// [`Mutex`](crate::Mutex), or a System V [`SemaphoreSet`](crate::SemaphoreSet) with
/// `SEM_UNDO`. A waiter woken for a unit that dies before taking it would leave the unit to
/// nobody; sleepers re-check every [`futex::RECHECK`], so the unit is taken then.
///
/// # Layout
/// `#[repr(C)]`, 32 bytes, align 4:
///
/// | offset | field       | meaning                                              |
/// |--------|-------------|------------------------------------------------------|
/// | 0      | header      | magic `"iSEM"`, layout version 1, size 32, extra 0   |
/// | 16     | `count`     | bits 0-30: the value; bit 31: someone may sleep; the futex word |
/// | 20     | reserved    | 0                                                    |
/// | 24     | `post_cpu`  | the CPU of the last `post`, for adaptive spinning    |
/// | 28     | reserved    | 0                                                    |
///
/// ```
/// use ipc_sync::{Semaphore, Shared};
///
/// let sem = Shared::<Semaphore>::create(2)?;
/// sem.wait()?;
/// sem.try_wait()?;
/// assert!(sem.try_wait().is_err()); // empty: would block
/// sem.post()?;
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Semaphore {
    header: Header,
    count: AtomicU32,
    _reserved0: AtomicU32,
    post_cpu: AtomicU32,
    _reserved1: AtomicU32,
}

/// Bit 31 of the count word: a waiter may be asleep, so `post` must wake one.
const SLEEPERS: u32 = 1 << 31;
/// Bits 0-30: the value.
const VALUE: u32 = !SLEEPERS;

impl Semaphore {
    /// The largest value, as for POSIX semaphores (`SEM_VALUE_MAX`).
    pub const MAX: u32 = i32::MAX as u32;

    /// Adds one to the count and wakes one sleeping waiter, if any.
    ///
    /// Never blocks. Makes the `FUTEX_WAKE` syscall only when a waiter may be asleep.
    ///
    /// # Errors
    /// [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded) if the count is
    /// [`Semaphore::MAX`]; the count is unchanged.
    ///
    /// # References
    /// - [`sem_post(3)`](https://man7.org/linux/man-pages/man3/sem_post.3.html), the POSIX
    ///   equivalent
    #[doc(alias = "sem_post")]
    pub fn post(&self) -> Result<()> {
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if c & VALUE >= Self::MAX {
                let e = Error::limit("ipc_sync::Semaphore::MAX", Some(u64::from(Self::MAX)))
                    .in_op("post")
                    .on(self.describe());
                tracing::debug!(error = %e, "semaphore post refused");
                return Err(e);
            }
            // Add the unit and clear the sleepers bit in one step; if it was set, wake one.
            // The woken waiter sets the bit again when it takes a unit, in case others sleep.
            match self.count.compare_exchange_weak(
                c,
                (c & VALUE) + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        record_cpu(&self.post_cpu);
        if c & SLEEPERS != 0 {
            futex::wake(&self.count, 1);
        }
        Ok(())
    }

    /// Takes one unit, sleeping while the count is zero (after an adaptive spin).
    ///
    /// Blocks on: a [`post`](Semaphore::post) from any process. See
    /// [`wait_with`](Semaphore::wait_with) for the errors.
    ///
    /// # References
    /// - [`sem_wait(3)`](https://man7.org/linux/man-pages/man3/sem_wait.3.html), the POSIX
    ///   equivalent
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) -> Result<()> {
        self.wait_with(Deadline::Never, Spin::Adaptive)
    }

    /// Takes one unit if the count is above zero, without waiting.
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) (empty) if the count is zero.
    #[doc(alias = "sem_trywait")]
    pub fn try_wait(&self) -> Result<()> {
        self.wait_with(Deadline::Now, Spin::Never)
    }

    /// Takes one unit, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) if the count stayed zero.
    #[doc(alias = "sem_timedwait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_with(Deadline::after(timeout), Spin::Adaptive)
    }

    /// Takes one unit, waiting until `deadline`.
    ///
    /// # Errors
    /// See [`wait_with`](Semaphore::wait_with).
    #[doc(alias = "sem_clockwait")]
    pub fn wait_until(&self, deadline: Deadline) -> Result<()> {
        self.wait_with(deadline, Spin::Adaptive)
    }

    /// Takes one unit, waiting until `deadline`, spinning first as `spin` says
    /// (`FUTEX_WAIT_BITSET` on the count while it is zero).
    ///
    /// # Errors
    /// - [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) (empty): the count is zero
    ///   and `deadline` is [`Deadline::Now`].
    /// - [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut): the count stayed zero until
    ///   the deadline.
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    pub fn wait_with(&self, deadline: Deadline, spin: Spin) -> Result<()> {
        if self.try_take(false) {
            return Ok(());
        }
        if deadline == Deadline::Now {
            return Err(Error::would_block(Blocked::Empty)
                .in_op("wait")
                .on_shared(KIND.label()));
        }
        if spin.run(&self.post_cpu, || self.try_take(false)) {
            return Ok(());
        }
        let mut slept = false;
        loop {
            if self.try_take(slept) {
                return Ok(());
            }
            // Empty: make sure the sleepers bit is set, then sleep while the word says
            // "empty, sleepers". A post changes the word first, so the futex either sees the
            // change and returns at once, or is woken.
            let c = self.count.load(Ordering::SeqCst);
            if c & VALUE != 0 {
                continue;
            }
            if c & SLEEPERS == 0
                && self
                    .count
                    .compare_exchange(c, c | SLEEPERS, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                continue;
            }
            if let Err(e) = futex::wait_recheck(&self.count, SLEEPERS, deadline) {
                // A post may have woken us just as the deadline passed: take its unit rather
                // than leave it with the other sleepers asleep.
                return if self.try_take(true) {
                    Ok(())
                } else {
                    // Timed out (the expected end of a timed wait): named without allocating.
                    Err(e.in_op("wait").on_shared(KIND.label()))
                };
            }
            slept = true;
        }
    }

    /// The current count (a snapshot: other processes may change it at once).
    #[doc(alias = "sem_getvalue")]
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed) & VALUE
    }

    /// Takes a unit if there is one.
    ///
    /// A waiter that has slept (`mark`) sets the sleepers bit as it takes, and, if units are
    /// left, wakes the next sleeper: the post that cleared the bit woke only one, and posts
    /// made since then saw no bit and woke nobody. Everyone else leaves the bit as it is.
    #[inline]
    fn try_take(&self, mark: bool) -> bool {
        let mut c = self.count.load(Ordering::SeqCst);
        while c & VALUE != 0 {
            let keep = if mark { SLEEPERS } else { c & SLEEPERS };
            match self.count.compare_exchange_weak(
                c,
                ((c & VALUE) - 1) | keep,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    if mark && c & VALUE > 1 {
                        futex::wake(&self.count, 1);
                    }
                    return true;
                }
                Err(now) => c = now,
            }
        }
        false
    }

    fn describe(&self) -> String {
        format!("{} at {:p}", KIND.name, self as *const Semaphore)
    }
}

// SAFETY: `#[repr(C)]` of atomics only; every bit pattern of every field is harmless (a value
// at MAX only makes `post` fail; a wrong sleepers bit only costs a wake syscall or, with the
// recheck bounding it, delays a sleeper).
unsafe impl SharedObject for Semaphore {
    type Init = u32;

    unsafe fn init_at<'a>(ptr: *mut Semaphore, count: u32) -> Result<&'a Semaphore> {
        check_ptr(ptr, KIND.name)?;
        if count > Semaphore::MAX {
            return Err(
                Error::limit("ipc_sync::Semaphore::MAX", Some(u64::from(Semaphore::MAX)))
                    .in_op("init")
                    .on(KIND.name),
            );
        }
        let sem = Semaphore {
            header: Header::new::<Semaphore>(&KIND, 0)?,
            count: AtomicU32::new(count),
            _reserved0: AtomicU32::new(0),
            post_cpu: AtomicU32::new(NO_CPU),
            _reserved1: AtomicU32::new(0),
        };
        // SAFETY: the caller vouches that `ptr` is valid for writes and unused by others;
        // `check_ptr` checked alignment.
        let sem = unsafe {
            ptr.write(sem);
            &*ptr
        };
        sem.header.publish(&KIND);
        Ok(sem)
    }

    unsafe fn open_at<'a>(ptr: *const Semaphore) -> Result<&'a Semaphore> {
        check_ptr(ptr, KIND.name)?;
        // SAFETY: the caller vouches that `ptr` is valid for `'a` and accessed only through
        // this library's types; all fields are atomics, so any bytes are a valid `Semaphore`.
        let sem = unsafe { &*ptr };
        sem.header.check(&KIND, std::mem::size_of::<Semaphore>())?;
        Ok(sem)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("at", &(self as *const Semaphore))
            .field("value", &self.value())
            .field(
                "sleepers",
                &(self.count.load(Ordering::Relaxed) & SLEEPERS != 0),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Heap;
    use ipc_core::ErrorKind;
    use std::mem::MaybeUninit;
    use std::sync::Arc;

    type HeapSem = Heap<Semaphore>;

    #[test]
    fn counts_up_and_down() {
        let s = HeapSem::new(2);
        s.try_wait().unwrap();
        s.wait().unwrap();
        let e = s.try_wait().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert_eq!(e.blocked(), Some(Blocked::Empty));
        s.post().unwrap();
        s.post().unwrap();
        assert_eq!(s.value(), 2);
    }

    #[test]
    fn wait_times_out_on_zero() {
        let s = HeapSem::new(0);
        let e = s.wait_timeout(Duration::from_millis(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn post_at_max_is_refused_and_changes_nothing() {
        let s = HeapSem::new(Semaphore::MAX);
        let e = s.post().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        assert!(e.to_string().contains("Semaphore::MAX"), "{e}");
        assert_eq!(s.value(), Semaphore::MAX);
    }

    #[test]
    fn a_dead_sleepers_bit_costs_one_wake_then_clears() {
        let s = HeapSem::new(0);
        // What a waiter that died asleep (or timed out as the last sleeper) leaves behind.
        s.count.fetch_or(SLEEPERS, Ordering::SeqCst);
        assert_eq!(s.value(), 0);
        s.post().unwrap();
        assert_eq!(
            s.count.load(Ordering::SeqCst),
            1,
            "the post cleared the bit"
        );
        s.try_wait().unwrap();
        s.post().unwrap();
        assert_eq!(s.count.load(Ordering::SeqCst), 1);
        // A timed-out waiter leaves at most the bit, and the next post clears it.
        s.try_wait().unwrap();
        s.wait_timeout(Duration::from_millis(1)).unwrap_err();
        assert_eq!(s.value(), 0);
        s.post().unwrap();
        assert_eq!(s.count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn open_checks_the_header() {
        let s = HeapSem::new(1);
        // SAFETY: initialised and alive.
        let again = unsafe { Semaphore::open_at(&*s as *const Semaphore) }.unwrap();
        assert_eq!(again.value(), 1);
        let mut zeroed = Box::new(MaybeUninit::<Semaphore>::zeroed());
        // SAFETY: all-zero bytes are valid atomics; the allocation outlives the call.
        let e = unsafe { Semaphore::open_at(zeroed.as_mut_ptr()) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);
    }

    /// Threads hand units back and forth; every unit posted is taken exactly once.
    #[test]
    fn units_are_conserved_between_threads() {
        let s = Arc::new(HeapSem::new(0));
        let per_thread = if cfg!(miri) { 20 } else { 2000 };
        let waiters: Vec<_> = [Spin::Never, Spin::Always, Spin::Adaptive]
            .into_iter()
            .map(|spin| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        s.wait_with(Deadline::Never, spin).unwrap();
                    }
                })
            })
            .collect();
        let posters: Vec<_> = (0..3)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        s.post().unwrap();
                    }
                })
            })
            .collect();
        for t in posters.into_iter().chain(waiters) {
            t.join().unwrap();
        }
        assert_eq!(s.value(), 0);
    }

    proptest::proptest! {
        /// One process, any sequence of operations: every result and the final value are what
        /// a plain counter says.
        #[test]
        #[cfg_attr(miri, ignore = "proptest is too slow under Miri")]
        fn matches_a_counter_model(
            initial in 0u32..5,
            ops in proptest::collection::vec(0u8..3, 0..100),
        ) {
            let s = HeapSem::new(initial);
            let mut model = initial;
            for op in ops {
                match op {
                    0 => {
                        s.post().unwrap();
                        model += 1;
                    }
                    1 => {
                        let r = s.try_wait();
                        proptest::prop_assert_eq!(r.is_ok(), model > 0);
                        model = model.saturating_sub(1);
                    }
                    _ => {
                        let r = s.wait_with(Deadline::after(Duration::ZERO), Spin::Never);
                        proptest::prop_assert_eq!(r.is_ok(), model > 0, "{:?}", r);
                        model = model.saturating_sub(1);
                    }
                }
                proptest::prop_assert_eq!(s.value(), model);
            }
        }
    }

    /// The exact interleaving: two sleepers; post 1 clears the sleepers bit and wakes the
    /// first; post 2 comes before the first has taken its unit, sees no bit and wakes nobody.
    /// The first, taking its unit, must wake the second. The main thread plays the first
    /// sleeper and both posts. (Under Miri, which turns off the recheck, a lost wake-up here
    /// is a reported deadlock.)
    #[test]
    fn a_woken_waiter_passes_the_wake_up_on() {
        let s = Arc::new(HeapSem::new(0));
        let second = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.wait_with(Deadline::Never, Spin::Never))
        };
        while s.count.load(Ordering::SeqCst) != SLEEPERS {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(2)); // until it sleeps in the futex
        // Post 1 (its wake-up went to "the first sleeper", this thread) and post 2.
        assert_eq!(s.count.swap(2, Ordering::SeqCst), SLEEPERS);
        // The first sleeper takes its unit.
        assert!(s.try_take(true));
        second.join().unwrap().unwrap();
        assert_eq!(s.value(), 0);
    }

    /// Two sleepers, two posts in a row, for real.
    #[test]
    fn back_to_back_posts_wake_every_sleeper() {
        let s = Arc::new(HeapSem::new(0));
        for _ in 0..if cfg!(miri) { 3 } else { 50 } {
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    std::thread::spawn(move || s.wait_with(Deadline::Never, Spin::Never))
                })
                .collect();
            // Let both fall asleep (under Miri: until every other thread blocks).
            std::thread::sleep(Duration::from_millis(2));
            s.post().unwrap();
            s.post().unwrap();
            for t in ts {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn every_spin_policy_takes_a_unit_posted_later() {
        for spin in [Spin::Never, Spin::Always, Spin::Adaptive] {
            let s = Arc::new(HeapSem::new(0));
            let s2 = Arc::clone(&s);
            let t = std::thread::spawn(move || s2.wait_with(Deadline::Never, spin));
            s.post().unwrap();
            t.join().unwrap().unwrap();
            assert_eq!(s.value(), 0);
        }
    }

    /// Long enough that the store below, 20 ms after the sleeper registered, comes before
    /// it on a loaded machine; shorter than `futex::RECHECK` (1 s).
    const LOST_WAKE_DEADLINE: Duration = Duration::from_millis(900);

    /// A unit that arrives before the deadline with its wake-up lost (a poster killed between
    /// its count and its `FUTEX_WAKE`, or a wake that comes as the deadline passes): the
    /// sleeper's futex wait times out, and the wait takes the unit instead of reporting a
    /// timeout with the unit left behind. (The deadline is shorter than `futex::RECHECK`, so
    /// it is the timed-out sleep that finds the unit, not a recheck.)
    #[test]
    #[cfg_attr(
        miri,
        ignore = "needs the futex wait to time out, not Miri's deadlock report"
    )]
    fn a_unit_whose_wake_up_was_lost_is_taken_when_the_deadline_passes() {
        let s = Arc::new(HeapSem::new(0));
        let sleeper = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                s.wait_with(Deadline::after(LOST_WAKE_DEADLINE), Spin::Never)
            })
        };
        while s.count.load(Ordering::SeqCst) != SLEEPERS {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20)); // until it sleeps in the futex
        // The post, without its wake-up.
        s.count.store(1 | SLEEPERS, Ordering::SeqCst);
        sleeper.join().unwrap().unwrap();
        assert_eq!(s.value(), 0);
    }
}
