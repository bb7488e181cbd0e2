//! How the pattern endpoints (publish-subscribe, MPSC) wait: spin while another CPU may serve
//! them ([`Spin`]), then sleep on a futex word in the segment in growing slices ([`Rounds`]),
//! raising a flag the waker checks ([`sleep_flagged`]) so no wake-up is lost.

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, Result, futex};

/// The first and the longest sleep between two liveness checks while waiting.
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(50);

/// How long a waiter spins before it sleeps, when another CPU may serve it (the channel's
/// figure: a sleep and wake-up across CPUs costs tens of microseconds).
const SPIN_FOR: Duration = Duration::from_micros(30);

/// The spin phase of a wait: keeps going for [`SPIN_FOR`] on the first round of a wait that
/// may block, on a machine with more than one CPU; otherwise one look only. The clock is read
/// once per 64 looks.
pub(crate) struct Spin {
    until: Option<std::time::Instant>,
    looks: u32,
}

impl Spin {
    pub(crate) fn new(deadline: Deadline, round: u32) -> Spin {
        let spin = round == 0 && deadline != Deadline::Now && crate::sys::online_cpus() > 1;
        Spin {
            until: spin.then(|| std::time::Instant::now() + SPIN_FOR),
            looks: 0,
        }
    }

    /// Whether to look again (after a pause hint).
    pub(crate) fn again(&mut self) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        self.looks = self.looks.wrapping_add(1);
        std::hint::spin_loop();
        self.looks % 64 != 0 || std::time::Instant::now() < until
    }
}

/// The rounds of one wait: round 0 spins and checks nothing costly; each later round follows
/// a sleep of one slice (1 ms, doubling to 50 ms) and checks the processes waited for.
pub(crate) struct Rounds {
    slice: Duration,
    pub(crate) round: u32,
}

impl Default for Rounds {
    fn default() -> Rounds {
        Rounds {
            slice: FIRST_SLICE,
            round: 0,
        }
    }
}

impl Rounds {
    /// Whether no sleep has happened yet.
    pub(crate) fn first(&self) -> bool {
        self.round == 0
    }

    /// When this round's sleep ends: the slice, or `deadline` if sooner.
    pub(crate) fn until(&self, deadline: Deadline) -> Deadline {
        deadline.min(Deadline::after(self.slice))
    }

    /// On to the next round (a longer slice).
    pub(crate) fn next(&mut self) {
        self.slice = (self.slice * 2).min(MAX_SLICE);
        self.round = self.round.saturating_add(1);
    }
}

/// Sleeps on `word` (expected `seen`) until it changes, a wake-up, or `until`; all of those just
/// return.
///
/// Errors: what `futex::wait` reports besides a timeout or a changed word.
pub(crate) fn nap(word: &AtomicU32, seen: u32, until: Deadline) -> Result<()> {
    match futex::wait(word, seen, until) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sleeps on `word` until `until` unless `ready` holds once `flag` (this waiter's sleeping
/// flag, which wakers check before bumping `word`) is up: the flag, a full fence, then the
/// check, so a waker either sees the flag or this waiter sees its change.
pub(crate) fn sleep_flagged(
    flag: &AtomicU32,
    word: &AtomicU32,
    until: Deadline,
    ready: impl FnOnce() -> Result<bool>,
) -> Result<()> {
    let seen = word.load(Ordering::Acquire);
    flag.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let r = match ready() {
        Ok(true) => Ok(()),
        Ok(false) => nap(word, seen, until),
        Err(e) => Err(e),
    };
    flag.store(0, Ordering::Relaxed);
    r
}
