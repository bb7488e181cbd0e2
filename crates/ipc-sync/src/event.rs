//! [`Event`]: a set/reset flag that processes wait for, auto-reset or manual-reset, on a shared
//! futex in shared memory.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_core::{Blocked, Deadline, Error, Result};

use crate::futex;
use crate::shared::{Header, Kind, SharedObject, check_ptr};
use crate::spin::{NO_CPU, Spin, record_cpu};

static KIND: Kind = Kind::new("ipc_sync::Event", u32::from_le_bytes(*b"iEVT"), 1);

/// Bit 0 of the state word: the event is set.
const SET: u32 = 1;
/// Bit 31: a waiter may be asleep, so `set` must wake.
const SLEEPERS: u32 = 1 << 31;

/// What a successful wait does to an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventMode {
    /// A wait that sees the event set also resets it: each [`set`](Event::set) releases one
    /// waiter (like a binary semaphore). Sets that no waiter took yet do not add up.
    AutoReset,
    /// The event stays set until [`reset`](Event::reset): one `set` releases every waiter,
    /// present and future. (A `reset` right after the `set` may come before a woken waiter
    /// has looked, and that waiter then sleeps on: keep the event set until its waiters are
    /// through.)
    ManualReset,
}

impl EventMode {
    fn to_raw(self) -> u32 {
        match self {
            EventMode::AutoReset => 1,
            EventMode::ManualReset => 2,
        }
    }

    fn from_raw(raw: u32) -> Option<EventMode> {
        match raw {
            1 => Some(EventMode::AutoReset),
            2 => Some(EventMode::ManualReset),
            _ => None,
        }
    }
}

/// A flag in shared memory that processes wait for: "data is ready", "shut down", "your
/// turn". [`Init`](SharedObject::Init) is the [`EventMode`].
///
/// Setting an event that nobody waits for costs one atomic instruction; the `FUTEX_WAKE`
/// syscall is made only when a waiter may be asleep (a bit in the state word says so).
/// Waiters may [spin](Spin) briefly first.
///
/// # Crashes
/// A waiter that dies leaves behind at most the "sleepers" bit, which costs the next `set`
/// one spare wake-up and is then clear. With [`EventMode::AutoReset`], a waiter woken by
/// `set` that dies before resetting the event leaves it set for the other sleepers, which see
/// it within [`futex::RECHECK`].
///
/// # Layout
/// `#[repr(C)]`, 32 bytes, align 4:
///
/// | offset | field      | meaning                                                         |
/// |--------|------------|-----------------------------------------------------------------|
/// | 0      | header     | magic `"iEVT"`, layout version 1, size 32, extra = mode (1 auto, 2 manual) |
/// | 16     | `state`    | bit 0: set; bit 31: someone may sleep; the futex word           |
/// | 20     | reserved   | 0                                                               |
/// | 24     | `set_cpu`  | the CPU of the last `set`, for adaptive spinning                |
/// | 28     | `mode`     | copy of the mode, read by every operation                       |
///
/// ```
/// use ipc_sync::{Event, EventMode, Shared};
///
/// let ready = Shared::<Event>::create(EventMode::ManualReset)?;
/// ready.set();
/// ready.wait()?;
/// ready.wait()?; // still set
/// ready.reset();
/// assert!(!ready.is_set());
///
/// let turn = Shared::<Event>::create(EventMode::AutoReset)?;
/// turn.set();
/// turn.wait()?;
/// assert!(turn.try_wait().is_err()); // the first wait reset it
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[repr(C)]
pub struct Event {
    header: Header,
    state: AtomicU32,
    _reserved: AtomicU32,
    set_cpu: AtomicU32,
    mode: AtomicU32,
}

impl Event {
    /// The event's mode. A mode word another process overwrote (with garbage, or with the
    /// other mode: it no longer matches the header's copy) reads as
    /// [`EventMode::ManualReset`], which never consumes a set; waits refuse such an event
    /// ([`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted)).
    pub fn mode(&self) -> EventMode {
        self.checked_mode().unwrap_or(EventMode::ManualReset)
    }

    /// The mode, if the mode word is a mode and the one the header says (both were validated
    /// when the event was opened; a peer may have written either since).
    #[inline]
    fn checked_mode(&self) -> Option<EventMode> {
        let raw = self.mode.load(Ordering::Relaxed);
        if raw != self.header.extra() {
            return None;
        }
        EventMode::from_raw(raw)
    }

