//! Raw futex rows: the plainest loops that do each job with `AtomicU32` words in the shared
//! region and `futex(2)` (`FUTEX_WAIT` / `FUTEX_WAKE` *shared*, without
//! `FUTEX_PRIVATE_FLAG`, since the waiter and the waker are different processes). No library
//! code: the floor each `ipc-sync` row is compared with.
//!
//! - [`RawMutexLock`]: the three-state futex mutex of Drepper's "Futexes Are Tricky" (0 free,
//!   1 held, 2 held and someone may sleep), uncontended.
//! - [`RawMutexCondvar`]: that mutex plus a condition variable made of a sequence word and a
//!   sleeper count (wake only when someone may sleep), passing a turn variable.
//! - [`RawPingPong`]: one word per side (0 empty, 1 handed over, 2 empty and the owner may
//!   sleep): the peer sets it to 1 and wakes only if it was 2.
//!
//! Each comes in two [`Wait`] flavours: sleep at once, or spin up to
//! [`ipc_sync::SPIN_BUDGET`] first (whatever the placement).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use ipc_core::Result;
use rustix::io::Errno;
use rustix::thread::futex::{self, Flags, Timespec};

use super::{
    Group, HandOffRow, Locker, Shm, SpinPolicy, SyncInfo, Turns, UncontendedRow, rows::hung,
};
use crate::row::{Handoff, Inherited, RowKind};

/// How a raw waiter waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `FUTEX_WAIT` at once.
    Sleep,
    /// Spin (re-reading the word) up to [`ipc_sync::SPIN_BUDGET`], then `FUTEX_WAIT`.
    Spin,
}

impl Wait {
    fn policy(self) -> SpinPolicy {
        match self {
            Wait::Sleep => SpinPolicy::Never,
            Wait::Spin => SpinPolicy::Always,
        }
    }

    /// Spins until `ready()` (true) or the budget is spent (false); `Sleep` does not spin.
    #[inline]
    fn spin(self, mut ready: impl FnMut() -> bool) -> bool {
        if self == Wait::Sleep {
            return false;
        }
        let start = Instant::now();
        loop {
            for _ in 0..64 {
                if ready() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= ipc_sync::SPIN_BUDGET {
                return false;
            }
        }
    }
}

/// Why a raw wait stopped without its condition.
enum Halt {
    /// The deadline passed.
    Deadline,
    /// A futex call failed.
    Failed(String),
}

impl From<Halt> for String {
    fn from(h: Halt) -> String {
        match h {
            Halt::Deadline => hung(),
            Halt::Failed(e) => e,
        }
    }
}

/// `FUTEX_WAIT` (shared) while `*word == val`, at most until `deadline`. Returns `Ok` when woken,
/// interrupted, timed out or when the word differed: the caller re-checks its condition and
/// calls again, which stops once the deadline has passed.
fn futex_wait(word: &AtomicU32, val: u32, deadline: Instant) -> std::result::Result<(), Halt> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Halt::Deadline);
    }
    let timeout = Timespec {
        tv_sec: left.as_secs() as i64,
        tv_nsec: i64::from(left.subsec_nanos()),
    };
    match futex::wait(word, Flags::empty(), val, Some(&timeout)) {
        Ok(()) | Err(Errno::AGAIN | Errno::INTR | Errno::TIMEDOUT) => Ok(()),
        Err(e) => Err(Halt::Failed(format!("FUTEX_WAIT: {e}"))),
    }
}

/// `FUTEX_WAKE` (shared) of one waiter.
fn futex_wake(word: &AtomicU32) {
    let _ = futex::wake(word, Flags::empty(), 1);
}

/// The three-state futex mutex: 0 free, 1 held, 2 held and someone may sleep.
#[inline]
fn lock(m: &AtomicU32, wait: Wait, deadline: Instant) -> std::result::Result<(), Halt> {
    if m.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return Ok(());
    }
    if wait.spin(|| {
        m.load(Ordering::Relaxed) == 0
            && m.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }) {
        return Ok(());
    }
    while m.swap(2, Ordering::Acquire) != 0 {
        futex_wait(m, 2, deadline)?;
    }
    Ok(())
}

#[inline]
fn unlock(m: &AtomicU32) {
    if m.swap(0, Ordering::Release) == 2 {
        futex_wake(m);
    }
}

