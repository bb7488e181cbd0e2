//! [`Deadline`]: how long a blocking operation may wait (never give up, do not wait, or until an
//! instant on the monotonic clock).

use std::time::{Duration, Instant};

use rustix::time::{ClockId, Timespec};

/// How long an operation may wait.
///
/// Every blocking operation in the workspace takes a deadline. Deadlines are instants on the
/// monotonic clock ([`Instant`]), so a change of the wall clock never shortens or stretches a
/// wait: no wait in the workspace passes a wall-clock time to the kernel (POSIX message
/// queues, whose timed calls take one, wait with `poll(2)` instead).
///
/// ```
/// use std::time::Duration;
/// use ipc_core::Deadline;
///
/// let d = Deadline::after(Duration::from_millis(50));
/// assert!(!d.has_passed());
/// assert!(d.remaining().unwrap() <= Duration::from_millis(50));
/// assert_eq!(Deadline::Now.remaining(), Some(Duration::ZERO));
/// assert_eq!(Deadline::Never.remaining(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Do not wait: fail with [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) at once.
    Now,
    /// Wait until this instant, then fail with [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut).
    At(Instant),
}

impl Deadline {
    /// The deadline `timeout` from now. A timeout too large to represent means [`Deadline::Never`].
    pub fn after(timeout: Duration) -> Deadline {
        Instant::now()
            .checked_add(timeout)
            .map_or(Deadline::Never, Deadline::At)
    }

    /// The time left: `None` for [`Deadline::Never`], zero once the deadline has passed.
    pub fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(t) => Some(t.saturating_duration_since(Instant::now())),
        }
    }

    /// Whether no more waiting is allowed.
    pub fn has_passed(self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }

    /// The time left as a relative [`Timespec`], as `poll`, `ppoll` and futex waits take it.
    pub fn timespec(self) -> Option<Timespec> {
        self.remaining().map(|d| Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        })
    }

    /// This deadline as an absolute time on `clock`, for the system calls that take one
    /// (`FUTEX_WAIT_BITSET` and `pthread_mutex_clocklock` on `CLOCK_MONOTONIC`; any clock for
    /// callers outside the workspace, none of whose waits passes a wall-clock time):
    /// `None` for [`Deadline::Never`], the
    /// clock's epoch for [`Deadline::Now`] (already passed, so no wait), and for
    /// [`Deadline::At`] the clock read now plus the time left.
    ///
    /// Compute it immediately before the call: the conversion reads `clock` after
    /// [`Instant::now`], so the result is never earlier than the deadline, and a wall clock
    /// stepped between conversion and call shifts the wait by the step (`CLOCK_MONOTONIC`,
    /// the clock [`Instant`] reads on Linux, never steps).
    pub fn absolute(self, clock: ClockId) -> Option<Timespec> {
        let remaining = match self {
            Deadline::Never => return None,
            Deadline::Now => {
                return Some(Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                });
            }
            Deadline::At(at) => at.saturating_duration_since(Instant::now()),
        };
        let now = rustix::time::clock_gettime(clock);
        let mut sec = now
            .tv_sec
            .saturating_add(i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX));
        let mut nsec = now.tv_nsec + i64::from(remaining.subsec_nanos());
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        Some(Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        })
    }

    /// The error a wait that ran out of time reports: [`ErrorKind::WouldBlock`] for
    /// [`Deadline::Now`] (the caller asked not to wait), [`ErrorKind::TimedOut`] otherwise.
    ///
    /// [`ErrorKind::WouldBlock`]: crate::ErrorKind::WouldBlock
    /// [`ErrorKind::TimedOut`]: crate::ErrorKind::TimedOut
    pub fn expired_error(self, blocked: crate::Blocked) -> crate::Error {
        match self {
            Deadline::Now => crate::Error::would_block(blocked),
            _ => crate::Error::timed_out(),
        }
    }

    /// The earlier of two deadlines.
    #[must_use]
    pub fn min(self, other: Deadline) -> Deadline {
        match (self, other) {
            (Deadline::Now, _) | (_, Deadline::Now) => Deadline::Now,
            (Deadline::Never, d) | (d, Deadline::Never) => d,
            (Deadline::At(a), Deadline::At(b)) => Deadline::At(a.min(b)),
        }
    }
}

impl From<Option<Duration>> for Deadline {
    /// `None` waits forever; `Some(d)` waits at most `d` from now.
    fn from(timeout: Option<Duration>) -> Deadline {
        timeout.map_or(Deadline::Never, Deadline::after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_deadline_has_zero_remaining() {
        let d = Deadline::At(Instant::now() - Duration::from_secs(1));
        assert!(d.has_passed());
        assert_eq!(d.timespec().unwrap().tv_sec, 0);
    }

    #[test]
    fn huge_timeout_is_never() {
        assert_eq!(Deadline::after(Duration::MAX), Deadline::Never);
    }

    #[test]
    fn absolute_is_normalised_and_not_early() {
        let ns = |t: Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
        for clock in [ClockId::Monotonic, ClockId::Realtime] {
            let before = ns(rustix::time::clock_gettime(clock));
            let d = Deadline::At(Instant::now() + Duration::from_millis(1500));
            let ts = d.absolute(clock).unwrap();
            let after = ns(rustix::time::clock_gettime(clock));
            assert!((0..1_000_000_000).contains(&ts.tv_nsec));
            // The deadline is 1.5 s after a reading taken after `before`, and the conversion
            // never rounds down: before + 1.5 s <= ts <= after + 1.5 s.
            assert!(ns(ts) >= before + 1_500_000_000);
            assert!(ns(ts) <= after + 1_500_000_000);
        }
        assert_eq!(Deadline::Never.absolute(ClockId::Monotonic), None);
        assert_eq!(ns(Deadline::Now.absolute(ClockId::Realtime).unwrap()), 0);
    }

    #[test]
    fn min_picks_the_earlier() {
        let a = Deadline::after(Duration::from_secs(1));
        let b = Deadline::after(Duration::from_secs(5));
        assert_eq!(a.min(b), a);
        assert_eq!(Deadline::Never.min(b), b);
        assert_eq!(Deadline::Now.min(b), Deadline::Now);
    }
}
