//! A process killed (`SIGKILL`) at a random step of creating, opening, using, closing and
//! removing semaphores, over and over. What it leaves must be nothing, or a complete object
//! that opens at once with a value it can have and (named semaphores) the exact mode; or, for
//! a System V set killed between `semget` and setting its values, an error at the opener's
//! deadline that says what to do. Never a hang: every open runs under the watchdog.
//!
//! A named semaphore is made in several steps (an unnamed file, `fchmod`, `ftruncate`,
//! `mmap`, `sem_init`, `linkat`); a set in three (`semget`, `SETALL`, a first `semop`). The
//! library has no hooks to stop inside itself, so each round kills a child that loops through
//! the whole cycle, at a random moment: over the rounds the kills land on every step.
//! The same for a robust [`Mutex`] and a [`Semaphore`] placed in a shared file: a creator
//! killed while initialising them, or while holding the lock, leaves objects that the next
//! process either refuses (`WrongType`, "not initialised": the magic number is written last)
//! or opens and uses, the lock reporting `OwnerDied` if the creator held it.
//! A process relaying units between two semaphores (waiting on one, posting to the other)
//! killed at a random step, while this process posts and waits on the other ends: no unit is
//! made or lost except the one the dead relay may hold, and a new relay runs at once.
//! Default: 12 rounds per kind; `IPC_SOAK=1`: 300.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{
    Key, LockError, Mutex, NamedSemaphore, Semaphore, SemaphoreSet, SetOpenOptions, SharedObject,
};
use ipc_testkit::{
    Ctx, Rng, TempDir, by_profile, kill_at_random, roles, unique_name, within_watchdog,
};

/// `prefix`: creates, opens, uses, closes and unlinks `/prefix-0` and `/prefix-1` forever.
fn named_churn(ctx: &Ctx) {
    let prefix = ctx.arg();
    for i in 0usize.. {
        let name = format!("/{prefix}-{}", i % 2);
        let sem = NamedSemaphore::create_with_mode(name.as_str(), 3, 0o640).unwrap();
        let other = NamedSemaphore::open(name.as_str()).unwrap();
        other.try_wait().unwrap();
        sem.post().unwrap();
        drop(other);
        drop(sem);
        NamedSemaphore::unlink(name.as_str()).unwrap();
        if i == 0 {
            ctx.checkpoint("looping");
        }
    }
}

/// `path`: creates, uses and removes the set of ftok(path) forever.
fn set_churn(ctx: &Ctx) {
    let key = Key::from_path(ctx.arg(), b'S').unwrap();
    for i in 0usize.. {
        let set = SemaphoreSet::create(key, &[3, 1]).unwrap();
        set.acquire(0, Deadline::Now).unwrap();
        set.release(0).unwrap();
        set.remove().unwrap();
        if i == 0 {
            ctx.checkpoint("looping");
        }
    }
}

/// Bytes of each file of `placed_churn`: a mutex, then a semaphore at offset 256.
const PLACED_LEN: usize = 4096;
const SEM_AT: usize = 256;
/// How many files `placed_churn` goes through before it parks.
const PLACED_FILES: usize = 64;

/// Maps `path` (created, `PLACED_LEN` bytes) shared and read-write.
fn map_file(path: &std::path::Path, create: bool) -> memmap2::MmapMut {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create)
        .open(path)
        .unwrap();
    if create {
        f.set_len(PLACED_LEN as u64).unwrap();
    }
    // SAFETY: the file is this test's own; its bytes are used only through the library's
    // shared objects, and nobody truncates it.
    unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap()
}

/// `dir`: for file 0, 1, ...: creates it, initialises a mutex and a semaphore in it, locks,
/// posts, unlocks, waits; then parks holding the lock of the last file.
fn placed_churn(ctx: &Ctx) {
    let dir = std::path::PathBuf::from(ctx.arg());
    for i in 0..PLACED_FILES {
        let mut map = map_file(&dir.join(format!("f{i}")), true);
        let base = map.as_mut_ptr();
        // SAFETY: fresh, page-aligned, zeroed bytes of our own mapping, big enough for both
        // objects; nobody opens them before this process is killed (the parent waits).
        let (m, s) = unsafe {
            (
                Mutex::<u64>::init_at(base.cast(), 7).unwrap(),
                Semaphore::init_at(base.add(SEM_AT).cast(), 1).unwrap(),
            )
        };
        let mut g = m.lock().unwrap();
        *g += 1;
        s.post().unwrap();
        if i + 1 == PLACED_FILES {
            ctx.park("looping");
        }
        drop(g);
        s.wait().unwrap();
        if i == 0 {
            ctx.checkpoint("looping");
        }
        std::mem::forget(map); // keep it mapped: the next file is a new mapping
    }
}