/// `Ok(true)` as `Ok(false)` if the deadline stopped it: what [`Turns::wait_turn`] returns.
fn waited(r: std::result::Result<(), Halt>) -> std::result::Result<bool, String> {
    match r {
        Ok(()) => Ok(true),
        Err(Halt::Deadline) => Ok(false),
        Err(Halt::Failed(e)) => Err(e),
    }
}

/// A deadline no uncontended lock comes near.
fn far() -> Instant {
    Instant::now() + std::time::Duration::from_secs(3600)
}

/// Uncontended lock+unlock of the three-state futex mutex (`words[0]`), guarding a counter
/// (`counter`).
#[derive(Debug)]
pub struct RawMutexLock;

impl UncontendedRow for RawMutexLock {
    fn info(&self) -> SyncInfo {
        SyncInfo {
            id: "mutex-raw",
            family: "mutex",
            group: Group::Uncontended,
            kind: RowKind::Raw,
            spin: SpinPolicy::None,
            raw: &[],
            fixed: None,
            what: "three-state futex mutex on an AtomicU32 (compare-exchange to lock, swap to unlock)",
        }
    }

    fn open<'a>(&self, shm: &'a Shm) -> Result<Box<dyn Locker + 'a>> {
        Ok(Box::new(RawLocker { shm, far: far() }))
    }
}

struct RawLocker<'a> {
    shm: &'a Shm,
    far: Instant,
}

impl Locker for RawLocker<'_> {
    fn lock_unlock(&mut self, n: u64) -> std::result::Result<(), String> {
        let s = self.shm.get();
        let (m, count) = (&s.words[0].0, &s.counter.0);
        for _ in 0..n {
            lock(m, Wait::Sleep, self.far).map_err(String::from)?;
            count.store(
                count.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
            unlock(m);
        }
        Ok(())
    }

    fn count(&mut self) -> std::result::Result<u64, String> {
        let s = self.shm.get();
        lock(&s.words[0].0, Wait::Sleep, self.far).map_err(String::from)?;
        let n = s.counter.0.load(Ordering::Relaxed);
        unlock(&s.words[0].0);
        Ok(n)
    }

    fn check_exclusion(&mut self) -> std::result::Result<(), String> {
        let m = &self.shm.get().words[0].0;
        lock(m, Wait::Sleep, self.far).map_err(String::from)?;
        let second = m.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
        unlock(m);
        if second.is_ok() {
            return Err("the raw mutex was locked twice at once".into());
        }
        if m.load(Ordering::Relaxed) != 0 {
            return Err("the raw mutex is still held after unlock".into());
        }
        Ok(())
    }
}

/// Two processes pass a turn (`words[3]`) under the futex mutex (`words[0]`), waiting on a
/// futex condition variable: a sequence word (`words[1]`) that notifiers bump, and a sleeper
/// count (`words[2]`) so that a notifier makes the `FUTEX_WAKE` call only when someone may
/// sleep. The same protocol as the `mutex-cv` row.
#[derive(Debug)]
pub struct RawMutexCondvar(pub Wait);

impl HandOffRow for RawMutexCondvar {
    fn info(&self) -> SyncInfo {
        SyncInfo {
            id: match self.0 {
                Wait::Sleep => "mutex-cv-raw",
                Wait::Spin => "mutex-cv-raw-spin",
            },
            family: "mutex",
            group: Group::MutexCondvar,
            kind: RowKind::Raw,
            spin: self.0.policy(),
            raw: &[],
            fixed: None,
            what: match self.0 {
                Wait::Sleep => "futex mutex + futex condvar (sequence word, sleeper count)",
                Wait::Spin => {
                    "futex mutex + futex condvar, spinning on the mutex and the sequence first"
                }
            },
        }
    }

    fn connect<'a>(&self, shm: &'a Shm, _child: &mut Handoff) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(RawCondvarSide {
            shm,
            me: 0,
            wait: self.0,
        }))
    }

    fn adopt<'a>(&self, shm: &'a Shm, _parent: &Inherited<'_>) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(RawCondvarSide {
            shm,
            me: 1,
            wait: self.0,
        }))
    }
}

struct RawCondvarSide<'a> {
    shm: &'a Shm,
    me: u32,
    wait: Wait,
}

