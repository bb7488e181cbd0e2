//! The robust mutex across real processes: the kill storm, owner death reported to the next
//! locker, unrecoverable after an unrepaired unlock, death during recovery, and coexistence
//! with a plain robust pthread mutex held by the same dying process.

use std::cell::UnsafeCell;
use std::time::Duration;

use ipc_core::{ErrorKind, Result};
use ipc_sync::{LockError, Mutex, MutexGuard, Shared, SharedObject};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

/// Mutexes in the kill storm.
const N: usize = 8;
type Storm = [Mutex<[u64; 2]>; N];

/// A small deterministic PRNG (xorshift64*), seeded by the parent so a failing round can be
/// replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Takes the lock from a lock result: repairs the data (`[a, b]` with the invariant
/// `a == b`) after an owner death, and checks the invariant otherwise. Returns `None` when the
/// lock was not taken (would block, timed out).
fn take<'a>(r: ipc_sync::LockResult<'a, [u64; 2]>, who: &str) -> Option<MutexGuard<'a, [u64; 2]>> {
    match r {
        Ok(g) => {
            assert_eq!(g[0], g[1], "{who}: a clean lock saw a half-done update");
            Some(g)
        }
        Err(LockError::OwnerDied(mut g)) => {
            g[1] = g[0];
            g.mark_consistent().expect("mark_consistent");
            Some(g)
        }
        Err(LockError::Failed(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            None
        }
        Err(LockError::Failed(e)) => panic!("{who}: {e}"),
    }
}

/// Random lock / try-lock / timed-lock / update / unlock on the storm's mutexes, until killed.
fn storm(ctx: &Ctx) {
    let shm = Shared::<Storm>::open(ctx.take_fd("shm")).expect("open storm");
    let mut rng = Rng(ctx.arg().parse().expect("seed"));
    let mut held: Vec<Option<MutexGuard<'_, [u64; 2]>>> = (0..N).map(|_| None).collect();
    for n in 0u64.. {
        let i = rng.below(N as u64) as usize;
        let m = &shm[i];
        match (rng.below(5), held[i].is_some()) {
            (0, false) => held[i] = take(m.lock(), "child lock"),
            (1, false) => held[i] = take(m.try_lock(), "child try_lock"),
            (2, false) => held[i] = take(m.lock_timeout(Duration::from_micros(50)), "child timed"),
            (3, true) => held[i] = None,
            (_, true) => {
                // An update with a window in which the invariant does not hold.
                let g = held[i].as_mut().expect("held");
                g[0] += 1;
                for _ in 0..rng.below(200) {
                    std::hint::spin_loop();
                }
                g[1] += 1;
            }
            _ => {}
        }
        if n == 200 {
            ctx.checkpoint("running");
        }
    }
}

fn lock_and_park(ctx: &Ctx) {
    let m = Shared::<Mutex<[u64; 2]>>::open(ctx.take_fd("m")).expect("open");
    let mut g = m.lock().expect("lock");
    g[0] += 1; // half an update
    ctx.park("holding");
}

/// Locks, expects the owner's death, changes the data and parks without repairing.
fn recover_and_park(ctx: &Ctx) {
    let m = Shared::<Mutex<[u64; 2]>>::open(ctx.take_fd("m")).expect("open");
    let mut g = match m.lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected owner died, got {:?}", other.map(|_| ())),
    };
    g[0] += 100;
    ctx.park("recovering");
}

/// Locks, expects the owner's death, and unlocks without marking consistent.
fn give_up_on_data(ctx: &Ctx) {
    let m = Shared::<Mutex<[u64; 2]>>::open(ctx.take_fd("m")).expect("open");
    let e: ipc_core::Error = m.lock().unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::OwnerDied);
}

