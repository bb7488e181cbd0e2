//! [`Condvar`]: a condition variable for [`Mutex`], on a shared futex sequence counter that a
//! crash cannot wedge.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_core::{Deadline, Result};

use crate::futex;
use crate::mutex::{LockError, LockResult, Mutex, MutexGuard};
use crate::shared::{Header, Kind, SharedData, SharedObject, check_ptr};
use crate::spin::{NO_CPU, Spin, record_cpu, swap_cpu};

static KIND: Kind = Kind::new("ipc_sync::Condvar", u32::from_le_bytes(*b"iCND"), 2);

/// A condition variable in shared memory, used with a [`Mutex`]: processes sleep until
/// another one changes the guarded data and notifies them.
///
/// A waiter reads a sequence counter while it holds the mutex, unlocks, and sleeps on the
/// counter's futex while it is unchanged; a notifier bumps the counter and wakes. There is no
/// internal lock and no per-waiter record, so a process that dies anywhere in `wait` or
/// `notify_*` cannot leave the condvar wedged (unlike a process-shared `pthread_cond_t`, whose
/// internal state a dead waiter can corrupt):
///
/// - a waiter that dies is simply gone: notifications go to the living (the waiter count it
///   raised stays raised, so later notifications make the `FUTEX_WAKE` syscall even when
///   nobody waits: what a condvar without the count always does);
/// - a notifier that dies holding the mutex makes the woken waiters relock it with
///   [`LockError::OwnerDied`], which they see as the result of their wait;
/// - a notifier that dies before notifying leaves its waiters asleep, but every sleeper looks
///   again after [`futex::RECHECK`] (a spurious wake-up), relocks the mutex and so learns of
///   the death.
///
/// As with every condition variable, wake-ups can be spurious: wait in a loop on the
/// condition, or use [`wait_while`](Condvar::wait_while). Use one condvar with one mutex.
///
/// Waiters may [spin](Spin) briefly on the counter before they sleep, adaptively by default:
/// only if the last notifier or the last other waiter ran on another CPU (see
/// [`Spin::Adaptive`]). A waiter that spins is not counted in `waiters`, so a notification
/// that finds only spinners makes no syscall.
///
/// # Layout
/// `#[repr(C)]`, 32 bytes, align 4:
///
/// | offset | field        | meaning                                               |
/// |--------|--------------|-------------------------------------------------------|
/// | 0      | header       | magic `"iCND"`, layout version 2, size 32, extra 0    |
/// | 16     | `seq`        | notification counter; the futex word                   |
/// | 20     | `waiters`    | processes that may be asleep (may over-count after a crash) |
/// | 24     | `notify_cpu` | the CPU of the last notification, for adaptive spinning |
/// | 28     | `wait_cpu`   | the CPU of the last waiter, for adaptive spinning      |
///
/// ```
/// use ipc_sync::{Condvar, Mutex, Shared};
///
/// let m = Shared::<Mutex<u32>>::create(0)?;
/// let cv = Shared::<Condvar>::create(())?;
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *m.lock().unwrap() = 1;
///         cv.notify_all();
///     });
///     let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Condvar {
    header: Header,
    seq: AtomicU32,
    waiters: AtomicU32,
    notify_cpu: AtomicU32,
    wait_cpu: AtomicU32,
}

/// Whether a timed condvar wait ended because its deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` if the deadline passed (the mutex is relocked either way).
    pub fn timed_out(self) -> bool {
        self.0
    }
}

