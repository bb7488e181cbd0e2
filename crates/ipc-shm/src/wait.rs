//! The channel's one way to sleep and wake across processes: wait on a 32-bit word in shared
//! memory until it changes or a deadline passes, and wake the waiters on it.
//!
//! This is the only place the channel touches the futex syscall.

use std::sync::atomic::AtomicU32;

use ipc_core::Deadline;
use rustix::io::Errno;
use rustix::thread::futex;

/// Sleeps while `word` holds `expected`, until woken or `deadline` (`FUTEX_WAIT`, shared: the
/// word may be in memory mapped by several processes). Returns at once if the value already
/// differs. Spurious returns are possible; callers re-check their condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) {
    if deadline == Deadline::Now {
        return;
    }
    let timeout = deadline.timespec();
    match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
        Ok(()) | Err(Errno::AGAIN | Errno::INTR | Errno::TIMEDOUT) => {}
        // Nothing else is expected for a valid, aligned word; callers re-check and loop.
        Err(e) => tracing::debug!(error = %e, "futex wait failed"),
    }
}

/// Wakes up to `n` waiters on `word` (`FUTEX_WAKE`, shared).
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    if let Err(e) = futex::wake(word, futex::Flags::empty(), n) {
        tracing::debug!(error = %e, "futex wake failed");
    }
}

/// Wakes every waiter on `word` (`FUTEX_WAKE`, shared).
pub(crate) fn wake_all(word: &AtomicU32) {
    wake(word, i32::MAX as u32);
}
