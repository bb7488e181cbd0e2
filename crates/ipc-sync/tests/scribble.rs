//! Another process writes over a robust mutex's `pthread_mutex_t`: its robust-list links while
//! a child holds it (wild addresses, and addresses of the child's own data), its kind word, its
//! lock word, its owner word (also while the child repairs it after an owner death). The
//! holder's unlock never writes through what the other process wrote, nor crashes; the mutex
//! works afterwards (or stays not recoverable, if its holder gave up on it); a lock refuses a
//! kind that is no longer robust.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use ipc_core::ErrorKind;
use ipc_sync::{LockError, Mutex, MutexGuard, Shared};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

/// The canary pattern in each mutex's data: an unlock that followed a planted link into the
/// data would change it.
const CANARY: [u64; 4] = [0xC0FF_EE00, 0xC0FF_EE01, 0xC0FF_EE02, 0xC0FF_EE03];

type Pair = [Mutex<[u64; 4]>; 2];

/// Where glibc keeps its words in our `Mutex` (the `pthread_mutex_t` starts at 24; see the
/// type's `# Layout`): the lock word, `__owner`, `__kind`, `__list.__prev`, `__list.__next`.
const LOCK_AT: usize = 24;
const OWNER_AT: usize = 24 + 8;
const KIND_AT: usize = 24 + 16;
/// glibc's `__owner` of a mutex taken over from a dead holder (`PTHREAD_MUTEX_INCONSISTENT`):
/// its unlock makes the mutex not recoverable.
const INCONSISTENT: u32 = i32::MAX as u32;
const PREV_AT: usize = 24 + 24;
const NEXT_AT: usize = 24 + 32;

/// glibc's word at `at` in `m` (`AtomicUsize` or `AtomicU32`): what another process may write.
fn word<W>(m: &Mutex<[u64; 4]>, at: usize) -> &W {
    // SAFETY: `at` is one of the offsets above, aligned for its word and inside the mutex, which
    // stays mapped while `m` is borrowed; writing it is what another process mapping the
    // memory can do at any time.
    unsafe {
        &*(m as *const Mutex<[u64; 4]>)
            .cast::<u8>()
            .add(at)
            .cast::<W>()
    }
}

/// The child's plan, from its argument: which mutexes it holds (`a`, or `ab`: `a` locked
/// first), and in which order it unlocks them.
fn plan(arg: &str) -> (&[usize], &[usize]) {
    match arg {
        "a" => (&[0], &[0]),
        "ab-ba" => (&[0, 1], &[1, 0]),
        "ab-ab" => (&[0, 1], &[0, 1]),
        other => panic!("plan {other}"),
    }
}

/// Locks as planned, tells the parent where its data is (this process's addresses), waits
/// for the parent to write over a mutex, unlocks as planned (each unlock must succeed), then
/// checks that no data changed and that both mutexes lock and unlock again.
fn hold_then_unlock(ctx: &Ctx) {
    let pair = Shared::<Pair>::open(ctx.take_fd("pair")).expect("open");
    let mut ctl = UnixStream::from(ctx.take_fd("ctl"));
    let (lock, unlock) = plan(ctx.arg());
    let mut held: Vec<Option<MutexGuard<'_, [u64; 4]>>> = vec![None, None];
    for &i in lock {
        held[i] = Some(pair[i].lock().expect("lock"));
    }
    for m in pair.iter() {
        let data = m as *const Mutex<[u64; 4]> as usize + 64;
        ctl.write_all(&data.to_ne_bytes()).expect("send address");
    }
    ctx.checkpoint("holding");
    let mut go = [0u8];
    ctl.read_exact(&mut go).expect("go");
    for &i in unlock {
        let g = held[i].take().expect("held");
        g.unlock()
            .unwrap_or_else(|e| panic!("unlock of mutex {i}: {e}"));
    }
    for (i, m) in pair.iter().enumerate() {
        let g = m.lock().expect("relock");
        assert_eq!(*g, CANARY, "mutex {i}: an unlock wrote into the data");
        g.unlock().expect("unlock again");
    }
}

