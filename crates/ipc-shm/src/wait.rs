//! How endpoints wait: the [`WaitPolicy`] a channel end follows; for the pattern endpoints
//! (publish-subscribe, MPSC), spinning while another CPU may serve them and yielding their CPU
//! to any other runnable task ([`Spin`]), then
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

use crate::bell::SLEEPING_ON_FUTEX;

/// The first and the longest sleep between two liveness checks while waiting.
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(50);

/// How long a wait that another CPU may serve spins without giving its CPU up: several
/// cross-CPU hand-offs (each well under a microsecond), so a peer that answers at once is seen
/// at spin speed.
const PURE_SPIN: Duration = Duration::from_micros(2);

/// Looks between two clock reads, and past [`PURE_SPIN`] between two yields.
const SLICE_LOOKS: u32 = 64;

/// A yield that keeps the thread off its CPU longer than this gave the CPU to a busy task
/// (not a peer answering at once, nor a sibling that only had a message to handle): the
/// CPU is contended, and a waiter sitting runnable behind that task would see its hand-off
/// only when the task's time slice ends. It sleeps instead (a sleeper is woken, and gets the
/// CPU back, as soon as it is served), and the next [`SKIP_WAITS`] waits of its thread spin
/// without yielding. The rule is `ipc_core::tokio`'s `YieldPolicy::Adaptive`, with a longer
/// figure: a chain of sibling subscribers, each handling its message and yielding on, must not
/// count (16 subscriber threads on one CPU made chains over 250 us, and spinning out their
/// budgets one after another then cost ~0.5 ms per message), while a task that never pauses
/// holds the CPU for a whole time slice (EEVDF's 0.75 ms base slice, scaled up with the number
/// of CPUs; yields of over 1 ms beside such a task on the 2-CPU benchmark machine).
const LONG_YIELD: Duration = Duration::from_micros(1000);

/// The waits of a thread that skip yielding after a [`LONG_YIELD`]: the next one yields
/// again, to look whether the CPU is still contended.
const SKIP_WAITS: u32 = 15;

/// In a wait with siblings on its CPU ([`Spin::again_among`]), a yield that kept the thread
/// off its CPU longer than this (one with nobody else runnable returns well within it) ran
/// the siblings: that time is theirs, not this wait's spinning, and the end of the spin phase
/// moves on by as much (up to [`SIBLING_SPIN_WALL`] after it began), so the budget counts the
/// waiter's own time on the CPU.
const SIBLING_YIELD: Duration = Duration::from_micros(2);

/// The longest the spin phase of a wait with siblings on its CPU lasts on the wall clock,
/// however much of it went to them: about one 1 MiB message's turn of 16 subscriber threads
/// on the 2-vCPU benchmark machine. Longer (10 ms was tried) keeps idle siblings yielding
/// to each other where a sleep is cheaper: in some runs 16 subscribers of 64 KiB messages
/// then made 8 yields per message instead of under 1, at a fifth of the throughput.
const SIBLING_SPIN_WALL: Duration = Duration::from_micros(200);

