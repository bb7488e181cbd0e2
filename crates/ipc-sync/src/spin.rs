//! [`Spin`]: whether a waiter spins briefly before it sleeps, and the adaptive rule that
//! decides it from where the other side last ran.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// How a waiter behaves before it goes to sleep in the kernel.
///
/// A hand-off between two processes on different cores costs about 100 ns when the waiter
/// spins and tens of microseconds when it sleeps (a futex wake plus a scheduler wake-up on
/// the other core). But when both processes share one core, a spinning waiter only delays the
/// process it waits for: the hand-off then gets many times slower than sleeping at once.
/// `cargo xtask bench --filter sync` measures both placements on your machine, for every
/// policy (the `spin_bench` example is a smaller, standalone version).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Spin {
    /// Sleep at once.
    Never,
    /// Spin up to [`SPIN_BUDGET`] whatever the placement, then sleep.
    Always,
    /// Spin up to [`SPIN_BUDGET`] only if the other side ran on another CPU than this thread
    /// does now: the last poster of a semaphore, setter of an event, locker of a mutex, as
    /// the primitive recorded it with `sched_getcpu` (a few nanoseconds: glibc reads it from
    /// the rseq area); otherwise sleep at once. The default.
    ///
    /// A condition variable is often notified in both directions by the same two processes
    /// (each waits for its turn, then hands the turn over and notifies), so its waiter may
    /// itself be the last notifier. It records the CPU of the last notifier and of the last
    /// waiter, and a waiter spins unless both ran on its own CPU (the one besides itself is
    /// the other side).
    #[default]
    Adaptive,
}

/// The longest a waiter spins before it sleeps: a fraction of what one sleep/wake round costs,
/// so that a spin that fails costs little more than sleeping at once would have.
pub const SPIN_BUDGET: Duration = Duration::from_micros(20);

/// How many spin iterations run between two reads of the clock.
const CHECK_EVERY: u32 = 64;

/// "Nobody recorded a CPU yet."
pub(crate) const NO_CPU: u32 = u32::MAX;

/// Records the calling thread's CPU in `hint`, for waiters deciding whether to spin.
#[inline]
pub(crate) fn record_cpu(hint: &AtomicU32) {
    let cpu = sys::current_cpu();
    // Skip the store when it would not change anything: the line stays shared.
    if hint.load(Ordering::Relaxed) != cpu {
        hint.store(cpu, Ordering::Relaxed);
    }
}

/// Records the calling thread's CPU in `hint` and returns the CPU it held before: for a
/// primitive that keeps the last of several parties (a condvar's last waiter).
#[inline]
pub(crate) fn swap_cpu(hint: &AtomicU32) -> u32 {
    let cpu = sys::current_cpu();
    let before = hint.load(Ordering::Relaxed);
    if before != cpu {
        hint.store(cpu, Ordering::Relaxed);
    }
    before
}

impl Spin {
    /// Whether to spin, given the CPUs the other side may run on (as recorded, [`NO_CPU`] if
    /// unknown): unless every one of them is this thread's CPU.
    fn pays(self, others: &[u32]) -> bool {
        match self {
            Spin::Never => false,
            Spin::Always => true,
            Spin::Adaptive => {
                if cfg!(miri) {
                    return true;
                }
                let me = sys::current_cpu();
                // Unknown placement (nobody recorded yet, or no CPU number): spin, bounded.
                others.iter().any(|&other| other == NO_CPU || other != me)
            }
        }
    }

    /// Spins until `ready()` returns true (`true`) or the budget is spent or spinning does not
    /// pay (`false`), the other side having last run on the CPU in `hint`.
    pub(crate) fn run(self, hint: &AtomicU32, ready: impl FnMut() -> bool) -> bool {
        if self == Spin::Never {
            return false;
        }
        self.run_against(&[hint.load(Ordering::Relaxed)], ready)
    }

    /// [`run`](Spin::run) for a primitive that knows several CPUs the other side may run on.
    pub(crate) fn run_against(self, others: &[u32], mut ready: impl FnMut() -> bool) -> bool {
        if !self.pays(others) {
            return false;
        }
        let start = Instant::now();
        loop {
            for _ in 0..CHECK_EVERY {
                if ready() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= SPIN_BUDGET {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_does_not_call_ready_and_always_stops_at_success() {
        let hint = AtomicU32::new(NO_CPU);
        let mut calls = 0;
        assert!(!Spin::Never.run(&hint, || {
            calls += 1;
            true
        }));
        assert_eq!(calls, 0);
        let mut n = 0;
        assert!(Spin::Always.run(&hint, || {
            n += 1;
            n == 10
        }));
        assert_eq!(n, 10);
        // A condition that never holds ends when the budget is spent.
        assert!(!Spin::Always.run(&hint, || false));
    }

    #[test]
    #[cfg_attr(miri, ignore = "sched_getcpu is not available under Miri")]
    fn adaptive_does_not_spin_against_its_own_cpu() {
        let hint = AtomicU32::new(NO_CPU);
        record_cpu(&hint);
        // Pin to the CPU just recorded, so that it cannot change under the test.
        let cpu = hint.load(Ordering::Relaxed) as usize;
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        let old = rustix::thread::sched_getaffinity(None).unwrap();
        rustix::thread::sched_setaffinity(None, &set).unwrap();
        let spun = Spin::Adaptive.run(&hint, || true);
        rustix::thread::sched_setaffinity(None, &old).unwrap();
        assert!(!spun, "spun although the other side ran on this CPU");
        // Another CPU (or an unknown one): it spins.
        hint.store(cpu as u32 + 1, Ordering::Relaxed);
        assert!(Spin::Adaptive.run(&hint, || true));
    }

    #[test]
    #[cfg_attr(miri, ignore = "sched_getcpu is not available under Miri")]
    fn adaptive_against_several_cpus_spins_unless_all_are_its_own() {
        let hint = AtomicU32::new(NO_CPU);
        assert_eq!(swap_cpu(&hint), NO_CPU);
        let cpu = hint.load(Ordering::Relaxed);
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu as usize);
        let old = rustix::thread::sched_getaffinity(None).unwrap();
        rustix::thread::sched_setaffinity(None, &set).unwrap();
        assert_eq!(swap_cpu(&hint), cpu, "returns what was recorded before");
        let own = Spin::Adaptive.run_against(&[cpu, cpu], || true);
        let mixed = Spin::Adaptive.run_against(&[cpu, cpu + 1], || true);
        let unknown = Spin::Adaptive.run_against(&[NO_CPU, cpu], || true);
        rustix::thread::sched_setaffinity(None, &old).unwrap();
        assert!(!own, "spun although every party ran on this CPU");
        assert!(mixed && unknown);
    }
}
