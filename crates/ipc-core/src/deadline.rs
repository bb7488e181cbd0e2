//! [`Deadline`]: how long a blocking operation may wait (never give up, do not wait, or until an
//! instant on the monotonic clock).

use std::time::{Duration, Instant};

use rustix::time::Timespec;

/// How long an operation may wait.
///
/// Every blocking operation in the workspace takes a deadline. Deadlines are instants on the
/// monotonic clock ([`Instant`]), so a change of the wall clock never shortens or stretches a
/// wait; APIs that need a wall-clock time (POSIX message queues) convert at the last moment.
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
    fn min_picks_the_earlier() {
        let a = Deadline::after(Duration::from_secs(1));
        let b = Deadline::after(Duration::from_secs(5));
        assert_eq!(a.min(b), a);
        assert_eq!(Deadline::Never.min(b), b);
        assert_eq!(Deadline::Now.min(b), Deadline::Now);
    }
}
