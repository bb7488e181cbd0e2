//! Futex waits and wakes on a 32-bit word in any mapping, shared between processes.
//!
//! The building block under every primitive of this crate, public so that other crates (the
//! shared-memory channels of `ipc-shm`) can sleep on a word of their own layout: a
//! sequence number, a ring index, a state flag.
//!
//! The operations are the *shared* futex operations (no `FUTEX_PRIVATE_FLAG`): the kernel keys
//! the wait queue on the physical page (file and offset for a shared mapping), so a process
//! waiting on a word in a `MAP_SHARED` mapping is woken by any process that maps the same page,
//! at whatever address.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use ipc_core::{Deadline, ErrorKind};
//! use ipc_sync::futex;
//!
//! let word = AtomicU32::new(0);
//! // Nobody changes the word: the wait ends at its deadline.
//! let e = futex::wait(&word, 0, Deadline::after(Duration::from_millis(5))).unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::TimedOut);
//! // A word that no longer holds the expected value returns at once.
//! word.store(1, Ordering::Release);
//! futex::wait(&word, 0, Deadline::Never)?;
//! assert_eq!(futex::wake_all(&word), 0); // nobody was sleeping
//! # Ok::<(), ipc_core::Error>(())
//! ```
//!
//! # References
//! - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
//! - [`futex(7)`](https://man7.org/linux/man-pages/man7/futex.7.html)

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{Deadline, Error, ErrorKind, Result};
use rustix::io::Errno;
use rustix::thread::futex as sys;
use rustix::time::{ClockId, Timespec};

/// How long a primitive of this crate sleeps at most before it looks at its word again.
///
/// A wake-up can be lost to a crash: `post` wakes one sleeper, and that sleeper is
/// `SIGKILL`ed before it takes the unit it was woken for. The unit stays in the count, but the
/// other sleepers were not woken. Each sleeper therefore re-checks its condition after this
/// long even when nobody woke it, which bounds the delay such a crash causes. A sleep that no
/// crash disturbs is ended by its wake-up, never by this timer; to a condvar waiter the timer
/// is a spurious wake-up, which condvar users handle anyway.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Sleeps while `*word == expected`, at most until `deadline`
/// (`FUTEX_WAIT_BITSET` with an absolute `CLOCK_MONOTONIC` time, or `FUTEX_WAIT`).
///
/// Returns `Ok(())` when woken by [`wake`], when `*word` did not hold `expected` when the
/// kernel looked (`EAGAIN`), or when interrupted by a signal (`EINTR`): the caller re-checks
/// its condition in every case, as with any futex.
///
/// Blocks on: a [`wake`] on the same word from any process, a signal, or the deadline.
///
/// # Errors
/// - [`ErrorKind::TimedOut`]: the deadline passed while `*word == expected`.
/// - [`ErrorKind::WouldBlock`]: `deadline` is [`Deadline::Now`] and `*word == expected`.
///
/// # References
/// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
#[doc(alias = "futex")]
#[doc(alias = "FUTEX_WAIT")]
#[doc(alias = "FUTEX_WAIT_BITSET")]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> Result<()> {
    let result = match deadline {
        Deadline::Now => {
            return if load(word) == expected {
                Err(Error::new(ErrorKind::WouldBlock).in_op("futex wait"))
            } else {
                Ok(())
            };
        }
        Deadline::Never => sys::wait(word, sys::Flags::empty(), expected, None),
        Deadline::At(at) => {
            let abs = monotonic_timespec(at);
            sys::wait_bitset(
                word,
                sys::Flags::empty(),
                expected,
                Some(&abs),
                NonZeroU32::MAX,
            )
        }
    };
    match result {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(()),
        Err(Errno::TIMEDOUT) => Err(Error::timed_out().in_op("futex wait")),
        Err(e) => {
            tracing::debug!(error = %e, "futex wait failed");
            Err(Error::from(e).in_op("futex wait"))
        }
    }
}

/// Wakes at most `n` processes or threads sleeping in [`wait`] on `word` (`FUTEX_WAKE`).
/// Returns how many were woken.
///
/// Never blocks. The kernel cannot fail this call for a valid `&AtomicU32`; should it fail
/// anyway, nobody was woken and 0 is returned.
///
/// # References
/// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
#[doc(alias = "FUTEX_WAKE")]
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32);
    sys::wake(word, sys::Flags::empty(), n).unwrap_or(0)
}

/// Wakes every process or thread sleeping in [`wait`] on `word` (`FUTEX_WAKE` with `INT_MAX`).
/// Returns how many were woken.
///
/// # References
/// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

/// [`wait`], but never longer than [`RECHECK`]: an early end is reported as `Ok(())` (a
/// spurious wake-up), a passed `deadline` as the error.
///
/// Under Miri there is no recheck: Miri's clock jumps to the next timeout when every thread
/// sleeps, which would hide a lost wake-up; without it, a lost wake-up is a deadlock that
/// Miri reports.
pub(crate) fn wait_recheck(word: &AtomicU32, expected: u32, deadline: Deadline) -> Result<()> {
    if cfg!(miri) {
        return wait(word, expected, deadline);
    }
    match wait(word, expected, deadline.min(Deadline::after(RECHECK))) {
        Err(e) if e.kind() == ErrorKind::TimedOut && !deadline.has_passed() => Ok(()),
        other => other,
    }
}

/// `at` as an absolute `CLOCK_MONOTONIC` time, the clock [`Instant`] reads on Linux.
///
/// The clock is read after `Instant::now()`, so the result is never earlier than `at`.
pub(crate) fn monotonic_timespec(at: Instant) -> Timespec {
    let remaining = at.saturating_duration_since(Instant::now());
    let now = rustix::time::clock_gettime(ClockId::Monotonic);
    let mut sec = now
        .tv_sec
        .saturating_add(i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX));
    let mut nsec = now.tv_nsec + i64::from(remaining.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn load(word: &AtomicU32) -> u32 {
    word.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_returns_at_once_when_the_word_differs() {
        let w = AtomicU32::new(7);
        wait(&w, 6, Deadline::Never).unwrap();
        wait(&w, 6, Deadline::Now).unwrap();
        assert_eq!(
            wait(&w, 7, Deadline::Now).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }

    #[test]
    fn wait_times_out_at_the_deadline() {
        let w = AtomicU32::new(0);
        let d = Deadline::after(Duration::from_millis(10));
        assert_eq!(wait(&w, 0, d).unwrap_err().kind(), ErrorKind::TimedOut);
        assert!(d.has_passed());
        // A deadline in the past is a timeout too, not a wait.
        let past = Deadline::At(Instant::now() - Duration::from_secs(1));
        assert_eq!(wait(&w, 0, past).unwrap_err().kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn wake_ends_a_wait_in_another_thread() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, Deadline::Never).unwrap();
            }
        });
        w.store(1, Ordering::Release);
        wake_all(&w);
        t.join().unwrap();
    }

    #[test]
    fn monotonic_timespec_is_normalised_and_not_early() {
        let ns = |t: Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
        let before = ns(rustix::time::clock_gettime(ClockId::Monotonic));
        let at = Instant::now() + Duration::from_millis(1500);
        let ts = monotonic_timespec(at);
        let after = ns(rustix::time::clock_gettime(ClockId::Monotonic));
        assert!((0..1_000_000_000).contains(&ts.tv_nsec));
        // `at` is 1.5 s after a reading taken after `before`, and the conversion never rounds
        // down, so: before + 1.5 s <= ts <= after + 1.5 s.
        assert!(ns(ts) >= before + 1_500_000_000);
        assert!(ns(ts) <= after + 1_500_000_000);
    }
}