/// Locks `a` and waits to be killed; `unlock` in the arg: first tries an unlock that must be
/// refused (the parent wrote another thread's id into the lock word).
fn hold_until_lock_word_overwritten(ctx: &Ctx) {
    let pair = Shared::<Pair>::open(ctx.take_fd("pair")).expect("open");
    let mut ctl = UnixStream::from(ctx.take_fd("ctl"));
    let g = pair[0].lock().expect("lock");
    ctx.checkpoint("holding");
    let mut go = [0u8];
    ctl.read_exact(&mut go).expect("go");
    let e = g.unlock().expect_err("the lock word names another thread");
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(e.to_string().contains("lock word"), "{e}");
    // Taken out of this thread's list by hand: locking and unlocking the other mutex (whose
    // unlock walks the list) and exiting are clean.
    let g = pair[1].lock().expect("lock the other");
    g.unlock().expect("unlock the other");
}

/// Locks both mutexes, forks, and has the forked copy (which holds nothing: its thread's
/// robust list starts empty) unlock its copy of the newest guard: refused, with nothing
/// written to the mutex, so that this process's own unlocks, in either order, still work.
fn unlock_in_a_forked_copy(ctx: &Ctx) {
    let pair = Shared::<Pair>::open(ctx.take_fd("pair")).expect("open");
    let a = pair[0].lock().expect("lock a");
    let b = pair[1].lock().expect("lock b");
    // SAFETY: this role's process runs one thread here; the forked copy only unlocks (no lock
    // of this process's allocator or stdio is held across the fork by this thread) and ends
    // with `_exit`.
    match unsafe { libc::fork() } {
        0 => {
            let refused = matches!(b.unlock(), Err(e) if e.kind() == ErrorKind::Corrupted);
            std::mem::forget(a);
            // SAFETY: ends the forked copy without running anything of the parent's.
            unsafe { libc::_exit(if refused { 0 } else { 1 }) }
        }
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child just forked; `status` is a local.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the forked copy's unlock was not refused: {status:#x}"
            );
        }
    }
    b.unlock().expect("unlock b");
    a.unlock().expect("unlock a");
    for m in pair.iter() {
        m.lock().expect("relock").unlock().expect("unlock again");
    }
}

/// `mark` or `drop`: takes mutex `a` over from a dead owner, waits for the parent to write
/// over it, then repairs it (`mark_consistent`, which must succeed) and unlocks, or drops the
/// guard unrepaired.
fn take_over_then_repair_or_give_up(ctx: &Ctx) {
    let pair = Shared::<Pair>::open(ctx.take_fd("pair")).expect("open");
    let mut ctl = UnixStream::from(ctx.take_fd("ctl"));
    let mut g = match pair[0].lock() {
        Err(LockError::OwnerDied(g)) => g,
        other => panic!("expected owner died, got {:?}", other.map(|_| ())),
    };
    ctx.checkpoint("holding");
    let mut go = [0u8];
    ctl.read_exact(&mut go).expect("go");
    if ctx.arg() == "mark" {
        g.mark_consistent().expect("mark_consistent");
        g.unlock().expect("unlock");
    } else {
        drop(g);
    }
}

roles!(
    hold_then_unlock,
    hold_until_lock_word_overwritten,
    unlock_in_a_forked_copy,
    take_over_then_repair_or_give_up
);

/// A parent and a child holding as `plan` says; the parent's end of the control socket, and
/// each mutex's data address in the child.
fn start(role: &str, plan: &str) -> (Shared<Pair>, ipc_testkit::Child, UnixStream, [usize; 2]) {
    let pair = Shared::<Pair>::create(CANARY).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut child = spawn(role)
        .arg(plan)
        .fd("pair", &pair)
        .fd("ctl", &theirs)
        .start();
    drop(theirs);
    let mut data = [0usize; 2];
    if role == "hold_then_unlock" {
        for d in &mut data {
            let mut b = [0u8; 8];
            ours.read_exact(&mut b).expect("the child's address");
            *d = usize::from_ne_bytes(b);
        }
    }
    child.wait_checkpoint("holding");
    (pair, child, ours, data)
}

