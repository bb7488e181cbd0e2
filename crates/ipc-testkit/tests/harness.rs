//! The harness tested through itself: roles run in real child processes, checkpoints, kills,
//! exit statuses, inherited descriptors and the watchdog-free happy path.

use std::io::{Read, Write};

use ipc_testkit::{Ctx, roles, spawn};

fn echo_arg(ctx: &Ctx) {
    eprintln!("arg={}", ctx.arg());
}

fn fails(_: &Ctx) {
    panic!("this role fails on purpose");
}

fn parks(ctx: &Ctx) {
    ctx.checkpoint("started");
    ctx.park("parked");
}

fn writes_to_fd(ctx: &Ctx) {
    let mut f = std::fs::File::from(ctx.take_fd("out"));
    f.write_all(ctx.arg().as_bytes()).unwrap();
}

roles!(echo_arg, fails, parks, writes_to_fd);

#[test]
fn a_role_runs_in_a_child_with_its_argument() {
    let out = spawn("echo_arg").arg("x y").start().wait_success();
    assert!(out.stderr.contains("arg=x y"), "{}", out.stderr);
}

#[test]
fn a_panicking_role_is_a_failed_exit_with_its_message() {
    let out = spawn("fails").start().wait();
    assert!(!out.success());
    assert!(out.stderr.contains("fails on purpose"), "{}", out.stderr);
}

#[test]
fn a_parked_role_can_be_killed_at_its_checkpoint() {
    let mut child = spawn("parks").start();
    child.wait_checkpoint("parked");
    let out = child.kill_and_wait();
    assert!(out.killed(), "{:?}", out.status);
}

#[test]
fn an_inherited_fd_reaches_the_child() {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let child = spawn("writes_to_fd")
        .arg("through the pipe")
        .fd("out", &w)
        .start();
    drop(w);
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    child.wait_success();
    assert_eq!(got, "through the pipe");
}
