//! The condvar across real processes: waiters wake when notified, also after a waiter was
//! SIGKILLed in its wait, and after the notifier died holding the mutex (having notified or
//! not).

use std::time::Duration;

use ipc_sync::{Condvar, LockError, Mutex, Shared};
use ipc_testkit::{Child, Ctx, roles, spawn, watchdog};

type Pair = (Shared<Mutex<u32>>, Shared<Condvar>);

fn open(ctx: &Ctx) -> Pair {
    (
        Shared::open(ctx.take_fd("m")).expect("open mutex"),
        Shared::open(ctx.take_fd("cv")).expect("open condvar"),
    )
}

/// Waits for a token (`*m > 0`), takes it, exits.
fn token_waiter(ctx: &Ctx) {
    let (m, cv) = open(ctx);
    let g = m.lock().expect("lock");
    ctx.checkpoint("waiting");
    let mut g = cv.wait_while(g, |t| *t == 0).expect("wait");
    *g -= 1;
}

/// Waits for the flag (`*m == 1`); an owner death on the way is repaired and reported.
fn flag_waiter(ctx: &Ctx) {
    let (m, cv) = open(ctx);
    let g = m.lock().expect("lock");
    ctx.checkpoint("waiting");
    match cv.wait_while(g, |f| *f == 0) {
        Ok(g) => assert_eq!(*g, 1),
        Err(LockError::OwnerDied(mut g)) => {
            // The notifier died after setting the flag: the state is whole.
            assert_eq!(*g, 1);
            g.mark_consistent().expect("mark_consistent");
            eprintln!("saw owner death");
        }
        Err(LockError::Failed(e)) => panic!("wait: {e}"),
    }
}

fn notify_and_park(ctx: &Ctx) {
    let (m, cv) = open(ctx);
    let mut g = m.lock().expect("lock");
    *g = 1;
    cv.notify_all();
    ctx.park("notified");
}

fn set_and_park(ctx: &Ctx) {
    let (m, _cv) = open(ctx);
    let mut g = m.lock().expect("lock");
    *g = 1;
    ctx.park("set");
}

roles!(token_waiter, flag_waiter, notify_and_park, set_and_park);

fn pair() -> Pair {
    (
        Shared::create(0).expect("mutex"),
        Shared::create(()).expect("condvar"),
    )
}

fn start(role: &str, p: &Pair) -> Child {
    spawn(role).fd("m", &p.0).fd("cv", &p.1).start()
}

/// Starts a waiter and returns once it sleeps in the condvar: it reports "waiting" while it
/// holds the mutex, and unlocks only inside `wait`, after registering.
fn start_waiter(role: &str, p: &Pair) -> Child {
    let mut c = start(role, p);
    c.wait_checkpoint("waiting");
    drop(p.0.lock_timeout(watchdog()).expect("lock after waiter"));
    c
}

#[test]
fn notify_one_wakes_living_waiters_after_one_was_killed() {
    let p = pair();
    let mut waiters: Vec<Child> = (0..3).map(|_| start_waiter("token_waiter", &p)).collect();
    assert!(waiters[0].kill_and_wait().killed());
    for _ in 0..2 {
        *p.0.lock_timeout(watchdog()).unwrap() += 1;
        p.1.notify_one();
    }
    for w in waiters.drain(1..) {
        w.wait_success();
    }
    assert_eq!(
        *p.0.lock_timeout(watchdog()).unwrap(),
        0,
        "both tokens taken"
    );
}

#[test]
fn notify_all_wakes_every_living_waiter_after_one_was_killed() {
    let p = pair();
    let mut waiters: Vec<Child> = (0..3).map(|_| start_waiter("token_waiter", &p)).collect();
    waiters[1].kill_and_wait();
    *p.0.lock_timeout(watchdog()).unwrap() += 2;
    p.1.notify_all();
    waiters.remove(1);
    for w in waiters {
        w.wait_success();
    }
    assert_eq!(*p.0.lock_timeout(watchdog()).unwrap(), 0);
}

fn owner_deaths_seen(waiters: Vec<Child>) -> usize {
    waiters
        .into_iter()
        .map(|w| w.wait_success())
        .filter(|out| out.stderr.contains("saw owner death"))
        .count()
}

#[test]
fn waiters_wake_when_the_notifier_dies_holding_the_mutex() {
    let p = pair();
    let waiters: Vec<Child> = (0..2).map(|_| start_waiter("flag_waiter", &p)).collect();
    let mut notifier = start("notify_and_park", &p);
    notifier.wait_checkpoint("notified");
    notifier.kill_and_wait();
    // One waiter relocks first and repairs; the other then finds it consistent.
    assert_eq!(owner_deaths_seen(waiters), 1);
    assert_eq!(*p.0.lock_timeout(watchdog()).unwrap(), 1);
}

#[test]
fn waiters_learn_of_a_notifier_that_died_before_notifying() {
    let p = pair();
    let waiters: Vec<Child> = (0..2).map(|_| start_waiter("flag_waiter", &p)).collect();
    let mut notifier = start("set_and_park", &p);
    notifier.wait_checkpoint("set");
    notifier.kill_and_wait();
    // Nobody notifies: the sleepers re-check on their own (ipc_sync::futex::RECHECK), find
    // the mutex's owner dead, and return with it.
    assert_eq!(owner_deaths_seen(waiters), 1);
}

#[test]
fn a_timed_wait_times_out_with_the_lock() {
    let p = pair();
    let d = ipc_core::Deadline::after(Duration::from_millis(20));
    let (g, r) =
        p.1.wait_timeout_while(p.0.lock().unwrap(), d, |f| *f == 0)
            .unwrap();
    assert!(r.timed_out());
    assert_eq!(*g, 0);
}