/// Expects the mutex to be unrecoverable, by every way of locking.
fn expect_unrecoverable(ctx: &Ctx) {
    let m = Shared::<Mutex<[u64; 2]>>::open(ctx.take_fd("m")).expect("open");
    assert_eq!(m.try_lock().unwrap_err().kind(), ErrorKind::NotRecoverable);
    assert_eq!(m.lock().unwrap_err().kind(), ErrorKind::NotRecoverable);
    let e = m.lock_timeout(Duration::from_secs(60)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotRecoverable);
}

/// One of our mutexes beside a plain robust pthread mutex, in one mapping.
#[repr(C)]
struct Pair {
    ours: Mutex<u64>,
    plain: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: the plain mutex is process-shared, hence thread-safe; `ours` is `Sync`.
unsafe impl Sync for Pair {}

// SAFETY: `#[repr(C)]`; `ours` is validated by its own `open_at`; `plain` is only passed to
// glibc.
unsafe impl SharedObject for Pair {
    type Init = ();

    unsafe fn init_at<'a>(ptr: *mut Pair, _: ()) -> Result<&'a Pair> {
        // SAFETY: the caller's contract covers both fields; the attribute object is local and
        // initialised before use; the plain mutex is initialised in place.
        unsafe {
            Mutex::init_at(&raw mut (*ptr).ours, 0)?;
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            let plain = UnsafeCell::raw_get(&raw const (*ptr).plain);
            assert_eq!(libc::pthread_mutex_init(plain, &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
            Ok(&*ptr)
        }
    }

    unsafe fn open_at<'a>(ptr: *const Pair) -> Result<&'a Pair> {
        // SAFETY: the caller's contract covers the whole pair.
        unsafe {
            Mutex::open_at(&raw const (*ptr).ours)?;
            Ok(&*ptr)
        }
    }
}

fn hold_both_and_park(ctx: &Ctx) {
    let pair = Shared::<Pair>::open(ctx.take_fd("pair")).expect("open pair");
    let _held = pair.ours.lock().expect("lock ours");
    // SAFETY: the plain mutex was initialised by the parent and stays mapped.
    assert_eq!(unsafe { libc::pthread_mutex_lock(pair.plain.get()) }, 0);
    ctx.park("holding both");
}

roles!(
    storm,
    lock_and_park,
    recover_and_park,
    give_up_on_data,
    expect_unrecoverable,
    hold_both_and_park
);

fn soak() -> bool {
    std::env::var_os("IPC_SOAK").is_some()
}

/// The parent's lock: under a deadline of the watchdog's length, so that a hang is a failure.
fn parent_lock<'a>(m: &'a Mutex<[u64; 2]>) -> ipc_sync::LockResult<'a, [u64; 2]> {
    m.lock_timeout(watchdog())
}

#[test]
fn kill_storm_every_lock_is_taken_or_reports_the_death() {
    let shm = Shared::<Storm>::create([0, 0]).unwrap();
    let rounds = if soak() { 3000 } else { 150 };
    let mut seed_rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let (mut deaths, mut torn) = (0, 0);
    for round in 0..rounds {
        let seed = seed_rng.next() | 1;
        let mut child = spawn("storm").arg(seed.to_string()).fd("shm", &shm).start();
        child.wait_checkpoint("running");
        std::thread::sleep(Duration::from_micros(seed_rng.below(3000)));
        assert!(child.kill_and_wait().killed());
        for (i, m) in shm.iter().enumerate() {
            let who = format!("round {round} (seed {seed}), mutex {i}");
            match parent_lock(m) {
                Ok(g) => assert_eq!(g[0], g[1], "{who}: a clean lock saw a half-done update"),
                Err(LockError::OwnerDied(mut g)) => {
                    deaths += 1;
                    torn += usize::from(g[0] != g[1]);
                    g[1] = g[0];
                    g.mark_consistent().unwrap();
                }
                Err(LockError::Failed(e)) => panic!("{who}: {e}"),
            }
        }
    }
    // The child holds some lock most of the time: a storm that never killed a holder tested
    // nothing.
    assert!(deaths > 0, "no owner died in {rounds} rounds");
    eprintln!(
        "kill storm: {rounds} rounds, {deaths} owner deaths reported \
         ({torn} in the middle of an update), no hang"
    );
}

#[test]
fn owner_death_then_repair_makes_the_mutex_work_again() {
    let m = Shared::<Mutex<[u64; 2]>>::create([0, 0]).unwrap();
    let mut child = spawn("lock_and_park").fd("m", &m).start();
    child.wait_checkpoint("holding");
    child.kill_and_wait();
    let mut g = match parent_lock(&m) {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected owner died, got {:?}", other.map(|_| ())),
    };
    assert!(!g.is_consistent());
    assert_eq!(*g, [1, 0], "the dead owner's half update is visible");
    g[1] = 1;
    g.mark_consistent().unwrap();
    drop(g);
    assert_eq!(*parent_lock(&m).unwrap(), [1, 1]);
}

#[test]
fn unlock_without_mark_consistent_is_unrecoverable_everywhere() {
    let m = Shared::<Mutex<[u64; 2]>>::create([0, 0]).unwrap();
    let mut child = spawn("lock_and_park").fd("m", &m).start();
    child.wait_checkpoint("holding");
    child.kill_and_wait();
    spawn("give_up_on_data").fd("m", &m).start().wait_success();
    // In another process and in this one.
    spawn("expect_unrecoverable")
        .fd("m", &m)
        .start()
        .wait_success();
    let e = parent_lock(&m).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotRecoverable);
    let e: ipc_core::Error = m.try_lock().unwrap_err().into();
    assert_eq!(e.kind(), ErrorKind::NotRecoverable);
    assert!(e.to_string().contains("nobody marked"), "{e}");
}

