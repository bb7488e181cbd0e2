//! The doorbell that makes a channel end pollable: an eventfd in this process, rung directly
//! by a peer that may fetch it (`pidfd_getfd(2)`), or else by a small thread that sleeps on
//! the peer's futex word on the end's behalf.
//!
//! # Two ways to ring, one protocol
//!
//! The peer already wakes a sleeping end through the futex word in the segment, and only
//! when the end's sleeping flag is up (`channel.rs`: `wake_peer`). The doorbell reuses that
//! protocol: an async or poll waiter raises the same flag (with the value
//! [`SLEEPING_ON_BELL`]), and the peer that takes it down rings in one of two ways.
//!
//! - **Directly** ([`Direct`]): the end publishes its eventfd in its side of the header
//!   (descriptor number, `eventfd-id`, its process identity), and the peer fetches it once
//!   with `pidfd_getfd(2)` and from then on wakes the waiter with one eventfd `write`, which
//!   wakes the waiter's `epoll` directly: per wait that sleeps, the same one context switch
//!   as a blocking receive, plus the eventfd's `write` and `read` and the `epoll_wait`.
//! - **Through the bell thread**, when the peer may not fetch it: `pidfd_getfd` needs ptrace
//!   rights over the waiter (same user and dumpable, or `CAP_SYS_PTRACE`; Yama's scope 1,
//!   the default of several distributions, allows it only towards descendants, so between
//!   unrelated processes it is refused). The peer then makes its usual futex wake, and this
//!   end's bell thread, parked on the peer's word, turns it into the eventfd write: one
//!   context switch more per wait that sleeps.
//!
//! Either way nothing else has to reach the other process, whatever the segment kind (POSIX
//! name, memfd, System V) and however it got the segment: no file is left beside the segment
//! (a FIFO would be, after a `SIGKILL`), no server is needed (a Unix socket handing the
//! eventfd over would need one in the creator), and no privilege is needed (without it, the
//! thread rings). While both sides are busy the flag is down and nobody makes a system call
//! per message: the bell rings only for an end that waits. A peer's death wakes the bell
//! thread the way it wakes a sleeper (the `ipc-shm-watch` thread bumps the word), so an async
//! waiter sees `Disconnected` as promptly as a blocking one, whichever way the rings came.
//! The futex wake stays the path for everything but the hand-off (open, detach, close), so
//! the thread is always there to catch it.
//!
//! The bell thread sleeps on the peer's wake word all the time, not only while armed: arming
//! is then two stores and no system call, and the thread is already asleep where the ring
//! will come from (handing it each wait with a `FUTEX_WAKE` cost one system call and, on one
//! core, one more context switch per wait). A wake-up it gets while not armed (this end's
//! blocking receive or send being woken: `wake_peer` wakes every sleeper on the word) only
//! sends it back to sleep.
//!
//! A wait the watcher does not cover, or one whose sleeping flag the peer may miss (both ends
//! on one CPU skip `membarrier`), is *timed*: the thread rings at the end of its slice
//! ([`SLICE`]) so that the waiter looks again. The thread then keeps sleeping in slices for a
//! while (until a second passes without a timed wait): arming a timed wait finds it slicing
//! and wakes nobody, where a wake per wait (a `FUTEX_WAKE` and the thread's round trip
//! through the scheduler) tripled the time of a same-core round trip. So a timed waiter
//! costs, while it keeps waiting, one wake-up of the thread per slice and nothing per wait.
//! Out of its slices the thread still wakes once a second ([`UNTIMED`]): the wake-up a timed
//! `arm` sends can fall between the thread's look and its sleep, and is then lost. An
//! untimed wait found armed through one such whole second is rung then too (the same wait:
//! `arms` did not move), so a waiter whose wake-up never came (a hostile peer cleared the
//! sleeping flag the waker looks at, or the count a subscriber announces its nap in) looks
//! again within two seconds instead of never, and one that is woken sooner is not rung early.
//!
//! The cost: one parked thread per end that has a doorbell (made at the first
//! [`Readiness::readiness_fd`](ipc_core::Readiness::readiness_fd), with a 64 KiB stack); in
//! the peer, one fetched descriptor and, once per publication, one `pidfd_getfd` and one read
//! of `/proc/self/fdinfo`. The wake word's counter is also the ring count, direct or not:
//! [`Receiver::doorbell_rings`](crate::Receiver::doorbell_rings).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::thread::JoinHandle;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, Result, futex};
use rustix::event::{EventfdFlags, eventfd};

