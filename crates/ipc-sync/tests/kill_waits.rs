//! Parties of a hand-off `SIGKILL`ed at a random step of their loop, while this process keeps
//! handing off: a condvar's turn-taking (wait, take the turn under the mutex, notify), an
//! auto-reset event's ping-pong (wait, set), and a chain of processes each taking a robust
//! mutex over from a dead holder, repairing it, and dying holding it again. Whatever step a
//! kill lands on (inside a wait, between a counter's bump and its wake-up, holding the mutex
//! halfway through an update, inside `mark_consistent`), the survivor is never left waiting:
//! every wait of this process has a deadline and the hand-offs go on with a new party at once.
//! Default: 12 rounds per kind; `IPC_SOAK=1`: 300.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{Condvar, Event, EventMode, LockError, Mutex, MutexGuard, Shared};
use ipc_testkit::{Child, Ctx, Rng, by_profile, roles, spawn, watchdog};

/// `[turn, copy]`: the turn counter and a copy, written one after the other so that a holder
/// killed between the two leaves them apart. Odd turns are the child's, even ones ours.
type Turns = Mutex<[u64; 2]>;

/// Takes the lock from a lock result, repairing the data after an owner death (a dead holder
/// may have bumped the turn and not its copy: the bump counts).
fn repaired<'a>(r: ipc_sync::LockResult<'a, [u64; 2]>, who: &str) -> MutexGuard<'a, [u64; 2]> {
    match r {
        Ok(g) => {
            assert_eq!(g[0], g[1], "{who}: a clean lock saw a half-done update");
            g
        }
        Err(LockError::OwnerDied(mut g)) => {
            g[1] = g[0];
            g.mark_consistent().expect("mark_consistent");
            g
        }
        Err(LockError::Failed(e)) => panic!("{who}: {e}"),
    }
}

/// Takes the turn this guard's holder waited for: the counter, then (after a moment in which
/// a kill leaves them apart) its copy; and tells the other side.
fn take_turn(g: &mut MutexGuard<'_, [u64; 2]>, cv: &Condvar) {
    g[0] += 1;
    for _ in 0..50 {
        std::hint::spin_loop();
    }
    g[1] = g[0];
    cv.notify_all();
}

/// `[rounds]`: takes the odd turns, forever or `rounds` times.
fn condvar_turns(ctx: &Ctx) {
    let m = Shared::<Turns>::open(ctx.take_fd("m")).expect("open mutex");
    let cv = Shared::<Condvar>::open(ctx.take_fd("cv")).expect("open condvar");
    let rounds: u64 = ctx.args().first().map_or(u64::MAX, |r| r.parse().unwrap());
    let mut g = repaired(m.lock(), "child lock");
    ctx.checkpoint("looping");
    for _ in 0..rounds {
        g = loop {
            match cv.wait_while(g, |t| t[0] % 2 == 0) {
                Ok(g) => break g,
                // The other side died holding the mutex: repair, and wait on.
                Err(e) => g = repaired(Err(e), "child wait"),
            }
        };
        take_turn(&mut g, &cv);
    }
}

/// `[rounds]`: waits for "ping" and sets "pong", forever or `rounds` times.
fn event_pong(ctx: &Ctx) {
    let ping = Shared::<Event>::open(ctx.take_fd("ping")).expect("open ping");
    let pong = Shared::<Event>::open(ctx.take_fd("pong")).expect("open pong");
    let rounds: u64 = ctx.args().first().map_or(u64::MAX, |r| r.parse().unwrap());
    ctx.checkpoint("looping");
    for _ in 0..rounds {
        ping.wait().expect("wait");
        pong.set();
    }
}

/// Locks the mutex, taking it over from a dead holder if need be (then counting the takeover
/// in `[1]` and repairing), counts itself in `[0]`, and parks holding it.
fn take_over_and_park(ctx: &Ctx) {
    let m = Shared::<Turns>::open(ctx.take_fd("m")).expect("open");
    let mut g = match m.lock() {
        Ok(g) => g,
        Err(LockError::OwnerDied(mut g)) => {
            g[1] += 1;
            g.mark_consistent().expect("mark_consistent");
            g
        }
        Err(LockError::Failed(e)) => panic!("lock: {e}"),
    };
    g[0] += 1;
    ctx.park("holding");
}

roles!(condvar_turns, event_pong, take_over_and_park);

/// Starts `role` with `fds`, and `rounds` if given; waits until it is about to loop.
fn start(role: &str, fds: &[(&str, std::os::fd::BorrowedFd<'_>)], rounds: Option<u32>) -> Child {
    let mut s = spawn(role);
    if let Some(r) = rounds {
        s = s.arg(r.to_string());
    }
    for (name, fd) in fds {
        s = s.fd(name, fd);
    }
    let mut child = s.start();
    child.wait_checkpoint("looping");
    child
}

/// Runs `drive` on a thread until `child` is killed at a random moment within 3 ms.
fn kill_while<F>(mut child: Child, rng: &mut Rng, drive: F)
where
    F: FnOnce(&AtomicBool) + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let driver = s.spawn({
            let stop = Arc::clone(&stop);
            move || drive(&stop)
        });
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        assert!(child.kill_and_wait().killed(), "the child ended by itself");
        stop.store(true, Ordering::Relaxed);
        driver.join().unwrap();
    });
}