    /// The error for a mode word that is not a mode or not the header's.
    fn mode_corrupted(&self, op: &'static str) -> Error {
        let (mode, extra) = (self.mode.load(Ordering::Relaxed), self.header.extra());
        let e = Error::corrupted(format!(
            "event mode {mode} (header says {extra}); expected 1 (auto) or 2 (manual) in both: \
             another process overwrote the event"
        ))
        .in_op(op)
        .on(self.describe());
        tracing::debug!(error = %e, "event refused");
        e
    }

    /// Sets the event and wakes its waiters: one for [`EventMode::AutoReset`], all for
    /// [`EventMode::ManualReset`] or a [`mode`](Event::mode) another process overwrote.
    ///
    /// Never blocks. Makes the `FUTEX_WAKE` syscall only when a waiter may be asleep.
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    #[doc(alias = "SetEvent")]
    pub fn set(&self) {
        // Set, and clear the sleepers bit in the same step; if it was set, wake. A woken
        // auto-reset waiter sets the bit again as it takes the event, in case others sleep.
        let old = self.state.swap(SET, Ordering::SeqCst);
        record_cpu(&self.set_cpu);
        if old & SLEEPERS != 0 {
            match self.mode() {
                EventMode::AutoReset => futex::wake(&self.state, 1),
                EventMode::ManualReset => futex::wake_all(&self.state),
            };
        }
    }

    /// Resets the event. Never blocks.
    #[doc(alias = "ResetEvent")]
    pub fn reset(&self) {
        // Keep the sleepers bit: they still sleep.
        self.state.fetch_and(SLEEPERS, Ordering::SeqCst);
    }