use crate::ring::Side;
use crate::segment::Segment;

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const STOP: u32 = 2;

/// How long the bell thread sleeps before ringing anyway when the peer's process is not
/// covered by the watcher thread (no attached peer yet): the waiter then rechecks.
const SLICE: Duration = Duration::from_millis(50);

/// Slices the thread goes on sleeping in, without a timed wait, before it sleeps without a
/// slice again (one second): a waiter that arms timed waits back to back finds it slicing.
const IDLE_SLICES: u32 = 20;

/// The longest the thread sleeps when it is not slicing. A timed `arm` wakes the thread with
/// a `FUTEX_WAKE`, which does not change the word the thread sleeps on: sent after the thread
/// looked at the state and before it went to sleep, it is lost. The thread then still wakes
/// within this bound and rings the timed wait, so a waiter whose flag the peer also missed
/// looks again within a second instead of never (the case the timed wait exists for). An
/// idle doorbell costs one wake-up of its thread per second.
const UNTIMED: Duration = Duration::from_secs(1);

struct Shared {
    eventfd: OwnedFd,
    /// IDLE, ARMED (ring once the peer's word leaves `word`) or STOP.
    state: AtomicU32,
    word: AtomicU32,
    /// Whether the armed wait must end after [`SLICE`] (the peer is not watched).
    timed: AtomicU32,
    /// 1 while the thread sleeps in slices (it will look at the state within a [`SLICE`]):
    /// a timed `arm` then needs no wake-up.
    slicing: AtomicU32,
    /// Bumped by every `arm`: tells the thread whether the wait it finds armed after an
    /// [`UNTIMED`] sleep is the one it found armed after the last.
    arms: AtomicU32,
    segment: Arc<Segment>,
    /// Offset in the segment of the peer's wake word.
    offset: usize,
}

impl Shared {
    fn peer_word(&self) -> &AtomicU32 {
        // SAFETY: `offset` is the (aligned) offset of a wake word inside the channel header,
        // which lies inside the mapping that `segment` keeps alive; the word is only ever
        // accessed atomically.
        unsafe { &*(self.segment.as_ptr().add(self.offset) as *const AtomicU32) }
    }

    /// Rings for the armed wait unless someone (the thread, the owner's `arm` or `disarm`)
    /// ended it first: one ring per wait.
    fn ring(&self) {
        if self
            .state
            .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }
}

/// An end's doorbell: the eventfd to poll and the thread that rings it.
pub(crate) struct Bell {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Whether [`publish`](Bell::publish) ran (0: not yet), and published (1) or not (2).
    published: AtomicU32,
}

