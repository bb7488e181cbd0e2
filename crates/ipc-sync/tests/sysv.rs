//! System V semaphore sets across real processes: `SEM_UNDO` gives back what a SIGKILLed
//! holder took (and without it nothing is given back), and removing a set wakes its waiters
//! with "disconnected".

use std::time::Duration;

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{Key, SemOp, SemaphoreSet};
use ipc_testkit::{Ctx, roles, spawn, watchdog};

fn set_from_arg(ctx: &Ctx) -> SemaphoreSet {
    SemaphoreSet::from_id(ctx.args()[0].parse().expect("id")).expect("from_id")
}

/// Takes two units of semaphore 0 with `SEM_UNDO`, then parks.
fn acquire_twice_and_park(ctx: &Ctx) {
    let set = set_from_arg(ctx);
    set.acquire(0, Deadline::Never).expect("acquire");
    set.op(&[SemOp::new(0, -1).undo()], Deadline::Never)
        .expect("acquire again");
    ctx.park("holding");
}

/// Takes one unit of semaphore 0 without `SEM_UNDO`, then parks.
fn take_without_undo_and_park(ctx: &Ctx) {
    let set = set_from_arg(ctx);
    set.op(&[SemOp::new(0, -1)], Deadline::Never).expect("take");
    ctx.park("holding");
}

/// Blocks on an empty semaphore until the set is removed.
fn wait_for_removal(ctx: &Ctx) {
    let set = set_from_arg(ctx);
    let e = set.acquire(0, Deadline::Never).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

roles!(
    acquire_twice_and_park,
    take_without_undo_and_park,
    wait_for_removal
);

#[test]
fn sem_undo_gives_back_what_a_killed_holder_took() {
    let set = SemaphoreSet::create(Key::Private, &[3, 7])
        .unwrap()
        .remove_on_drop();
    let mut child = spawn("acquire_twice_and_park")
        .arg(set.id().to_string())
        .start();
    child.wait_checkpoint("holding");
    assert_eq!(set.values().unwrap(), vec![1, 7]);
    assert!(child.kill_and_wait().killed());
    // The kernel applied the dead process's adjustments at its exit.
    assert_eq!(set.values().unwrap(), vec![3, 7]);
}

#[test]
fn without_sem_undo_a_killed_holder_keeps_its_unit() {
    let set = SemaphoreSet::create(Key::Private, &[1])
        .unwrap()
        .remove_on_drop();
    let mut child = spawn("take_without_undo_and_park")
        .arg(set.id().to_string())
        .start();
    child.wait_checkpoint("holding");
    child.kill_and_wait();
    assert_eq!(set.value(0).unwrap(), 0);
    let e = set
        .acquire(0, Deadline::after(Duration::from_millis(5)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

#[test]
fn removing_the_set_wakes_its_waiters_as_disconnected() {
    let set = SemaphoreSet::create(Key::Private, &[0])
        .unwrap()
        .remove_on_drop();
    let child = spawn("wait_for_removal").arg(set.id().to_string()).start();
    // Remove only once the child sleeps in semop (GETNCNT counts it), so that the test is
    // about a blocked waiter, not one that finds the set gone.
    let deadline = Deadline::after(watchdog());
    while set.waiting(0).unwrap() == 0 {
        assert!(!deadline.has_passed(), "the child never blocked");
        std::thread::sleep(Duration::from_millis(1));
    }
    set.remove().unwrap();
    child.wait_success();
}