/// How many hand-offs a new party makes after each kill.
const AFTER: u32 = 5;

#[test]
fn a_condvar_party_killed_at_any_step_leaves_the_survivor_taking_turns() {
    let mut rng = Rng::new("kill waits");
    let m = Shared::<Turns>::create([0, 0]).unwrap();
    let cv = Shared::<Condvar>::create(()).unwrap();
    let fds = [("m", m.as_fd()), ("cv", cv.as_fd())];
    for round in 0..by_profile(12, 300) {
        let who = format!("round {round} (seed {})", rng.seed());
        kill_while(start("condvar_turns", &fds, None), &mut rng, |stop| {
            // Our even turns, with short waits so that the kill can end this.
            let mut g = repaired(m.lock_timeout(watchdog()), "our lock");
            while !stop.load(Ordering::Relaxed) {
                let d = Deadline::after(Duration::from_millis(2));
                g = match cv.wait_timeout_while(g, d, |t| t[0] % 2 == 1) {
                    Ok((mut g, r)) => {
                        if !r.timed_out() {
                            take_turn(&mut g, &cv);
                        }
                        g
                    }
                    Err(e) => repaired(Err(e), "our wait"),
                };
            }
        });
        // A new party takes its turns at once: nothing the dead one left (a raised waiter
        // count, a bump nobody was woken for, the mutex held) holds either side up.
        let child = start("condvar_turns", &fds, Some(AFTER));
        let mut g = repaired(m.lock_timeout(watchdog()), "our lock");
        let mut ours = 0;
        while ours < AFTER {
            let d = Deadline::after(watchdog());
            let (next, r) = cv
                .wait_timeout_while(g, d, |t| t[0] % 2 == 1)
                .map_err(ipc_core::Error::from)
                .unwrap_or_else(|e| panic!("{who}: {e}"));
            assert!(!r.timed_out(), "{who}: the new party never took its turn");
            g = next;
            take_turn(&mut g, &cv);
            ours += 1;
        }
        drop(g);
        child.wait_success();
    }
    let turns = m.lock_timeout(watchdog()).unwrap()[0];
    let killed = by_profile(12u64, 300);
    // Every round's new party made 2 * AFTER turns; the rest were made while a party was
    // killed at some step of its loop.
    eprintln!(
        "{} turns taken around the kills of {killed} parties",
        turns - killed * 2 * u64::from(AFTER)
    );
}

#[test]
fn an_event_party_killed_at_any_step_leaves_the_survivor_handing_off() {
    let mut rng = Rng::new("kill waits");
    let ping = Shared::<Event>::create(EventMode::AutoReset).unwrap();
    let pong = Shared::<Event>::create(EventMode::AutoReset).unwrap();
    let fds = [("ping", ping.as_fd()), ("pong", pong.as_fd())];
    for round in 0..by_profile(12, 300) {
        let who = format!("round {round} (seed {})", rng.seed());
        kill_while(start("event_pong", &fds, None), &mut rng, |stop| {
            while !stop.load(Ordering::Relaxed) {
                ping.set();
                match pong.wait_timeout(Duration::from_millis(2)) {
                    Ok(()) => {}
                    Err(e) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
                }
            }
        });
        // A set the dead party did not answer, or an answer we did not take: sets do not add
        // up, so start the new party from both unset.
        ping.reset();
        pong.reset();
        let child = start("event_pong", &fds, Some(AFTER));
        for _ in 0..AFTER {
            ping.set();
            pong.wait_timeout(watchdog())
                .unwrap_or_else(|e| panic!("{who}: the new party never answered: {e}"));
        }
        child.wait_success();
        assert!(!ping.is_set() && !pong.is_set(), "{who}");
    }
}

/// A robust mutex taken over from a dead holder, repaired and marked consistent, and its new
/// holder killed holding it in turn: each death is reported to the next locker, whatever
/// happened before (the mutex's recovery leaves no trace that could hide the next death).
#[test]
fn each_of_a_chain_of_holders_killed_after_a_takeover_is_an_owner_death() {
    const CHAIN: u64 = 4;
    let m = Shared::<Turns>::create([0, 0]).unwrap();
    for _ in 0..CHAIN {
        let mut child = spawn("take_over_and_park").fd("m", &m).start();
        child.wait_checkpoint("holding");
        assert!(child.kill_and_wait().killed());
    }
    let g = match m.lock_timeout(watchdog()) {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("the last holder's death went unreported"),
        Err(LockError::Failed(e)) => panic!("{e}"),
    };
    assert_eq!(
        *g,
        [CHAIN, CHAIN - 1],
        "every holder locked it, and every one after the first took it over"
    );
}