std::thread_local! {
    /// This thread's waits still to skip yielding ([`SKIP_WAITS`]), and how many waits
    /// skipped so far (for the tests).
    static SKIP: std::cell::Cell<(u32, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// What the tests observe of the waits (hidden).
#[doc(hidden)]
pub mod testing {
    /// The pattern endpoints' waits on this thread that skipped yielding because a yield
    /// before them kept the thread off its CPU for long (a busy task held it).
    pub fn waits_skipping_yields() -> u64 {
        super::SKIP.get().1
    }
}

/// The spin phase of a wait (the pattern endpoints'): keeps looking for up to [`DEFAULT_SPIN`]
/// on the first round of a wait that may block, without ever keeping its CPU from another
/// runnable task.
///
/// - While another CPU may serve it (a machine with more than one CPU, and not everyone it
///   waits for pinned to this end's CPU), it spins for [`PURE_SPIN`], then gives the CPU up
///   (`sched_yield(2)`) after every slice of 64 looks. A yield with nobody else runnable on
///   this CPU returns at once, so a dedicated core loses one system call per slice; a task
///   that shares the CPU briefly (a sibling subscriber with a message to handle, a producer
///   with one to write) runs instead of waiting for the spin budget to end.
/// - When nobody can serve it while it spins (one CPU, or everyone it waits for pinned to
///   this end's CPU), a blocking wait yields before every look: a runnable peer on this CPU
///   publishes or drains a batch before this end announces a sleep (publish-subscribe; the
///   waits made [`cross_cpu_only`](Spin::cross_cpu_only) look once only there).
/// - While another CPU may serve it, a yield that kept the thread off the CPU for more than
///   [`LONG_YIELD`] ends the phase (the wait looks once more, then sleeps), and the next
///   [`SKIP_WAITS`] waits of the thread do not yield: they spin out the budget, then sleep, as
///   a spin did before yields (a busy task on this CPU gets its share from the scheduler; a
///   waiter that yielded to it each slice would see its hand-off only when the task's time
///   slice ends). The yield-only phase has no such rule: there the tasks waited for run on
///   this CPU only when it yields, and a long yield is them publishing or draining a batch.
/// - A pub-sub subscriber with siblings on its CPU ([`again_among`](Spin::again_among))
///   spins on its own time only: what its yields give its siblings does not count, and a
///   long yield is them working, not a busy task.
///
/// Decided, and the clock first read, only once a first look found nothing (a wait that
/// succeeds at once costs neither).
pub(crate) struct Spin {
    may: bool,
    /// The wait's deadline: the spin phase of a wait with siblings ends by it.
    deadline: Deadline,
    /// Whether the yield-only phase applies (the pub-sub's blocking waits) or not
    /// ([`cross_cpu_only`](Spin::cross_cpu_only)).
    share: bool,
    phase: Phase,
    looks: u32,
}

/// Where a [`Spin`] stands once decided.
#[derive(Clone, Copy)]
enum Phase {
    /// No more looks.
    Done,
    /// Spin until `pure`, then yield between slices (if `yields`), until `until`.
    Spin {
        pure: std::time::Instant,
        until: std::time::Instant,
        yields: bool,
        /// Siblings share this CPU: the time yields give them is not spent spinning, up to
        /// this instant ([`SIBLING_SPIN_WALL`] after the wait began, or its deadline if
        /// sooner).
        siblings: Option<std::time::Instant>,
    },
    /// Yield before every look until `until`.
    Yield { until: std::time::Instant },
}

impl Spin {
    /// A blocking wait's spin phase (round `round`, ending at `deadline`).
    pub(crate) fn new(deadline: Deadline, round: u32) -> Spin {
        Spin {
            may: round == 0 && deadline != Deadline::Now,
            deadline,
            share: true,
            phase: Phase::Done,
            looks: 0,
        }
    }

    /// Without the yield-only phase: one look only when nobody can serve this wait while it
    /// spins. For `Readiness::arm` (the runtime's own yield policy decides there) and the MPSC
    /// ends (producers streaming on one CPU would yield to each other for the whole budget
    /// while the consumer waits for the CPU: they sleep at once, and the consumer wakes them).
    pub(crate) fn cross_cpu_only(self) -> Spin {
        Spin {
            share: false,
            ..self
        }
    }

    /// Whether to look again (after a pause hint or a yield). `on_my_cpu`: whether everyone
    /// waited for is pinned to this end's CPU, asked once, after the first look.
    pub(crate) fn again(&mut self, on_my_cpu: impl FnOnce() -> bool) -> bool {
        self.again_among(on_my_cpu, || false)
    }

    /// [`again`](Spin::again) for a waiter that may have siblings: other waiters of the same
    /// kind pinned to its CPU (a pub-sub's subscribers), asked once with `on_my_cpu`. While
    /// another CPU serves the wait, it yields to them between slices, and the time they run
    /// does not count against its budget (up to [`SIBLING_SPIN_WALL`]), nor does a long
    /// yield count as a busy task ([`LONG_YIELD`]): it is them handling their messages. So
    /// siblings take turns on their CPU, as pollers do, rather than each spinning its budget
    /// out on their work and sleeping, which costs a futex wait, a wake-up by the publisher
    /// and a liveness check per message each.
    pub(crate) fn again_among(
        &mut self,
        on_my_cpu: impl FnOnce() -> bool,
        siblings: impl FnOnce() -> bool,
    ) -> bool {
        if std::mem::take(&mut self.may) {
            let now = std::time::Instant::now();
            let until = now + DEFAULT_SPIN;
            self.phase = if crate::sys::online_cpus() > 1 && !on_my_cpu() {
                let siblings =
                    (self.share && siblings()).then(|| self.by_deadline(now + SIBLING_SPIN_WALL));
                let (skip, skipped) = SKIP.get();
                SKIP.set((skip.saturating_sub(1), skipped + u64::from(skip > 0)));
                Phase::Spin {
                    pure: now + PURE_SPIN,
                    until,
                    yields: skip == 0 || siblings.is_some(),
                    siblings,
                }
            } else if self.share {
                Phase::Yield { until }
            } else {
                Phase::Done
            };
        }
        match self.phase {
            Phase::Done => false,
            Phase::Yield { until } => {
                if std::time::Instant::now() >= until {
                    return false;
                }
                std::thread::yield_now();
                true
            }
            Phase::Spin {
                pure,
                until,
                yields,
                ..
            } => {
                self.looks = self.looks.wrapping_add(1);
                if self.looks % SLICE_LOOKS != 0 {
                    std::hint::spin_loop();
                    return true;
                }
                let now = std::time::Instant::now();
                if now < pure {
                    std::hint::spin_loop();
                    return true;
                }
                if now >= until {
                    return false;
                }
                if yields {
                    self.give_way();
                } else {
                    std::hint::spin_loop();
                }
                true
            }
        }
    }

    /// Whether [`extend`](Spin::extend) would extend this phase: it spins while another CPU
    /// may serve the wait (so a waiter can skip looking for a reason to extend it: a wait
    /// that must not block, one after a sleep, or one nobody else can serve).
    pub(crate) fn extensible(&self) -> bool {
        matches!(self.phase, Phase::Spin { siblings: None, .. })
    }

    /// Lets a spin phase that spins while another CPU may serve the wait (not one that
    /// yields only, nor one that has ended: nobody else could serve it, or a busy task holds
    /// this CPU) go on for `more` from now, or to the wait's deadline if sooner. Returns whether
    /// it did. For a waiter that sees its peer visibly at work on another CPU (an MPSC
    /// producer mid-copy), where spinning on costs only this waiter's own CPU.
    pub(crate) fn extend(&mut self, more: Duration) -> bool {
        let later = self.by_deadline(std::time::Instant::now() + more);
        let Phase::Spin {
            until,
            siblings: None,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        *until = later;
        true
    }

    /// `t`, or this wait's deadline if that is sooner.
    fn by_deadline(&self, t: std::time::Instant) -> std::time::Instant {
        match self.deadline {
            Deadline::At(at) => t.min(at),
            _ => t,
        }
    }

    /// Yields the CPU once (while another CPU may serve the wait), to look once more; if that
    /// kept the thread off the CPU longer than [`LONG_YIELD`], that look is the last (the wait
    /// sleeps next), and the thread's next [`SKIP_WAITS`] waits spin without yielding.
    ///
    /// With siblings on this CPU, a yield that ran them ([`SIBLING_YIELD`]) moves the end of
    /// the spin phase on by the time they had, up to its wall-clock cap, however long.
    fn give_way(&mut self) {
        let away = ipc_core::sched::yield_timed();
        if let Phase::Spin {
            until,
            siblings: Some(cap),
            ..
        } = &mut self.phase
        {
            if away > SIBLING_YIELD {
                *until = (*until + away).min(*cap);
            }
        } else if away >= LONG_YIELD {
            SKIP.set((SKIP_WAITS, SKIP.get().1));
            self.phase = Phase::Done;
        }
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
    flag.store(SLEEPING_ON_FUTEX, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let r = match ready() {
        Ok(true) => Ok(()),
        Ok(false) => nap(word, seen, until),
        Err(e) => Err(e),
    };
    flag.store(0, Ordering::Relaxed);
    r
}

/// The waker's side of [`sleep_flagged`] (and of a doorbell wait on the same flag): if `flag`
/// is up, takes it down and wakes every waiter on `word` (a sleeper and the end's bell
/// thread), bumping it first; returns whether it did. The first waker takes the flag down (a
/// swap, made only once the plain load has seen it up, so the per-message path stays one
/// load): one wake-up per sleep, however many messages are published before the sleeper runs
/// again. SeqCst: ordered after the caller's SeqCst store of what the sleeper waits for.
#[inline]
pub(crate) fn wake_flagged(flag: &AtomicU32, word: &AtomicU32) -> bool {
    if flag.load(Ordering::SeqCst) != 0 && flag.swap(0, Ordering::SeqCst) != 0 {
        word.fetch_add(1, Ordering::Release);
        futex::wake_all(word);
        return true;
    }
    false
}

/// Polls that find nothing (non-blocking calls, [`WaitPolicy::Spin`](crate::WaitPolicy::Spin))
/// check the peer's process with a syscall at most this often.
pub(crate) const POLL_CHECK: Duration = Duration::from_millis(1);

/// When a call that found nothing to do and does not wait checks its peer's process (a
/// syscall): on every 64th such call, and on the first after a wait armed with the peer not
/// watched by the watcher thread (one in another PID namespace: the doorbell ends such a wait
/// every slice, so the peer's death is seen within a slice, not 64); in both cases at most
/// once per [`POLL_CHECK`] (one clock read per check considered). One per end.
#[derive(Debug, Default)]
pub(crate) struct PollCheck {
    polls: u32,
    last: Option<std::time::Instant>,
}

impl PollCheck {
    /// Whether this call checks the peer now; `after_unwatched`: the end's last wait was armed
    /// with its peer not watched.
    pub(crate) fn due(&mut self, after_unwatched: bool) -> bool {
        self.polls = self.polls.wrapping_add(1);
        if !after_unwatched && self.polls % 64 != 1 {
            return false;
        }
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < POLL_CHECK)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_poll_check_is_due_every_64th_call_and_after_an_unwatched_wait() {
        let mut c = super::PollCheck::default();
        assert!(c.due(false), "the first");
        assert!(!(0..63).any(|_| c.due(false)), "not the next 63");
        std::thread::sleep(super::POLL_CHECK);
        assert!(c.due(false), "the 65th");
        std::thread::sleep(super::POLL_CHECK);
        assert!(c.due(true), "the first after an unwatched wait");
        assert!(!c.due(false), "then counting again");
    }
}