impl Bell {
    /// Makes the eventfd (non-blocking, close-on-exec) and starts the bell thread, which will
    /// sleep on the futex word at `offset` in `segment` when armed.
    pub(crate) fn new(segment: Arc<Segment>, offset: usize) -> Result<Bell> {
        let eventfd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
            .map_err(|e| ipc_core::pipe::descriptor_error(e).in_op("eventfd"))?;
        let shared = Arc::new(Shared {
            eventfd,
            state: AtomicU32::new(IDLE),
            word: AtomicU32::new(0),
            timed: AtomicU32::new(0),
            slicing: AtomicU32::new(0),
            arms: AtomicU32::new(0),
            segment,
            offset,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ipc-shm-bell".into())
            .stack_size(64 * 1024)
            .spawn(move || run(&s))
            .map_err(|e| {
                ipc_core::knob::process_limit_error_io(e, ipc_core::knob::Task::Thread)
                    .in_op("start the doorbell thread")
            })?;
        tracing::trace!(offset, "started a channel doorbell");
        Ok(Bell {
            shared,
            thread: Some(thread),
            published: AtomicU32::new(0),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.shared.eventfd.as_fd()
    }

    /// Hands the wait to the thread: ring when the peer's word leaves `word` (or after a
    /// slice when `timed`). No system call unless the word moved already (then it rings
    /// here, one `write`) or the wait is `timed` and the thread is not sleeping in slices
    /// already (one `FUTEX_WAKE`, so the thread takes up its slices).
    pub(crate) fn arm(&self, word: u32, timed: bool) {
        let s = &self.shared;
        s.word.store(word, Ordering::Relaxed);
        s.timed.store(timed as u32, Ordering::Relaxed);
        s.arms.fetch_add(1, Ordering::Relaxed);
        s.state.store(ARMED, Ordering::SeqCst);
        // The thread reads the word, then the state (both SeqCst). If it read the state
        // before this store, it read the word before too, and sleeps only while the word
        // still has that value: a bump after it read wakes it (or fails its wait), and it
        // sees ARMED next time round. A bump it read before this store, the load below sees.
        // Likewise the thread lowers `slicing` before it reads the state: either it sees
        // ARMED (and slices), or the load of `slicing` here sees it down (and wakes it).
        if s.peer_word().load(Ordering::SeqCst) != word {
            s.ring();
        } else if timed && s.slicing.load(Ordering::SeqCst) == 0 {
            futex::wake_all(s.peer_word());
        }
    }

    /// Stops ringing for the current wait and drains the eventfd (one `read`), unless
    /// `!drain`: a waiter that watches the eventfd edge-triggered is woken by the next ring
    /// whatever the count, so it need not be drained.
    pub(crate) fn disarm(&self, drain: bool) {
        let s = &self.shared;
        let _ = s
            .state
            .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Relaxed);
        if drain {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&s.eventfd, &mut buf);
        }
    }
}

fn run(s: &Shared) {
    // Slices slept in a row without a timed wait armed at their start.
    let mut idle = 0u32;
    // The `arms` count of the untimed wait found armed at the end of an `UNTIMED` sleep.
    let mut armed_through: Option<u32> = None;
    loop {
        let now = s.peer_word().load(Ordering::SeqCst);
        let state = s.state.load(Ordering::SeqCst);
        let timed = match state {
            STOP => return,
            ARMED if now != s.word.load(Ordering::Relaxed) => {
                s.ring();
                continue;
            }
            ARMED => s.timed.load(Ordering::Relaxed) != 0,
            _ => false,
        };
        let slice = if timed {
            idle = 0;
            true
        } else if s.slicing.load(Ordering::Relaxed) != 0 && idle < IDLE_SLICES {
            idle += 1;
            true
        } else {
            if s.slicing.load(Ordering::Relaxed) != 0 {
                // Stops slicing. A timed `arm` that still saw `slicing` up stored ARMED
                // before the load below, which sends this thread round again to look.
                s.slicing.store(0, Ordering::SeqCst);
                if s.state.load(Ordering::SeqCst) == ARMED {
                    continue;
                }
            }
            false
        };
        let until = match slice {
            true => {
                s.slicing.store(1, Ordering::SeqCst);
                Deadline::after(SLICE)
            }
            false => Deadline::after(UNTIMED),
        };
        // Returns when the peer bumped its word (a ring, or the watcher reporting its death;
        // at once if it already did), when `arm` or `drop` wakes the word, or at the slice's
        // end: then a timed wait armed now is rung, so that its waiter looks again (one that
        // was armed during the slice is rung early, which only makes it look sooner).
        // An untimed wait armed through a whole `UNTIMED` sleep (found armed at the end of
        // the last one too, the same wait) is rung as well: its wake-up was lost.
        match futex::wait(s.peer_word(), now, until) {
            Err(e)
                if e.kind() == ErrorKind::TimedOut && s.state.load(Ordering::SeqCst) == ARMED =>
            {
                if s.timed.load(Ordering::Relaxed) != 0 {
                    s.ring();
                } else if !slice {
                    let arms = s.arms.load(Ordering::Relaxed);
                    if armed_through.replace(arms) == Some(arms) {
                        s.ring();
                    }
                }
            }
            _ => {}
        }
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        let s = &self.shared;
        s.state.store(STOP, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // The thread may be about to sleep, or asleep, on the peer's word: wake it until
            // it has seen STOP (a spurious wake-up for anyone else sleeping on the word, who
            // looks again). Rounds beyond the first happen only when the thread was between
            // its check and its sleep.
            while !t.is_finished() {
                futex::wake_all(s.peer_word());
                std::thread::yield_now();
            }
            let _ = t.join();
        }
    }
}

/// The sleeping-flag value of an end in a blocking wait on the futex (`wait.rs`,
/// `sleep_flagged`), as opposed to [`SLEEPING_ON_BELL`].
pub(crate) const SLEEPING_ON_FUTEX: u32 = 1;

/// The sleeping-flag value of an end waiting on a doorbell it published (`arm`), as opposed
/// to [`SLEEPING_ON_FUTEX`] for a blocking wait on the futex: a waker that fetched that doorbell rings it
/// directly ([`Direct`]); any other waker makes the futex wake, which the bell thread turns
/// into the same ring.
pub(crate) const SLEEPING_ON_BELL: u32 = 2;

impl Bell {
    /// Publishes the doorbell in `me` (this end's side) for a peer that may fetch it: the
    /// descriptor number, its `eventfd-id`, and this process's identity `key`, written as a
    /// seqlock (key 0, the two words, the key). Once per bell; whether it is published (the
    /// `eventfd-id` cannot be read without `/proc`: then the peer always uses the futex).
    pub(crate) fn publish(&self, me: &Side, key: u64) -> bool {
        match self.published.load(Ordering::Relaxed) {
            0 => {}
            p => return p == 1,
        }
        let fd = self.shared.eventfd.as_raw_fd();
        let published = match eventfd_id(fd) {
            Some(id) => {
                // A seqlock: a reader that sees either new word sees the key's 0 or the
                // new key after it (the fences pair with the reader's acquire fence).
                me.bell_key.store(0, Ordering::Relaxed);
                fence(Ordering::Release);
                me.bell_fd.store(fd as u32, Ordering::Relaxed);
                me.bell_id.store(id, Ordering::Relaxed);
                me.bell_key.store(key, Ordering::Release);
                true
            }
            None => false,
        };
        self.published
            .store(if published { 1 } else { 2 }, Ordering::Relaxed);
        published
    }
}

/// The `eventfd-id` that `/proc/self/fdinfo/FD` shows for `fd`, if it is an eventfd.
fn eventfd_id(fd: RawFd) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("eventfd-id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A peer's published doorbell, fetched into this process with `pidfd_getfd(2)`, so that a
/// wake-up of a peer waiting on it is one eventfd `write` (which wakes the peer's poll loop
/// directly) instead of a `FUTEX_WAKE` that its bell thread turns into that write (one
/// context switch more on one core).
///
/// `pidfd_getfd` needs ptrace rights over the peer (`PTRACE_MODE_ATTACH_REALCREDS`): the
/// same user, a dumpable peer, and no Yama restriction (`kernel.yama.ptrace_scope` 1, the
/// default of several distributions, allows it only towards descendants). When it is
/// refused, this end keeps the futex wake and the peer's bell thread rings: the same result,
/// one context switch later. Nothing a peer writes is trusted: the publication is read as a
/// seqlock and must name the process that owns the peer's side now (the watch's pidfd, so a
/// recycled pid cannot stand in), and the fetched descriptor must show the published
/// `eventfd-id` in this process's `/proc/self/fdinfo` (a peer naming another of its
/// descriptors gets nothing rung; a ring that reaches nobody cannot lose a wake-up either,
/// see [`Direct::ring`]). Fetched once per publication (one `pidfd_getfd`, one read of
/// fdinfo), kept until the peer publishes another.
#[derive(Debug, Default)]
pub(crate) struct Direct {
    /// The publication the fetch below is for: (key, descriptor number, eventfd-id).
    of: Option<(u64, u32, u32)>,
    /// The fetched doorbell; `None` when the fetch was refused or the descriptor was not the
    /// published eventfd.
    fd: Option<OwnedFd>,
    /// Rings made directly, for tests and the benchmark's curiosity.
    rings: u32,
}

impl Direct {
    /// Rings `peer`'s published doorbell directly if it can: `peer_key` is the identity in
    /// the peer's owner word now and `pidfd` the watch's pidfd for that identity (if it has
    /// one). Returns whether it rang; `false` means "make the futex wake".
    ///
    /// Called only by the waker that took the peer's sleeping flag down from
    /// [`SLEEPING_ON_BELL`]: the peer published before raising it, so the publication read
    /// here is at least that one. A ring that cannot reach the waiter (it stopped waiting,
    /// closed the eventfd) is harmless: it waits on that eventfd only while armed, and then
    /// its flag is up again.
    pub(crate) fn ring(
        &mut self,
        peer: &Side,
        peer_key: u64,
        pidfd: Option<BorrowedFd<'_>>,
    ) -> bool {
        let key = peer.bell_key.load(Ordering::Acquire);
        let fd_no = peer.bell_fd.load(Ordering::Relaxed);
        let id = peer.bell_id.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if key == 0 || key != peer.bell_key.load(Ordering::Relaxed) || key != peer_key {
            return false;
        }
        let publication = Some((key, fd_no, id));
        if self.of != publication {
            let Some(pidfd) = pidfd else {
                // No pidfd for this process yet: try again at the next wake-up.
                return false;
            };
            self.fd = fetch(pidfd, fd_no, id);
            self.of = publication;
        }
        match &self.fd {
            Some(fd) if rustix::io::write(fd, &1u64.to_ne_bytes()).is_ok() => {
                self.rings = self.rings.wrapping_add(1);
                true
            }
            _ => false,
        }
    }

    /// Whether the peer's doorbell is fetched (`Some(true)`), was refused or invalid
    /// (`Some(false)`), or was never tried (`None`); and the direct rings so far.
    pub(crate) fn state(&self) -> (Option<bool>, u32) {
        (self.of.map(|_| self.fd.is_some()), self.rings)
    }
}

/// Fetches descriptor `fd_no` of the process behind `pidfd` and keeps it only if it is the
/// eventfd with `eventfd-id` `id`.
fn fetch(pidfd: BorrowedFd<'_>, fd_no: u32, id: u32) -> Option<OwnedFd> {
    let fd_no = i32::try_from(fd_no).ok()?;
    match rustix::process::pidfd_getfd(pidfd, fd_no, rustix::process::PidfdGetfdFlags::empty()) {
        Ok(fd) if eventfd_id(fd.as_raw_fd()) == Some(id) => {
            tracing::trace!(fd_no, "fetched the peer's doorbell");
            Some(fd)
        }
        Ok(_) => {
            tracing::debug!(fd_no, "the peer's published doorbell is not its eventfd");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "pidfd_getfd of the peer's doorbell refused; its bell thread rings");
            None
        }
    }
}