impl Condvar {
    /// Unlocks the guard's mutex, sleeps until notified (or spuriously), and relocks. Spins
    /// briefly first if the notifier is likely on another CPU ([`Spin::Adaptive`]).
    ///
    /// Blocks on: [`notify_one`](Condvar::notify_one) or [`notify_all`](Condvar::notify_all)
    /// from any process (`FUTEX_WAIT`), then on the mutex.
    ///
    /// # Errors
    /// - [`LockError::OwnerDied`]: while relocking, the mutex's holder had died; the lock is
    ///   held. Also returned at once, without waiting, for a guard that is still
    ///   inconsistent: unlocking it would make the mutex unrecoverable, so repair the data
    ///   and [mark it consistent](MutexGuard::mark_consistent) first.
    /// - [`LockError::Failed`]: relocking failed (the mutex is
    ///   [not recoverable](crate::ErrorKind::NotRecoverable)); the lock is not held. Or,
    ///   without waiting, [`Corrupted`](crate::ErrorKind::Corrupted): another process
    ///   overwrote the mutex so that it cannot be unlocked (see [`MutexGuard::unlock`]).
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    #[doc(alias = "pthread_cond_wait")]
    pub fn wait<'a, T: SharedData>(&self, guard: MutexGuard<'a, T>) -> LockResult<'a, T> {
        self.wait_until(guard, Deadline::Never).map(|(g, _)| g)
    }

    /// [`wait`](Condvar::wait), giving up after `timeout` (the mutex is relocked either way).
    #[doc(alias = "pthread_cond_timedwait")]
    pub fn wait_timeout<'a, T: SharedData>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> std::result::Result<(MutexGuard<'a, T>, WaitTimeoutResult), LockError<'a, T>> {
        self.wait_until(guard, Deadline::after(timeout))
    }

    /// [`wait`](Condvar::wait), giving up at `deadline` (the mutex is relocked either way).
    ///
    /// # Errors
    /// As [`wait`](Condvar::wait).
    pub fn wait_until<'a, T: SharedData>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Deadline,
    ) -> std::result::Result<(MutexGuard<'a, T>, WaitTimeoutResult), LockError<'a, T>> {
        self.wait_with(guard, deadline, Spin::Adaptive)
    }

    /// [`wait_until`](Condvar::wait_until), spinning on the notification counter first as
    /// `spin` says (the relock spins as [`Mutex::lock`] does).
    ///
    /// # Errors
    /// As [`wait`](Condvar::wait).
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    pub fn wait_with<'a, T: SharedData>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Deadline,
        spin: Spin,
    ) -> std::result::Result<(MutexGuard<'a, T>, WaitTimeoutResult), LockError<'a, T>> {
        if !guard.is_consistent() {
            return Err(LockError::OwnerDied(guard));
        }
        let mutex: &'a Mutex<T> = guard.mutex();
        if let Err(e) = mutex.before_unlock(guard.tid(), true) {
            // Not unlockable (see `MutexGuard::unlock`): the guard must not try again.
            std::mem::forget(guard);
            return Err(LockError::Failed(e));
        }
        let mut refused = None;
        let timed_out = self.park(
            || {
                std::mem::forget(guard);
                MutexGuard::unlock_raw(mutex)
                    .map_err(|e| refused = Some(e))
                    .is_ok()
            },
            deadline,
            spin,
        );
        if let Some(e) = refused {
            // Another process took the lock word over during the unlock: not ours to relock.
            return Err(LockError::Failed(e));
        }
        mutex.lock().map(|g| (g, WaitTimeoutResult(timed_out)))
    }

    /// Waits while `condition` holds for the data, re-checking after every wake-up.
    ///
    /// # Errors
    /// As [`wait`](Condvar::wait); an owner death ends the wait with the guard, whatever the
    /// condition says.
    pub fn wait_while<'a, T: SharedData>(
        &self,
        guard: MutexGuard<'a, T>,
        condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<'a, T> {
        self.wait_timeout_while(guard, Deadline::Never, condition)
            .map(|(g, _)| g)
    }

    /// Waits while `condition` holds for the data, until `deadline`.
    ///
    /// # Errors
    /// As [`wait`](Condvar::wait).
    pub fn wait_timeout_while<'a, T: SharedData>(
        &self,
        mut guard: MutexGuard<'a, T>,
        deadline: Deadline,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> std::result::Result<(MutexGuard<'a, T>, WaitTimeoutResult), LockError<'a, T>> {
        loop {
            if !condition(&mut guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if deadline.has_passed() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_until(guard, deadline)?.0;
        }
    }

    /// Wakes one waiter, if any (`FUTEX_WAKE` with 1).
    ///
    /// Never blocks; makes the syscall only when a waiter may be asleep.
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    #[doc(alias = "pthread_cond_signal")]
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        record_cpu(&self.notify_cpu);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake(&self.seq, 1);
        }
    }

    /// Wakes every waiter (`FUTEX_WAKE` with `INT_MAX`).
    ///
    /// Never blocks; makes the syscall only when a waiter may be asleep.
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    #[doc(alias = "pthread_cond_broadcast")]
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        record_cpu(&self.notify_cpu);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake_all(&self.seq);
        }
    }

    /// The waiting half of `wait`, apart from the mutex: reads the counter, runs `unlock`,
    /// spins as `spin` says until the counter moves, then registers and sleeps until notified,
    /// `deadline`, or [`futex::RECHECK`]. Returns whether the deadline passed.
    ///
    /// `unlock` must release the lock that notifiers take before changing the condition, and
    /// say whether it did: if not, this returns at once (not timed out).
    fn park(&self, unlock: impl FnOnce() -> bool, deadline: Deadline, spin: Spin) -> bool {
        // Read the counter under the lock: a notifier that changes the condition after we
        // checked it does so after `unlock`, and bumps `seq` after that, so `seq` moves away
        // from `seen`.
        let seen = self.seq.load(Ordering::SeqCst);
        // The other side is the last notifier, or, if that was this thread (a turn handed
        // back and forth), the last other waiter.
        let others = [
            self.notify_cpu.load(Ordering::Relaxed),
            swap_cpu(&self.wait_cpu),
        ];
        if !unlock() {
            return false;
        }
        if spin.run_against(&others, || self.seq.load(Ordering::Relaxed) != seen) {
            return false;
        }
        // Register, then sleep while `seq == seen` (SeqCst pairs with the notifier's increment
        // then load of `waiters`): the notifier either sees us and wakes us, or bumped `seq`
        // before we registered, and the futex then does not sleep.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = futex::wait_recheck(&self.seq, seen, deadline);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result.is_err() && deadline.has_passed()
    }
}

