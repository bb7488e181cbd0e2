//! The kill timer a parent arms while it talks to a child: it kills a child that is still
//! running when it runs out, and does nothing once disarmed.

use std::time::Duration;

use ipc_testkit::{Ctx, roles, spawn};

fn parks(ctx: &Ctx) {
    ctx.park("parked");
}

fn exits(_: &Ctx) {}

roles!(parks, exits);

#[test]
fn a_child_still_running_when_the_timer_runs_out_is_killed() {
    let mut child = spawn("parks").start();
    child.wait_checkpoint("parked");
    let timer = child.kill_after(Duration::from_millis(50));
    // Bounded by the watchdog: a timer that did not fire fails the test here.
    let out = child.wait();
    assert!(out.killed(), "{:?}", out.status);
    assert!(timer.stop(), "the timer says it fired");
}

#[test]
fn a_disarmed_timer_leaves_the_child_alone() {
    let mut child = spawn("exits").start();
    let timer = child.kill_after(Duration::from_secs(3600));
    let out = child.wait();
    assert!(out.success(), "{:?} {}", out.status, out.stderr);
    assert!(!timer.stop(), "the timer did not fire");
}
