//! How endpoints wait: the [`WaitPolicy`] a channel end follows; for the pattern endpoints
//! (publish-subscribe, MPSC), spinning while another CPU may serve them ([`Spin`]), then
//! sleeping on a futex word in the segment in growing slices ([`Rounds`]), raising a flag the
//! waker checks ([`sleep_flagged`]) so no wake-up is lost; and the asymmetric fences that let
//! the channel's message path skip a full fence ([`Fences`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering, compiler_fence, fence};
use std::time::Duration;

/// How a blocking channel call waits for its peer ([`ChannelOptions::wait`](crate::ChannelOptions::wait),
/// [`Sender::set_wait`](crate::Sender::set_wait), [`Receiver::set_wait`](crate::Receiver::set_wait)).
///
/// Whatever the policy, a peer that closes or dies is reported as
/// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected), and deadlines are honoured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WaitPolicy {
    /// Spin for the spin budget while the peer may be running on another CPU (it is attached,
    /// awake, and not pinned to this end's CPU), then sleep on a futex. The default: a quick
    /// hand-off costs no system call, a long wait costs no CPU.
    #[default]
    Adaptive,
    /// Never sleep: poll the ring until it is ready (for ends on dedicated cores). Costs a
    /// whole CPU while waiting; the peer is checked for death without a system call while the
    /// crate's watcher thread covers it, otherwise with a pidfd poll about once a millisecond.
    Spin,
    /// Never spin: sleep on the futex at once (for shared or oversubscribed CPUs, and
    /// battery-powered machines). Every wait that finds nothing costs a sleep and a wake-up.
    Sleep,
}

impl WaitPolicy {
    /// The value stored in a channel header.
    pub(crate) fn to_word(self) -> u32 {
        match self {
            WaitPolicy::Adaptive => 0,
            WaitPolicy::Spin => 1,
            WaitPolicy::Sleep => 2,
        }
    }

    /// The policy a header's word names, or `None` for a word no library writes.
    pub(crate) fn from_word(w: u32) -> Option<WaitPolicy> {
        Some(match w {
            0 => WaitPolicy::Adaptive,
            1 => WaitPolicy::Spin,
            2 => WaitPolicy::Sleep,
            _ => return None,
        })
    }
}

/// The spin budget of [`WaitPolicy::Adaptive`] unless chosen otherwise: a sleep and wake-up
/// across CPUs costs tens of microseconds; a hand-off seen while spinning, well under one.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(30);

/// The largest spin budget a channel header can carry (`u32` nanoseconds).
pub const MAX_SPIN: Duration = Duration::from_nanos(u32::MAX as u64);

/// Asymmetric fences for the sleeping flag protocol (a waker stores what the sleeper waits
/// for, then loads the sleeper's flag; the sleeper stores its flag, then loads what it waits
/// for: each side needs its store ordered before its load, or a wake-up can be lost).
///
/// The waker runs once per message, the sleeper once per sleep. So instead of a full fence
/// on every message, a process that registered for `membarrier(2)`'s global expedited
/// command ([`light`](Fences::light)) orders the message path with a compiler fence only, and
/// every sleeper calls `MEMBARRIER_CMD_GLOBAL_EXPEDITED` after raising its flag: that runs a
/// full barrier on every CPU running a registered process, so the waker's store is visible to
/// the sleeper's check, or the sleeper's flag to the waker's load. Where the kernel refuses
/// the registration, the message path keeps a full fence; where a sleeper cannot make the
/// call, it sleeps in bounded slices (a wake-up it misses costs at most a slice).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fences {
    light: bool,
}

impl Fences {
    /// This process's fences: registers for global expedited `membarrier` at the first call.
    pub(crate) fn get() -> Fences {
        static LIGHT: OnceLock<bool> = OnceLock::new();
        let light = *LIGHT.get_or_init(|| {
            rustix::thread::membarrier(rustix::thread::MembarrierCommand::RegisterGlobalExpedited)
                .is_ok()
        });
        Fences { light }
    }

    /// The waker's side, between its store and its load of the sleeper's flag.
    #[inline]
    pub(crate) fn after_publish(self) {
        if self.light {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The sleeper's side, between raising its flag and its last check: a full fence, and the
    /// `membarrier` call unless `skip` (both ends pinned to this very CPU, where nothing can
    /// be reordered against us). Returns whether a waker that skips its fence is covered;
    /// if not, the sleep must be bounded.
    pub(crate) fn before_sleep(skip: bool) -> bool {
        fence(Ordering::SeqCst);
        if skip {
            return false;
        }
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_ok()
    }
}

use ipc_core::{Deadline, ErrorKind, Result, futex};

/// The first and the longest sleep between two liveness checks while waiting.
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(50);

/// The spin phase of a wait: keeps going for [`DEFAULT_SPIN`] on the first round of a wait that
/// may block, on a machine with more than one CPU, unless everyone it waits for is pinned to
/// the very CPU this end is pinned to (then nobody can serve it while it spins); otherwise one
/// look only. Decided, and the clock first read, only once a first look found nothing (a wait
/// that succeeds at once costs neither); then the clock is read once per 64 looks.
pub(crate) struct Spin {
    may: bool,
    until: Option<std::time::Instant>,
    looks: u32,
}

impl Spin {
    pub(crate) fn new(deadline: Deadline, round: u32) -> Spin {
        Spin {
            may: round == 0 && deadline != Deadline::Now && crate::sys::online_cpus() > 1,
            until: None,
            looks: 0,
        }
    }

    /// Whether to look again (after a pause hint). `on_my_cpu`: whether everyone waited for is
    /// pinned to this end's CPU, asked once, after the first look.
    pub(crate) fn again(&mut self, on_my_cpu: impl FnOnce() -> bool) -> bool {
        if std::mem::take(&mut self.may) && !on_my_cpu() {
            self.until = Some(std::time::Instant::now() + DEFAULT_SPIN);
        }
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