    /// Whether the event is set (a snapshot).
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::SeqCst) & SET != 0
    }

    /// Waits until the event is set (and, for [`EventMode::AutoReset`], resets it).
    ///
    /// Blocks on: a [`set`](Event::set) from any process. See
    /// [`wait_with`](Event::wait_with) for the errors.
    pub fn wait(&self) -> Result<()> {
        self.wait_with(Deadline::Never, Spin::Adaptive)
    }

    /// Takes the event if it is set, without waiting.
    ///
    /// # Errors
    /// [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) if it is not set.
    pub fn try_wait(&self) -> Result<()> {
        self.wait_with(Deadline::Now, Spin::Never)
    }

    /// Waits at most `timeout` for the event.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) if it was not set in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_with(Deadline::after(timeout), Spin::Adaptive)
    }

    /// Waits until `deadline` for the event, spinning first as `spin` says
    /// (`FUTEX_WAIT_BITSET` on the state while it is unset).
    ///
    /// # Errors
    /// - [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock): not set, and `deadline`
    ///   is [`Deadline::Now`].
    /// - [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut): not set until the deadline.
    /// - [`ErrorKind::Corrupted`](crate::ErrorKind::Corrupted): another process overwrote the
    ///   mode (it is not a mode, or not the one the header says), so whether a wait resets
    ///   the event is unknown: a manual-reset event that a wait reset would leave the other
    ///   waiters of its one `set` asleep. The event is left as it is.
    ///
    /// # References
    /// - [`futex(2)`](https://man7.org/linux/man-pages/man2/futex.2.html)
    pub fn wait_with(&self, deadline: Deadline, spin: Spin) -> Result<()> {
        let Some(mode) = self.checked_mode() else {
            return Err(self.mode_corrupted("wait"));
        };
        if self.try_take(mode, false) {
            return Ok(());
        }
        if deadline == Deadline::Now {
            return Err(Error::would_block(Blocked::Empty)
                .in_op("wait")
                .on_shared(KIND.label()));
        }
        if spin.run(&self.set_cpu, || self.try_take(mode, false)) {
            return Ok(());
        }
        let mut slept = false;
        loop {
            if self.try_take(mode, slept) {
                return Ok(());
            }
            // Unset: make sure the sleepers bit is set, then sleep while the word says
            // "unset, sleepers". A set changes the word first, so the futex either sees the
            // change and returns at once, or is woken.
            let c = self.state.load(Ordering::SeqCst);
            if c & SET != 0 {
                continue;
            }
            if c & SLEEPERS == 0
                && self
                    .state
                    .compare_exchange(c, c | SLEEPERS, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                continue;
            }
            // Sleep on the word as it is (a peer may have scribbled on the unused bits).
            if let Err(e) = futex::wait_recheck(&self.state, c | SLEEPERS, deadline) {
                // A `set` may have woken us just as the deadline passed: take it rather than
                // leave it with the other sleepers asleep.
                return if self.try_take(mode, true) {
                    Ok(())
                } else {
                    // Timed out (the expected end of a timed wait): named without allocating.
                    Err(e.in_op("wait").on_shared(KIND.label()))
                };
            }
            slept = true;
        }
    }

    /// Takes the event if it is set (resetting it, in auto-reset mode). An auto-reset waiter
    /// that has slept (`mark`) sets the sleepers bit as it resets, since others may still
    /// sleep: the `set` that cleared the bit woke only one.
    #[inline]
    fn try_take(&self, mode: EventMode, mark: bool) -> bool {
        let mut c = self.state.load(Ordering::SeqCst);
        if mode == EventMode::ManualReset {
            return c & SET != 0;
        }
        while c & SET != 0 {
            let keep = if mark { SLEEPERS } else { c & SLEEPERS };
            match self
                .state
                .compare_exchange_weak(c, keep, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    fn describe(&self) -> String {
        format!("{} at {:p}", KIND.name, self as *const Event)
    }
}

// SAFETY: `#[repr(C)]` of atomics only. Only bits 0 and 31 of the state mean anything; a
// mode that is invalid or not the header's makes waits fail and sets wake all; a wrong
// sleepers bit only costs a wake syscall or, with
// the recheck bounding it, delays a sleeper.
unsafe impl SharedObject for Event {
    type Init = EventMode;

    unsafe fn init_at<'a>(ptr: *mut Event, mode: EventMode) -> Result<&'a Event> {
        check_ptr(ptr, KIND.name)?;
        let ev = Event {
            header: Header::new::<Event>(&KIND, mode.to_raw())?,
            state: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            set_cpu: AtomicU32::new(NO_CPU),
            mode: AtomicU32::new(mode.to_raw()),
        };
        // SAFETY: the caller vouches that `ptr` is valid for writes and unused by others;
        // `check_ptr` checked alignment.
        let ev = unsafe {
            ptr.write(ev);
            &*ptr
        };
        ev.header.publish(&KIND);
        Ok(ev)
    }

    unsafe fn open_at<'a>(ptr: *const Event) -> Result<&'a Event> {
        check_ptr(ptr, KIND.name)?;
        // SAFETY: the caller vouches that `ptr` is valid for `'a` and accessed only through
        // this library's types; all fields are atomics, so any bytes are a valid `Event`.
        let ev = unsafe { &*ptr };
        ev.header.check(&KIND, std::mem::size_of::<Event>())?;
        if ev.checked_mode().is_none() {
            return Err(ev.mode_corrupted("open"));
        }
        Ok(ev)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("at", &(self as *const Event))
            .field("mode", &self.mode())
            .field("set", &self.is_set())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Heap;
    use ipc_core::ErrorKind;
    use std::sync::Arc;

    #[test]
    fn auto_reset_releases_one_wait_per_set() {
        let e = Heap::<Event>::new(EventMode::AutoReset);
        assert_eq!(e.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
        e.set();
        e.set(); // sets do not add up
        e.wait().unwrap();
        assert!(!e.is_set());
        assert_eq!(
            e.wait_timeout(Duration::from_millis(5)).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
    }

    #[test]
    fn manual_reset_stays_set_until_reset() {
        let e = Heap::<Event>::new(EventMode::ManualReset);
        e.set();
        e.wait().unwrap();
        e.try_wait().unwrap();
        e.reset();
        assert_eq!(e.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
    }

    #[test]
    fn manual_set_wakes_every_sleeping_thread() {
        let e = Arc::new(Heap::<Event>::new(EventMode::ManualReset));
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let e = Arc::clone(&e);
                std::thread::spawn(move || e.wait_with(Deadline::Never, Spin::Never))
            })
            .collect();
        e.set();
        for t in ts {
            t.join().unwrap().unwrap();
        }
    }

    #[test]
    fn auto_sets_hand_out_one_turn_each() {
        let e = Arc::new(Heap::<Event>::new(EventMode::AutoReset));
        let done = Arc::new(Heap::<crate::Semaphore>::new(0));
        let rounds = if cfg!(miri) { 10 } else { 500 };
        let t = {
            let (e, done) = (Arc::clone(&e), Arc::clone(&done));
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    e.wait().unwrap();
                    done.post().unwrap();
                }
            })
        };
        for _ in 0..rounds {
            e.set();
            done.wait().unwrap();
        }
        t.join().unwrap();
        assert!(!e.is_set());
    }

    #[test]
    fn a_dead_sleepers_bit_costs_one_wake_then_clears() {
        for mode in [EventMode::AutoReset, EventMode::ManualReset] {
            let e = Heap::<Event>::new(mode);
            // What a waiter that died asleep leaves behind.
            e.state.fetch_or(SLEEPERS, Ordering::SeqCst);
            assert!(!e.is_set());
            e.reset();
            assert_eq!(
                e.state.load(Ordering::SeqCst),
                SLEEPERS,
                "reset keeps sleepers"
            );
            e.set();
            assert_eq!(e.state.load(Ordering::SeqCst), SET, "set cleared the bit");
            e.try_wait().unwrap();
            e.reset();
            e.set();
            assert_eq!(e.state.load(Ordering::SeqCst), SET);
        }
    }

    /// A mode word overwritten with the other mode: obeying it, a wait would reset a
    /// manual-reset event (or leave an auto-reset one set). Waits refuse the event and leave
    /// it as it is; `mode` reads manual-reset, and a set wakes all.
    #[test]
    fn a_mode_that_disagrees_with_the_header_is_refused_by_waits() {
        for (mode, other) in [(EventMode::ManualReset, 1), (EventMode::AutoReset, 2)] {
            let e = Heap::<Event>::new(mode);
            e.mode.store(other, Ordering::Relaxed);
            e.set();
            for r in [
                e.try_wait(),
                e.wait_timeout(Duration::from_millis(1)),
                e.wait_with(Deadline::Never, Spin::Never),
            ] {
                let err = r.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Corrupted, "{mode:?}: {err}");
                assert!(err.to_string().contains("header says"), "{err}");
            }
            assert!(e.is_set(), "{mode:?}: left as it is");
            assert_eq!(e.mode(), EventMode::ManualReset);
            // Put back, it works again.
            e.mode.store(mode.to_raw(), Ordering::Relaxed);
            e.try_wait().unwrap();
        }
    }

    #[test]
    fn open_rejects_a_bad_mode() {
        let e = Heap::<Event>::new(EventMode::AutoReset);
        e.mode.store(7, Ordering::Relaxed);
        // SAFETY: initialised and alive.
        let err = unsafe { Event::open_at(&*e as *const Event) }.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted);
        assert_eq!(e.mode(), EventMode::ManualReset);
    }

    /// Long enough that the store below, 20 ms after the sleeper registered, comes before
    /// it on a loaded machine; shorter than `futex::RECHECK` (1 s).
    const LOST_WAKE_DEADLINE: Duration = Duration::from_millis(900);

    /// A set that comes before the deadline with its wake-up lost (a setter killed between its
    /// swap and its `FUTEX_WAKE`, or a wake that comes as the deadline passes): the sleeper's
    /// futex wait times out, and the wait takes the event instead of reporting a timeout.
    /// (The deadline is shorter than `futex::RECHECK`.)
    #[test]
    #[cfg_attr(
        miri,
        ignore = "needs the futex wait to time out, not Miri's deadlock report"
    )]
    fn a_set_whose_wake_up_was_lost_is_taken_when_the_deadline_passes() {
        for mode in [EventMode::AutoReset, EventMode::ManualReset] {
            let e = Arc::new(Heap::<Event>::new(mode));
            let sleeper = {
                let e = Arc::clone(&e);
                std::thread::spawn(move || {
                    e.wait_with(Deadline::after(LOST_WAKE_DEADLINE), Spin::Never)
                })
            };
            while e.state.load(Ordering::SeqCst) != SLEEPERS {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(20)); // until it sleeps in the futex
            // The set, without its wake-up.
            e.state.store(SET | SLEEPERS, Ordering::SeqCst);
            sleeper
                .join()
                .unwrap()
                .unwrap_or_else(|err| panic!("{mode:?}: {err}"));
            assert_eq!(e.is_set(), mode == EventMode::ManualReset, "{mode:?}");
        }
    }
}
