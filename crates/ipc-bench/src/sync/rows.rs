//! Library rows: `ipc-sync`'s primitives, each in a sealed memfd of its own
//! ([`ipc_sync::Shared`]) whose descriptor the child inherits, used through their public API
//! as a user would.

use std::time::Instant;

use ipc_core::{Deadline, ErrorKind, Result};
use ipc_sync::{Condvar, Event, EventMode, LockError, Mutex, Semaphore, Shared, SharedData, Spin};

use super::{Group, HandOffRow, Locker, Shm, SpinPolicy, SyncInfo, Turns, UncontendedRow};
use crate::row::{Handoff, Inherited, RowKind};

/// What a wait that reached its deadline reports.
pub fn hung() -> String {
    "no hand-off before the deadline: the peer hung or a wake-up was lost".into()
}

fn lock_error<T: SharedData>(e: LockError<'_, T>) -> String {
    format!("lock: {e}")
}

/// Uncontended lock+unlock of an `ipc_sync::Mutex<u64>` (a robust, process-shared,
/// error-checking glibc mutex) in a memfd, incrementing the `u64` it guards.
#[derive(Debug)]
pub struct MutexLock;

impl UncontendedRow for MutexLock {
    fn info(&self) -> SyncInfo {
        SyncInfo {
            id: "mutex",
            family: "mutex",
            group: Group::Uncontended,
            kind: RowKind::Library,
            spin: SpinPolicy::None,
            raw: &["mutex-raw"],
            fixed: None,
            what: "ipc_sync::Mutex<u64>: lock(), increment, drop the guard",
        }
    }

    fn open<'a>(&self, _shm: &'a Shm) -> Result<Box<dyn Locker + 'a>> {
        Ok(Box::new(MutexLocker(Shared::create(0)?)))
    }
}

struct MutexLocker(Shared<Mutex<u64>>);

impl Locker for MutexLocker {
    fn lock_unlock(&mut self, n: u64) -> std::result::Result<(), String> {
        for _ in 0..n {
            *self.0.lock().map_err(lock_error)? += 1;
        }
        Ok(())
    }

    fn count(&mut self) -> std::result::Result<u64, String> {
        Ok(*self.0.lock().map_err(lock_error)?)
    }

    fn check_exclusion(&mut self) -> std::result::Result<(), String> {
        let held = self.0.lock().map_err(lock_error)?;
        let second = self.0.try_lock().map(|_| ()).map_err(|e| e.kind());
        drop(held);
        match second {
            Ok(()) => return Err("the mutex was locked twice at once".into()),
            // A second lock by the holder: EDEADLK (error-checking mutex), or busy.
            Err(ErrorKind::Io | ErrorKind::WouldBlock) => {}
            Err(k) => return Err(format!("a second lock while held failed oddly: {k:?}")),
        }
        drop(self.0.try_lock().map_err(lock_error)?);
        Ok(())
    }
}

/// Two processes pass a turn (the `u32` an `ipc_sync::Mutex` guards), waiting for it on an
/// `ipc_sync::Condvar` (`wait_with` and the spin policy, while the turn is not theirs), then
/// set the turn to the peer and `notify_one` after unlocking.
#[derive(Debug)]
pub struct MutexCondvar(pub Spin);

impl HandOffRow for MutexCondvar {
    fn info(&self) -> SyncInfo {
        let (id, spin, raw, what): (_, _, &[&str], _) = match self.0 {
            Spin::Adaptive => (
                "mutex-cv",
                SpinPolicy::Adaptive,
                &["mutex-cv-raw-spin", "mutex-cv-raw"],
                "ipc_sync::Mutex<u32> turn + Condvar: wait while turn != me, notify_one \
                 (default: adaptive)",
            ),
            Spin::Always => (
                "mutex-cv-spin",
                SpinPolicy::Always,
                &["mutex-cv-raw-spin"],
                "the same, Condvar::wait_with(Spin::Always)",
            ),
            Spin::Never => (
                "mutex-cv-sleep",
                SpinPolicy::Never,
                &["mutex-cv-raw"],
                "the same, Condvar::wait_with(Spin::Never)",
            ),
        };
        SyncInfo {
            id,
            family: "mutex",
            group: Group::MutexCondvar,
            kind: RowKind::Library,
            spin,
            raw,
            fixed: (self.0 == Spin::Adaptive).then_some(("mutex-cv-spin", "mutex-cv-sleep")),
            what,
        }
    }

    fn connect<'a>(&self, _shm: &'a Shm, child: &mut Handoff) -> Result<Box<dyn Turns + 'a>> {
        let turn = Shared::<Mutex<u32>>::create(0)?;
        let cv = Shared::<Condvar>::create(())?;
        child.fd("mutex", &turn)?;
        child.fd("condvar", &cv)?;
        Ok(Box::new(CondvarSide {
            turn,
            cv,
            me: 0,
            spin: self.0,
        }))
    }

    fn adopt<'a>(&self, _shm: &'a Shm, parent: &Inherited<'_>) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(CondvarSide {
            turn: Shared::open(parent.take_fd("mutex")?)?,
            cv: Shared::open(parent.take_fd("condvar")?)?,
            me: 1,
            spin: self.0,
        }))
    }
}

struct CondvarSide {
    turn: Shared<Mutex<u32>>,
    cv: Shared<Condvar>,
    me: u32,
    spin: Spin,
}

