//! The doorbell that makes a channel end pollable: an eventfd in this process, rung by a
//! small thread that sleeps on the peer's futex word on the end's behalf.
//!
//! # Why a thread, not a descriptor shared with the peer
//!
//! The peer already wakes a sleeping end through the futex word in the segment, and only
//! when the end's sleeping flag is up (`channel.rs`: `wake_peer`). The doorbell reuses that
//! protocol unchanged: an async or poll waiter raises the same flag, and this end's bell
//! thread sleeps on the futex in its place and turns the wake-up into an eventfd write. So:
//!
//! - the peer's side does not change at all: no descriptor has to reach it, whatever the
//!   segment kind (POSIX name, memfd, System V) and however the other process got the
//!   segment; no privilege is needed (`pidfd_getfd(2)` would need ptrace rights over the
//!   waiter, which Yama's default scope refuses between unrelated processes), no file is
//!   left beside the segment (a FIFO would be, after a `SIGKILL`), no server is needed (a
//!   Unix socket handing the eventfd over would need one in the creator);
//! - while both sides are busy the flag is down and nobody makes a system call per message:
//!   the bell rings only for an end that waits;
//! - a peer's death wakes the bell thread the way it wakes a sleeper (the `ipc-shm-watch`
//!   thread bumps the word), so an async waiter sees `Disconnected` as promptly as a
//!   blocking one.
//!
//! The bell thread sleeps on the peer's wake word all the time, not only while armed: arming
//! is then two stores and no system call, and the thread is already asleep where the ring
//! will come from (handing it each wait with a `FUTEX_WAKE` cost one system call and, on one
//! core, one more context switch per wait). A wake-up it gets while not armed (this end's
//! blocking receive or send being woken: `wake_peer` wakes every sleeper on the word) only
//! sends it back to sleep.
//!
//! The cost: one parked thread per end that has a doorbell (made at the first
//! [`Readiness::readiness_fd`](ipc_core::Readiness::readiness_fd), with a 64 KiB stack), and
//! per wait that actually sleeps one context switch more than a blocking receive (the peer
//! wakes the bell thread, which writes the eventfd that wakes the waiter) plus the eventfd's
//! `write` and `read`; a blocking wait of the same end also wakes the bell thread once. The
//! wake word's counter is also the ring count:
//! [`Receiver::doorbell_rings`](crate::Receiver::doorbell_rings).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ipc_core::{Deadline, Error, ErrorKind, Result, futex};
use rustix::event::{EventfdFlags, eventfd};

use crate::segment::Segment;

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const STOP: u32 = 2;

/// How long the bell thread sleeps before ringing anyway when the peer's process is not
/// covered by the watcher thread (no attached peer yet): the waiter then rechecks.
const SLICE: Duration = Duration::from_millis(50);

struct Shared {
    eventfd: OwnedFd,
    /// IDLE, ARMED (ring once the peer's word leaves `word`) or STOP.
    state: AtomicU32,
    word: AtomicU32,
    /// Whether the armed wait must end after [`SLICE`] (the peer is not watched).
    timed: AtomicU32,
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
}

impl Bell {
    /// Makes the eventfd (non-blocking, close-on-exec) and starts the bell thread, which will
    /// sleep on the futex word at `offset` in `segment` when armed.
    pub(crate) fn new(segment: Arc<Segment>, offset: usize) -> Result<Bell> {
        let eventfd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
            .map_err(|e| Error::from(e).in_op("eventfd"))?;
        let shared = Arc::new(Shared {
            eventfd,
            state: AtomicU32::new(IDLE),
            word: AtomicU32::new(0),
            timed: AtomicU32::new(0),
            segment,
            offset,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ipc-shm-bell".into())
            .stack_size(64 * 1024)
            .spawn(move || run(&s))
            .map_err(|e| Error::from(e).in_op("start the doorbell thread"))?;
        tracing::trace!(offset, "started a channel doorbell");
        Ok(Bell {
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.shared.eventfd.as_fd()
    }

    /// Hands the wait to the thread: ring when the peer's word leaves `word` (or after a
    /// slice when `timed`). No system call unless the word moved already (then it rings
    /// here, one `write`) or the wait is `timed` (one `FUTEX_WAKE`, so the thread takes up
    /// its slice).
    pub(crate) fn arm(&self, word: u32, timed: bool) {
        let s = &self.shared;
        s.word.store(word, Ordering::Relaxed);
        s.timed.store(timed as u32, Ordering::Relaxed);
        s.state.store(ARMED, Ordering::SeqCst);
        // The thread reads the word, then the state (both SeqCst). If it read the state
        // before this store, it read the word before too, and sleeps only while the word
        // still has that value: a bump after it read wakes it (or fails its wait), and it
        // sees ARMED next time round. A bump it read before this store, the load below sees.
        if s.peer_word().load(Ordering::SeqCst) != word {
            s.ring();
        } else if timed {
            futex::wake_all(s.peer_word());
        }
    }

    /// Stops ringing for the current wait and drains the eventfd (one `read`).
    pub(crate) fn disarm(&self) {
        let s = &self.shared;
        let _ = s
            .state
            .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&s.eventfd, &mut buf);
    }
}

fn run(s: &Shared) {
    loop {
        let now = s.peer_word().load(Ordering::SeqCst);
        let until = match s.state.load(Ordering::SeqCst) {
            STOP => return,
            ARMED if now != s.word.load(Ordering::Relaxed) => {
                s.ring();
                continue;
            }
            ARMED if s.timed.load(Ordering::Relaxed) != 0 => Deadline::after(SLICE),
            _ => Deadline::Never,
        };
        // Returns when the peer bumped its word (a ring, or the watcher reporting its death;
        // at once if it already did), when `arm` or `drop` wakes the word, or at the slice's
        // end.
        match futex::wait(s.peer_word(), now, until) {
            Err(e) if e.kind() == ErrorKind::TimedOut => s.ring(),
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