/// The parent's lock after the child ended: the mutex is free and clean, not held, not an
/// owner death.
fn assert_free(pair: &Pair) {
    for (i, m) in pair.iter().enumerate() {
        match m.lock_timeout(watchdog()) {
            Ok(g) => assert_eq!(*g, CANARY, "mutex {i}"),
            Err(LockError::OwnerDied(_)) => panic!("mutex {i}: the child did not unlock it"),
            Err(LockError::Failed(e)) => panic!("mutex {i}: {e}"),
        }
    }
}

/// Runs `plan`, with the parent writing `links(child's data address)` over mutex `victim`'s
/// links while the child holds it.
fn links_overwritten(plan: &str, victim: usize, links: impl Fn(usize) -> (usize, usize)) {
    let (pair, child, mut ctl, data) = start("hold_then_unlock", plan);
    let (prev, next) = links(data[victim]);
    word::<AtomicUsize>(&pair[victim], PREV_AT).store(prev, Ordering::Relaxed);
    word::<AtomicUsize>(&pair[victim], NEXT_AT).store(next, Ordering::Relaxed);
    ctl.write_all(b"g").unwrap();
    let out = child.wait_success();
    assert!(out.success(), "plan {plan}, victim {victim}");
    assert_free(&pair);
}

/// Addresses nothing is mapped at: glibc's unlock, following them, crashes the holder
/// (SIGSEGV) without the check.
fn wild(_: usize) -> (usize, usize) {
    (0x1000, 0x2008)
}

/// Addresses of the holder's own data: glibc's unlock, following them, writes into words 1
/// and 3 of the data without the check (silently: the canary catches it).
fn into_data(data: usize) -> (usize, usize) {
    (data + 8, data + 32)
}

#[test]
fn overwritten_links_of_the_only_held_mutex_are_not_followed() {
    links_overwritten("a", 0, wild);
    links_overwritten("a", 0, into_data);
    links_overwritten("a", 0, |_| (0, 0));
}

#[test]
fn overwritten_links_of_one_of_two_held_mutexes_are_not_followed_in_any_order() {
    // Unlocking the newest first, then the oldest; and the other way round. Either mutex's
    // links overwritten: the other one's unlock meets them as its neighbour's.
    for plan in ["ab-ba", "ab-ab"] {
        for victim in [0, 1] {
            links_overwritten(plan, victim, wild);
            links_overwritten(plan, victim, into_data);
        }
    }
}

#[test]
fn a_kind_overwritten_while_held_is_restored_at_unlock() {
    let (pair, child, mut ctl, _) = start("hold_then_unlock", "a");
    word::<AtomicU32>(&pair[0], KIND_AT).store(0, Ordering::Relaxed); // a plain, private, not robust mutex
    ctl.write_all(b"g").unwrap();
    child.wait_success();
    assert_free(&pair);
}

#[test]
fn a_lock_refuses_a_kind_that_is_no_longer_robust() {
    let pair = Shared::<Pair>::create(CANARY).unwrap();
    // 0: a plain mutex, neither robust nor shared, which glibc would lock as such: a holder's
    // death would then leave every other locker waiting forever.
    word::<AtomicU32>(&pair[0], KIND_AT).store(0, Ordering::Relaxed);
    let m = &pair[0];
    for way in ["try_lock", "lock_timeout", "lock"] {
        let r = match way {
            "try_lock" => m.try_lock(),
            "lock_timeout" => m.lock_timeout(watchdog()),
            _ => m.lock(),
        };
        // A lock that does take it drops it at once, so that a failure is a failure and not
        // this thread waiting for itself.
        let e: ipc_core::Error = r.map(|_| ()).unwrap_err().into();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{way}: {e}");
        assert!(e.to_string().contains("kind was overwritten"), "{way}: {e}");
    }
    assert!(pair[1].try_lock().is_ok(), "the other mutex is untouched");
}