/// `path [rounds]`: relays units between the two semaphores in the file at `path` (at 0 and
/// `SEM_AT`): takes one from the first, posts one to the second; forever, or `rounds` times.
fn relay(ctx: &Ctx) {
    let args = ctx.args();
    let mut map = map_file(std::path::Path::new(args[0]), false);
    let base = map.as_mut_ptr();
    // SAFETY: the parent's file, PLACED_LEN bytes, both semaphores initialised before this
    // role started; the mapping lives until the role ends.
    let (a, b) = unsafe {
        (
            Semaphore::open_at(base.cast()).unwrap(),
            Semaphore::open_at(base.add(SEM_AT).cast()).unwrap(),
        )
    };
    let rounds: usize = args.get(1).map_or(usize::MAX, |r| r.parse().unwrap());
    for i in 0..rounds {
        a.wait().unwrap();
        b.post().unwrap();
        if i == 0 {
            ctx.checkpoint("looping");
        }
    }
}

roles!(named_churn, set_churn, placed_churn, relay);

/// Unlinks a semaphore name on drop.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = NamedSemaphore::unlink(self.0.as_str());
    }
}

#[test]
fn a_named_semaphore_user_killed_at_any_step_leaves_nothing_or_a_whole_semaphore() {
    let mut rng = Rng::new("kill steps");
    let (mut whole, mut none) = (0, 0);
    for _ in 0..by_profile(12, 300) {
        let prefix = unique_name("semkill");
        let _guards: Vec<_> = (0..2).map(|i| Unlink(format!("/{prefix}-{i}"))).collect();
        kill_at_random(
            "named_churn",
            &prefix,
            "looping",
            Duration::from_millis(3),
            &mut rng,
        );
        // Nothing but the two names: no temporary file of a half-made semaphore.
        let left: Vec<String> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|f| f.contains(&prefix))
            .collect();
        for f in &left {
            assert!(
                *f == format!("sem.{prefix}-0") || *f == format!("sem.{prefix}-1"),
                "left behind: /dev/shm/{f}"
            );
        }
        for i in 0..2 {
            let name = format!("/{prefix}-{i}");
            let opened = within_watchdog("open", {
                let name = name.clone();
                move || NamedSemaphore::open(name.as_str())
            });
            match opened {
                Ok(sem) => {
                    let v = sem.value().unwrap();
                    assert!((2..=3).contains(&v), "{name}: value {v}");
                    let file = format!("/dev/shm/sem.{prefix}-{i}");
                    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
                    assert_eq!(mode, 0o640, "{file}: mode {mode:o}");
                    whole += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}");
                    none += 1;
                }
            }
        }
    }
    eprintln!("after the kills: {whole} whole semaphores, {none} names empty");
}

#[test]
fn a_semaphore_set_user_killed_at_any_step_leaves_openers_a_set_or_an_error() {
    let mut rng = Rng::new("kill steps");
    let dir = TempDir::new("setkill");
    let (mut whole, mut none, mut uninit) = (0, 0, 0);
    for r in 0..by_profile(12, 300) {
        let path = dir.join(&format!("key{r}"));
        std::fs::write(&path, b"").unwrap();
        let key = Key::from_path(&path, b'S').unwrap();
        kill_at_random(
            "set_churn",
            path.to_str().unwrap(),
            "looping",
            Duration::from_millis(3),
            &mut rng,
        );
        // Removes whatever the round left, also if a check fails.
        let _remove = SemaphoreSet::lookup(key)
            .ok()
            .and_then(|id| SemaphoreSet::from_id(id).ok())
            .map(SemaphoreSet::remove_on_drop);
        let opened = within_watchdog("open", move || {
            SetOpenOptions::new()
                .wait(Deadline::after(Duration::from_millis(20)))
                .open(key)
        });
        match opened {
            Ok(set) => {
                let v = set.values().unwrap();
                assert!(v == [3, 1] || v == [2, 1], "values {v:?}");
                whole += 1;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => none += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
                assert!(e.to_string().contains("ipcrm -s"), "{e}");
                uninit += 1;
            }
        }
    }
    eprintln!("after the kills: {whole} whole sets, {none} keys free, {uninit} uninitialised");
}

