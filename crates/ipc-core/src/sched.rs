//! Giving the CPU up while waiting, and telling what the give-up was spent on: shared by the
//! async adapter's `YieldPolicy` (feature `tokio`; [`yield_within_tick`]) and `ipc-shm`'s
//! pattern waits ([`yield_timed`]).
//!
//! ```
//! use std::time::Duration;
//!
//! // With nobody else runnable on this CPU, a yield returns at once.
//! let _short = ipc_core::sched::yield_within(Duration::from_secs(1));
//! ```
//!
//! # References
//! - [`sched_yield(2)`](https://man7.org/linux/man-pages/man2/sched_yield.2.html)

use std::time::{Duration, Instant};

/// Gives the CPU up once (`sched_yield(2)`) and says whether the thread was back within
/// `limit` (two reads of the monotonic clock, from the vDSO). A short yield let a peer that
/// was runnable on this CPU run briefly, or found nobody else runnable; a long one handed the
/// CPU to a busy task for its time slice, which is worth knowing before yielding to it again.
#[doc(alias = "sched_yield")]
pub fn yield_within(limit: Duration) -> bool {
    yield_timed() < limit
}

/// Gives the CPU up once (`sched_yield(2)`) and says how long the thread was away (two reads
/// of the monotonic clock, from the vDSO): [`yield_within`] for a caller that weighs the time
/// itself (`ipc-shm`'s pub-sub subscribers count what their yields gave their siblings).
#[doc(alias = "sched_yield")]
pub fn yield_timed() -> Duration {
    let start = Instant::now();
    std::thread::yield_now();
    start.elapsed()
}

/// Gives the CPU up once (`sched_yield(2)`) and says whether the thread was back before the
/// next scheduler tick: whether `CLOCK_MONOTONIC_COARSE` (the time of the last tick, read
/// from the vDSO without the time-stamp counter) reads the same after the yield as before.
///
/// The cheaper form of [`yield_within`] for a caller that yields on every call: two coarse
/// reads cost about 20 ns where two precise ones cost about 60 ns, more right after a
/// context switch (a same-core POSIX queue ping-pong of the async adapter measured ~100 ns
/// per round trip less). The limit is the tick (1 to 10 ms, `CONFIG_HZ`): a task that got
/// the CPU for its time slice is preempted at a tick, so such a yield almost always reads
/// a new tick; a brief turn of a peer (a few µs) crosses one with a probability of its length
/// over the tick's (about 1 in 1,000), and a busy task that runs less than a tick before it
/// sleeps goes unseen.
///
/// ```
/// // With nobody else runnable on this CPU, a yield returns at once (within the tick
/// // unless one falls in those few microseconds).
/// let _same_tick = ipc_core::sched::yield_within_tick();
/// ```
#[doc(alias = "sched_yield")]
#[doc(alias = "CLOCK_MONOTONIC_COARSE")]
pub fn yield_within_tick() -> bool {
    let coarse = rustix::time::ClockId::MonotonicCoarse;
    let before = rustix::time::clock_gettime(coarse);
    std::thread::yield_now();
    let after = rustix::time::clock_gettime(coarse);
    (before.tv_sec, before.tv_nsec) == (after.tv_sec, after.tv_nsec)
}

#[cfg(test)]
mod tests {
    /// A yield that gives the CPU away for longer than a tick is seen: a thread pinned to
    /// this CPU spins for 30 ms, past any tick (10 ms at `CONFIG_HZ=100`), and the yield
    /// hands it the CPU until a tick preempts it... unless the scheduler gives the CPU
    /// back earlier, so the test asks only that some of several such yields see it.
    #[test]
    fn a_yield_to_a_busy_thread_on_this_cpu_crosses_a_tick() {
        fn pin_here(cpu: usize) {
            let mut set = rustix::thread::CpuSet::new();
            set.set(cpu);
            rustix::thread::sched_setaffinity(None, &set).unwrap();
        }
        let cpu = rustix::thread::sched_getcpu();
        pin_here(cpu);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_here(cpu);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let crossed = (0..20).filter(|_| !super::yield_within_tick()).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        assert!(crossed > 0, "no yield to a spinning thread crossed a tick");
    }
}