#[test]
fn a_lock_word_overwritten_while_held_makes_unlock_a_typed_error() {
    let (pair, child, mut ctl, _) = start("hold_until_lock_word_overwritten", "a");
    // Another thread's id (pid 1's, alive) where the holder's was.
    word::<AtomicU32>(&pair[0], LOCK_AT).store(1, Ordering::Relaxed);
    ctl.write_all(b"g").unwrap();
    child.wait_success();
    // The word still names thread 1: nobody else takes the lock, but the child unlinked it
    // from its list and exited cleanly (above); clear the word for the other checks.
    word::<AtomicU32>(&pair[0], LOCK_AT).store(0, Ordering::Relaxed);
    assert_free(&pair);
}

#[test]
fn a_guard_unlocked_in_a_forked_copy_writes_nothing_to_the_mutex() {
    let pair = Shared::<Pair>::create(CANARY).unwrap();
    spawn("unlock_in_a_forked_copy")
        .fd("pair", &pair)
        .start()
        .wait_success();
    assert_free(&pair);
}

/// The owner word glibc keeps in a held mutex decides what its unlock does: "inconsistent"
/// makes the mutex not recoverable. Written over while a healthy holder holds it, it is put
/// back: the mutex is free and clean afterwards, not unusable for good (before the fix, every
/// later lock failed with `NotRecoverable`, "a holder died": nobody had).
#[test]
fn an_owner_word_overwritten_while_held_is_restored_at_unlock() {
    for bad in [INCONSISTENT, 0, u32::MAX] {
        let (pair, child, mut ctl, _) = start("hold_then_unlock", "a");
        word::<AtomicU32>(&pair[0], OWNER_AT).store(bad, Ordering::Relaxed);
        ctl.write_all(b"g").unwrap();
        child.wait_success();
        assert_free(&pair);
    }
}

/// A mutex taken over from a dead holder, written over while its new holder repairs it: the
/// owner word (which glibc's `pthread_mutex_consistent` requires to say "inconsistent") or
/// the kind word (which it requires to say "robust"). The repair succeeds and the mutex is
/// free and clean afterwards; and a holder that gives up without repairing still leaves the
/// mutex not recoverable, whatever the owner word was made to say (before the fix, the repair
/// failed with `EINVAL`, and giving up left a mutex nobody vouched for usable).
#[test]
fn a_takeover_written_over_is_repaired_or_given_up_as_its_holder_says() {
    let cases: [(&str, usize, u32); 4] = [
        ("mark", OWNER_AT, 0),
        ("mark", KIND_AT, 0),
        ("drop", OWNER_AT, 0),
        ("drop", OWNER_AT, 12345),
    ];
    for (plan, at, bad) in cases {
        let what = format!("{plan}, word {at} = {bad}");
        let pair = Shared::<Pair>::create(CANARY).unwrap();
        // The first holder: a thread that ends holding mutex `a`.
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(pair[0].lock().unwrap()));
        });
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let mut child = spawn("take_over_then_repair_or_give_up")
            .arg(plan)
            .fd("pair", &pair)
            .fd("ctl", &theirs)
            .start();
        drop(theirs);
        child.wait_checkpoint("holding");
        word::<AtomicU32>(&pair[0], at).store(bad, Ordering::Relaxed);
        ours.write_all(b"g").unwrap();
        child.wait_success();
        if plan == "mark" {
            assert_free(&pair);
        } else {
            let e: ipc_core::Error = pair[0]
                .lock_timeout(watchdog())
                .map(|_| ())
                .unwrap_err()
                .into();
            assert_eq!(e.kind(), ErrorKind::NotRecoverable, "{what}: {e}");
        }
    }
}