// SAFETY: `#[repr(C)]` of atomics only; any counter value is harmless (a wrong waiter count
// costs or saves a wake syscall; the recheck bounds the latter; a wrong CPU hint only decides
// a bounded spin).
unsafe impl SharedObject for Condvar {
    type Init = ();

    unsafe fn init_at<'a>(ptr: *mut Condvar, _: ()) -> Result<&'a Condvar> {
        check_ptr(ptr, KIND.name)?;
        let cv = Condvar {
            header: Header::new::<Condvar>(&KIND, 0)?,
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            notify_cpu: AtomicU32::new(NO_CPU),
            wait_cpu: AtomicU32::new(NO_CPU),
        };
        // SAFETY: the caller vouches that `ptr` is valid for writes and unused by others;
        // `check_ptr` checked alignment.
        let cv = unsafe {
            ptr.write(cv);
            &*ptr
        };
        cv.header.publish(&KIND);
        Ok(cv)
    }

    unsafe fn open_at<'a>(ptr: *const Condvar) -> Result<&'a Condvar> {
        check_ptr(ptr, KIND.name)?;
        // SAFETY: the caller vouches that `ptr` is valid for `'a` and accessed only through
        // this library's types; all fields are atomics.
        let cv = unsafe { &*ptr };
        cv.header.check(&KIND, std::mem::size_of::<Condvar>())?;
        Ok(cv)
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("at", &(self as *const Condvar))
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("waiters", &self.waiters.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Heap;

    /// The futex protocol alone, with a std mutex standing in for the robust one: what Miri
    /// can check (glibc's robust mutexes are beyond it). Every spin policy: a spinning waiter
    /// is not counted as a sleeper, which must not lose a notification either.
    #[test]
    fn park_protocol_loses_no_notification() {
        for spin in [Spin::Never, Spin::Always, Spin::Adaptive] {
            park_loses_no_notification(spin);
        }
    }

    fn park_loses_no_notification(spin: Spin) {
        let cv = Heap::<Condvar>::new(());
        let state = std::sync::Mutex::new(0u32);
        let rounds = if cfg!(miri) { 5 } else { 200 };
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=rounds {
                    *state.lock().unwrap() = i;
                    cv.notify_all();
                    // Wait for the waiter to take it.
                    let mut g = state.lock().unwrap();
                    while *g != 0 {
                        drop(g);
                        std::thread::yield_now();
                        g = state.lock().unwrap();
                    }
                }
            });
            for i in 1..=rounds {
                let mut g = state.lock().unwrap();
                while *g != i {
                    cv.park(
                        move || {
                            drop(g);
                            true
                        },
                        Deadline::Never,
                        spin,
                    );
                    g = state.lock().unwrap();
                }
                *g = 0;
            }
        });
    }

    #[test]
    fn park_reports_the_deadline() {
        let cv = Heap::<Condvar>::new(());
        let d = Deadline::after(Duration::from_millis(5));
        let mut timed_out = false;
        while !timed_out {
            timed_out = cv.park(|| true, d, Spin::Adaptive);
        }
        assert!(d.has_passed());
    }

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn wait_with_mutex_across_threads() {
        let m = Heap::<Mutex<u32>>::new(0);
        let cv = Heap::<Condvar>::new(());
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|_| s.spawn(|| *cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap()))
                .collect();
            *m.lock().unwrap() = 7;
            cv.notify_all();
            for w in waiters {
                assert_eq!(w.join().unwrap(), 7);
            }
        });
        // Nobody notifies: the wait ends at its deadline, with the lock.
        let d = Deadline::after(Duration::from_millis(5));
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), d, |_| true)
            .unwrap();
        assert!(r.timed_out());
        assert_eq!(*g, 7);
    }

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn every_spin_policy_sees_a_later_notification() {
        for spin in [Spin::Never, Spin::Always, Spin::Adaptive] {
            let m = Heap::<Mutex<u32>>::new(0);
            let cv = Heap::<Condvar>::new(());
            std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    let mut g = m.lock().unwrap();
                    while *g == 0 {
                        g = cv.wait_with(g, Deadline::Never, spin).unwrap().0;
                    }
                    *g
                });
                *m.lock().unwrap() = 1;
                cv.notify_one();
                assert_eq!(waiter.join().unwrap(), 1, "{spin:?}");
            });
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "robust pthread mutexes are not supported by Miri")]
    fn an_inconsistent_guard_is_returned_without_waiting() {
        let m = Heap::<Mutex<u32>>::new(0);
        let cv = Heap::<Condvar>::new(());
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(m.lock().unwrap()));
        });
        let g = m.lock().unwrap_err().into_guard().unwrap();
        let mut g = match cv.wait(g) {
            Err(LockError::OwnerDied(g)) => g,
            _ => panic!("waited with an inconsistent guard"),
        };
        g.mark_consistent().unwrap();
        // Repaired: now it waits (and times out, nobody notifies).
        let (g, _) = cv.wait_timeout(g, Duration::from_millis(1)).unwrap();
        assert!(g.is_consistent());
    }
}