impl Turns for CondvarSide {
    fn wait_turn(&mut self, deadline: Instant) -> std::result::Result<bool, String> {
        let mut g = self.turn.lock().map_err(lock_error)?;
        while *g != self.me {
            let (again, waited) = self
                .cv
                .wait_with(g, Deadline::At(deadline), self.spin)
                .map_err(lock_error)?;
            g = again;
            if waited.timed_out() && *g != self.me {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn give_turn(&mut self, deadline: Instant) -> std::result::Result<(), String> {
        let mut g = self
            .turn
            .lock_until(Deadline::At(deadline))
            .map_err(lock_error)?;
        if *g != self.me {
            return Err(format!("side {} gave a turn it did not hold", self.me));
        }
        *g = 1 - self.me;
        drop(g);
        self.cv.notify_one();
        Ok(())
    }

    fn pending(&self) -> bool {
        false
    }
}

/// Two processes wake each other with a pair of `ipc_sync::Semaphore`s: each waits on its own
/// (`wait_with` and the spin policy) and posts the other's.
#[derive(Debug)]
pub struct SemPair(pub Spin);

impl HandOffRow for SemPair {
    fn info(&self) -> SyncInfo {
        let (id, spin, raw, what): (_, _, &[&str], _) = match self.0 {
            Spin::Adaptive => (
                "sem",
                SpinPolicy::Adaptive,
                &["sem-raw-spin", "sem-raw"],
                "two ipc_sync::Semaphores: post the peer's, wait on your own (default: adaptive)",
            ),
            Spin::Always => (
                "sem-spin",
                SpinPolicy::Always,
                &["sem-raw-spin"],
                "the same, wait_with(Spin::Always)",
            ),
            Spin::Never => (
                "sem-sleep",
                SpinPolicy::Never,
                &["sem-raw"],
                "the same, wait_with(Spin::Never)",
            ),
        };
        SyncInfo {
            id,
            family: "sem",
            group: Group::PingPong,
            kind: RowKind::Library,
            spin,
            raw,
            fixed: (self.0 == Spin::Adaptive).then_some(("sem-spin", "sem-sleep")),
            what,
        }
    }

    fn connect<'a>(&self, _shm: &'a Shm, child: &mut Handoff) -> Result<Box<dyn Turns + 'a>> {
        let sems = Shared::<[Semaphore; 2]>::create(0)?;
        child.fd("sems", &sems)?;
        Ok(Box::new(SemSide {
            sems,
            me: 0,
            spin: self.0,
        }))
    }

    fn adopt<'a>(&self, _shm: &'a Shm, parent: &Inherited<'_>) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(SemSide {
            sems: Shared::open(parent.take_fd("sems")?)?,
            me: 1,
            spin: self.0,
        }))
    }
}

struct SemSide {
    sems: Shared<[Semaphore; 2]>,
    me: usize,
    spin: Spin,
}

impl Turns for SemSide {
    fn wait_turn(&mut self, deadline: Instant) -> std::result::Result<bool, String> {
        match self.sems[self.me].wait_with(Deadline::At(deadline), self.spin) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn give_turn(&mut self, _deadline: Instant) -> std::result::Result<(), String> {
        let peer = &self.sems[1 - self.me];
        if peer.value() != 0 {
            return Err(format!(
                "side {} handed over twice: the peer had not taken the previous hand-off",
                self.me
            ));
        }
        peer.post().map_err(|e| e.to_string())
    }

    fn pending(&self) -> bool {
        self.sems[self.me].value() != 0
    }
}

/// Two processes wake each other with a pair of auto-reset `ipc_sync::Event`s: each waits on
/// its own (adaptive spin) and sets the other's.
#[derive(Debug)]
pub struct EventPair;

impl HandOffRow for EventPair {
    fn info(&self) -> SyncInfo {
        SyncInfo {
            id: "event",
            family: "event",
            group: Group::PingPong,
            kind: RowKind::Library,
            spin: SpinPolicy::Adaptive,
            raw: &["sem-raw-spin", "sem-raw"],
            fixed: None,
            what: "two auto-reset ipc_sync::Events: set the peer's, wait on your own",
        }
    }

    fn connect<'a>(&self, _shm: &'a Shm, child: &mut Handoff) -> Result<Box<dyn Turns + 'a>> {
        let events = Shared::<[Event; 2]>::create(EventMode::AutoReset)?;
        child.fd("events", &events)?;
        Ok(Box::new(EventSide { events, me: 0 }))
    }

    fn adopt<'a>(&self, _shm: &'a Shm, parent: &Inherited<'_>) -> Result<Box<dyn Turns + 'a>> {
        Ok(Box::new(EventSide {
            events: Shared::open(parent.take_fd("events")?)?,
            me: 1,
        }))
    }
}

struct EventSide {
    events: Shared<[Event; 2]>,
    me: usize,
}

impl Turns for EventSide {
    fn wait_turn(&mut self, deadline: Instant) -> std::result::Result<bool, String> {
        match self.events[self.me].wait_with(Deadline::At(deadline), Spin::Adaptive) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn give_turn(&mut self, _deadline: Instant) -> std::result::Result<(), String> {
        let peer = &self.events[1 - self.me];
        if peer.is_set() {
            return Err(format!(
                "side {} handed over twice: the peer had not taken the previous hand-off",
                self.me
            ));
        }
        peer.set();
        Ok(())
    }

    fn pending(&self) -> bool {
        self.events[self.me].is_set()
    }
}