impl Turns for RawCondvarSide<'_> {
    fn wait_turn(&mut self, deadline: Instant) -> std::result::Result<bool, String> {
        let s = self.shm.get();
        let (m, seq, sleepers, turn) = (&s.words[0].0, &s.words[1].0, &s.words[2].0, &s.words[3].0);
        let r = (|| {
            lock(m, self.wait, deadline)?;
            while turn.load(Ordering::Relaxed) != self.me {
                // Read the sequence under the lock: a notifier changes the turn under the lock
                // and bumps the sequence after, so the futex below sees the bump or is woken.
                let seen = seq.load(Ordering::Relaxed);
                unlock(m);
                if !self.wait.spin(|| seq.load(Ordering::Relaxed) != seen) {
                    sleepers.fetch_add(1, Ordering::SeqCst);
                    let r = futex_wait(seq, seen, deadline);
                    sleepers.fetch_sub(1, Ordering::SeqCst);
                    r?;
                }
                lock(m, self.wait, deadline)?;
            }
            unlock(m);
            Ok(())
        })();
        waited(r)
    }

    fn give_turn(&mut self, deadline: Instant) -> std::result::Result<(), String> {
        let s = self.shm.get();
        let (m, seq, sleepers, turn) = (&s.words[0].0, &s.words[1].0, &s.words[2].0, &s.words[3].0);
        lock(m, self.wait, deadline).map_err(String::from)?;
        let held = turn.load(Ordering::Relaxed);
        if held == self.me {
            turn.store(1 - self.me, Ordering::Relaxed);
        }
        unlock(m);
        if held != self.me {
            return Err(format!("side {} gave a turn it did not hold", self.me));
        }
        seq.fetch_add(1, Ordering::SeqCst);
        if sleepers.load(Ordering::SeqCst) != 0 {
            futex_wake(seq);
        }
        Ok(())
    }

    fn pending(&self) -> bool {
        false
    }
}

/// Two processes wake each other through one futex word each (`words[0]` for the parent,
/// `words[1]` for the child): 0 empty, 1 handed over, 2 empty and its owner may sleep. The
/// giver swaps in 1 and makes the `FUTEX_WAKE` call only if it found 2.
#[derive(Debug)]
pub struct RawPingPong(pub Wait);

impl HandOffRow for RawPingPong {
    fn info(&self) -> SyncInfo {
        SyncInfo {
            id: match self.0 {
                Wait::Sleep => "sem-raw",
                Wait::Spin => "sem-raw-spin",
            },
            family: "sem",
            group: Group::PingPong,
            kind: RowKind::Raw,
            spin: self.0.policy(),
            raw: &[],
            fixed: None,
            what: match self.0 {
                Wait::Sleep => "a futex word per side: FUTEX_WAIT at once, FUTEX_WAKE if asleep",
                Wait::Spin => "a futex word per side, spinning on it before FUTEX_WAIT",
            },
        }
    }

    fn connect<'a>(&self, shm: &'a Shm, _child: &mut Handoff) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(RawPingPongSide {
            shm,
            me: 0,
            wait: self.0,
        }))
    }

    fn adopt<'a>(&self, shm: &'a Shm, _parent: &Inherited<'_>) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(RawPingPongSide {
            shm,
            me: 1,
            wait: self.0,
        }))
    }
}

struct RawPingPongSide<'a> {
    shm: &'a Shm,
    me: usize,
    wait: Wait,
}

impl Turns for RawPingPongSide<'_> {
    fn wait_turn(&mut self, deadline: Instant) -> std::result::Result<bool, String> {
        let w = &self.shm.get().words[self.me].0;
        let take = || {
            w.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        if self.wait.spin(take) {
            return Ok(true);
        }
        let r = (|| loop {
            let c = match w.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(c) => c,
            };
            // Announce the sleep (0 -> 2); a hand-off in between makes the word 1: take it.
            if c == 0
                && w.compare_exchange(0, 2, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            futex_wait(w, 2, deadline)?;
        })();
        waited(r)
    }

    fn give_turn(&mut self, _deadline: Instant) -> std::result::Result<(), String> {
        let w = &self.shm.get().words[1 - self.me].0;
        match w.swap(1, Ordering::Release) {
            0 => Ok(()),
            2 => {
                futex_wake(w);
                Ok(())
            }
            _ => Err(format!(
                "side {} handed over twice: the peer had not taken the previous hand-off",
                self.me
            )),
        }
    }

    fn pending(&self) -> bool {
        self.shm.get().words[self.me].0.load(Ordering::Relaxed) == 1
    }
}
