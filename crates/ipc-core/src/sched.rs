//! Giving the CPU up while waiting, and telling what the give-up was spent on: shared by the
//! async adapter's [`YieldPolicy`](crate::YieldPolicy) and `ipc-shm`'s pattern waits.
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
    let start = Instant::now();
    std::thread::yield_now();
    start.elapsed() < limit
}