#[test]
fn a_mutex_and_semaphore_creator_killed_at_any_step_leaves_them_refused_or_usable() {
    let mut rng = Rng::new("kill steps");
    let (mut usable, mut owner_died, mut refused) = (0, 0, 0);
    for r in 0..by_profile(12, 300) {
        let dir = TempDir::new(&format!("placed{r}"));
        kill_at_random(
            "placed_churn",
            dir.path().to_str().unwrap(),
            "looping",
            Duration::from_millis(3),
            &mut rng,
        );
        for i in 0..PLACED_FILES {
            let path = dir.join(&format!("f{i}"));
            if !path.exists() {
                break;
            }
            let meta = std::fs::metadata(&path).unwrap();
            if meta.len() < PLACED_LEN as u64 {
                refused += 1; // killed between create and set_len: nothing to map
                continue;
            }
            let map = map_file(&path, false);
            // The mapping moves into the watchdog's thread: a lock that hangs fails the test.
            let (m, sem) = within_watchdog("open and lock", move || {
                let mut map = map;
                let base = map.as_mut_ptr();
                // SAFETY: our mapping of the file, page-aligned, PLACED_LEN bytes, alive for
                // this closure; the bytes are used only through the library's objects (their
                // writer is dead).
                let m = unsafe { Mutex::<u64>::open_at(base.cast()) }.map(|m| {
                    match m.lock_timeout(Duration::from_secs(5)) {
                        Ok(g) => (false, *g),
                        Err(LockError::OwnerDied(g)) => (true, *g),
                        Err(LockError::Failed(e)) => panic!("{e}"),
                    }
                });
                // SAFETY: as above.
                let sem = unsafe { Semaphore::open_at(base.add(SEM_AT).cast()) }.map(|s| s.value());
                (m, sem)
            });
            match m {
                Ok((died, value)) => {
                    assert!(matches!(value, 7 | 8), "f{i}: value {value}");
                    if died {
                        owner_died += 1;
                    } else {
                        usable += 1;
                    }
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WrongType, "f{i}: {e}");
                    refused += 1;
                }
            }
            match sem {
                Ok(v) => assert!(matches!(v, 1 | 2), "f{i}: semaphore value {v}"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::WrongType, "f{i}: {e}"),
            }
        }
    }
    eprintln!(
        "mutexes after the kills: {usable} usable, {owner_died} owner died, {refused} refused"
    );
}

#[test]
fn a_semaphore_relay_killed_at_any_step_blocks_nobody_and_keeps_the_count() {
    let mut rng = Rng::new("kill steps");
    let dir = TempDir::new("relay");
    let path = dir.join("sems");
    let mut map = map_file(&path, true);
    let base = map.as_mut_ptr();
    // SAFETY: fresh, page-aligned, zeroed bytes of our own mapping, big enough for both
    // semaphores; the relays open them only after this.
    let (a, b): (&'static Semaphore, &'static Semaphore) = unsafe {
        (
            Semaphore::init_at(base.cast(), 0).unwrap(),
            Semaphore::init_at(base.add(SEM_AT).cast(), 0).unwrap(),
        )
    };
    // The mapping must outlive the semaphores' borrows (and the driver thread below).
    std::mem::forget(map);
    let (mut posted, mut taken) = (0u64, 0u64);
    for _ in 0..by_profile(12, 300) {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let driver = std::thread::spawn({
            let stop = std::sync::Arc::clone(&stop);
            move || {
                let (mut posted, mut taken) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    a.post().unwrap();
                    posted += 1;
                    match b.wait_timeout(Duration::from_millis(2)) {
                        Ok(()) => taken += 1,
                        Err(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
                    }
                }
                (posted, taken)
            }
        });
        kill_at_random(
            "relay",
            path.to_str().unwrap(),
            "looping",
            Duration::from_millis(3),
            &mut rng,
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (p, t) = driver.join().unwrap();
        posted += p;
        taken += t;
        // Every unit posted is still in `a`, was relayed into `b` (and is there or taken), or
        // is held by a dead relay: at most one per round.
        let here = u64::from(a.value()) + u64::from(b.value()) + taken;
        assert!(here <= posted, "units made: {here} > {posted}");
        let held = posted - here;
        // A new relay takes what `a` holds and hands over at once: nothing the dead ones
        // left (a sleepers bit, a unit nobody was woken for) blocks it or this process.
        let rounds = a.value() + 5;
        let mut child = ipc_testkit::spawn("relay")
            .arg(format!("{} {rounds}", path.to_str().unwrap()))
            .start();
        for _ in 0..5 {
            a.post().unwrap();
        }
        posted += 5;
        for _ in 0..rounds {
            b.wait_timeout(ipc_testkit::watchdog()).unwrap();
            taken += 1;
        }
        child.wait_checkpoint("looping");
        child.wait_success();
        // `b` may still hold units relayed before this round's check: take them.
        while b.try_wait().is_ok() {
            taken += 1;
        }
        assert_eq!(a.value(), 0);
        posted -= held;
    }
    assert_eq!(
        posted, taken,
        "every unit not held by a dead relay was taken"
    );
}