#[test]
fn a_recoverer_that_dies_passes_the_owner_death_on() {
    let m = Shared::<Mutex<[u64; 2]>>::create([0, 0]).unwrap();
    let mut first = spawn("lock_and_park").fd("m", &m).start();
    first.wait_checkpoint("holding");
    first.kill_and_wait();
    let mut second = spawn("recover_and_park").fd("m", &m).start();
    second.wait_checkpoint("recovering");
    second.kill_and_wait();
    let mut g = match parent_lock(&m) {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected owner died again, got {:?}", other.map(|_| ())),
    };
    assert_eq!(*g, [101, 0]);
    g[1] = g[0];
    g.mark_consistent().unwrap();
    drop(g);
    assert_eq!(*parent_lock(&m).unwrap(), [101, 101]);
}

#[test]
fn coexists_with_a_plain_robust_pthread_mutex() {
    let pair = Shared::<Pair>::create(()).unwrap();
    let mut child = spawn("hold_both_and_park").fd("pair", &pair).start();
    child.wait_checkpoint("holding both");
    child.kill_and_wait();
    // Ours reports the death...
    let g = pair.ours.lock_timeout(watchdog());
    assert!(
        matches!(g, Err(LockError::OwnerDied(_))),
        "ours: {:?}",
        g.map(|_| ())
    );
    // ...and so does the plain one: the process's robust list (glibc's) covered both.
    let deadline = ipc_core::Deadline::after(watchdog());
    let abs = {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        let d = deadline.remaining().unwrap();
        libc::timespec {
            tv_sec: ts.tv_sec + d.as_secs() as i64,
            tv_nsec: ts.tv_nsec,
        }
    };
    // SAFETY: the plain mutex was initialised in `Pair::init_at` and stays mapped.
    let rc = unsafe { libc::pthread_mutex_timedlock(pair.plain.get(), &abs) };
    assert_eq!(rc, libc::EOWNERDEAD, "plain robust mutex");
    // SAFETY: as above; this thread holds it after EOWNERDEAD.
    unsafe {
        assert_eq!(libc::pthread_mutex_consistent(pair.plain.get()), 0);
        assert_eq!(libc::pthread_mutex_unlock(pair.plain.get()), 0);
    }
}
