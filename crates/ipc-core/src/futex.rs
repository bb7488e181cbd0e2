//! Futex waits and wakes on a 32-bit word in any mapping, shared between processes.
//!
//! The building block under `ipc-sync`'s primitives and `ipc-shm`'s channels: any crate can
//! sleep on a word of its own layout (a sequence number, a ring index, a state flag).
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
//! use ipc_core::futex;
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
use std::time::Duration;

use crate::{Deadline, Error, ErrorKind, Result};
use rustix::io::Errno;
use rustix::thread::futex as sys;
use rustix::time::ClockId;

/// How long a primitive of `ipc-sync` sleeps at most before it looks at its word again.
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
            let abs = Deadline::At(at)
                .absolute(ClockId::Monotonic)
                .expect("an instant converts");
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
pub fn wait_recheck(word: &AtomicU32, expected: u32, deadline: Deadline) -> Result<()> {
    if cfg!(miri) {
        return wait(word, expected, deadline);
    }
    match wait(word, expected, deadline.min(Deadline::after(RECHECK))) {
        Err(e) if e.kind() == ErrorKind::TimedOut && !deadline.has_passed() => Ok(()),
        other => other,
    }
}

fn load(word: &AtomicU32) -> u32 {
    word.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

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
}
