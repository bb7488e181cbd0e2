//! System V semaphore limits, in a private IPC namespace: `SEMMNI`, `SEMMSL` and `SEMOPM`
//! (fields of `/proc/sys/kernel/sem`) are lowered and exhausted, and `SEMVMX` is reached; each
//! error must name its knob and the value.
//!
//! The knobs are per IPC namespace, so the child that lowers them first makes its own
//! (`unshare(CLONE_NEWIPC)`): no other test and nothing else on the machine sees the lowered
//! values, and every set made there vanishes with the namespace. Where unsharing is not
//! permitted (no `CAP_SYS_ADMIN`), the test says so and skips.

use ipc_core::{Deadline, ErrorKind};
use ipc_sync::{Key, SEMVMX, SemOp, SemaphoreSet};
use ipc_testkit::{Ctx, roles, spawn};

const SKIP: &str = "skipped: unshare(CLONE_NEWIPC) is not permitted";
const SEM: &str = "/proc/sys/kernel/sem";

fn private_ipc_namespace() -> bool {
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
        eprintln!("{SKIP}: {}", std::io::Error::last_os_error());
        return false;
    }
    true
}

/// Sets `SEMMSL SEMMNS SEMOPM SEMMNI` of this (private) namespace.
fn set_sem(msl: u64, mns: u64, opm: u64, mni: u64) {
    std::fs::write(SEM, format!("{msl} {mns} {opm} {mni}")).expect("write /proc/sys/kernel/sem");
}

fn assert_limit(e: &ipc_core::Error, knob: &str, value: u64) {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let l = e.limit_info().expect("a limit detail");
    assert_eq!((&*l.knob, l.value), (knob, Some(value)), "{e}");
    assert!(e.to_string().contains(&format!("{knob} is {value}")), "{e}");
}

fn sem_limits(_: &Ctx) {
    if !private_ipc_namespace() {
        return;
    }
    // SEMMNI: two sets may exist.
    set_sem(32000, 1_024_000_000, 500, 2);
    let _a = SemaphoreSet::create(Key::PRIVATE, &[1])
        .unwrap()
        .remove_on_drop();
    let _b = SemaphoreSet::create(Key::PRIVATE, &[1])
        .unwrap()
        .remove_on_drop();
    let e = SemaphoreSet::create(Key::PRIVATE, &[1]).unwrap_err();
    assert_limit(&e, "/proc/sys/kernel/sem (SEMMNI, field 4)", 2);

    // SEMMSL: at most 3 semaphores in a set.
    set_sem(3, 1_024_000_000, 500, 32000);
    let e = SemaphoreSet::create(Key::PRIVATE, &[0, 0, 0, 0]).unwrap_err();
    assert_limit(&e, "/proc/sys/kernel/sem (SEMMSL, field 1)", 3);
    let set = SemaphoreSet::create(Key::PRIVATE, &[0, 0, 0])
        .unwrap()
        .remove_on_drop();

    // SEMOPM: at most 2 operations in one semop.
    set_sem(3, 1_024_000_000, 2, 32000);
    let ops = [SemOp::new(0, 1), SemOp::new(1, 1), SemOp::new(2, 1)];
    let e = set.op(&ops, Deadline::Now).unwrap_err();
    assert_limit(&e, "/proc/sys/kernel/sem (SEMOPM, field 3)", 2);
    assert_eq!(set.values().unwrap(), vec![0, 0, 0], "nothing was done");

    // SEMVMX: a fixed ceiling, at create, at SETVAL and at semop.
    let e = SemaphoreSet::create(Key::PRIVATE, &[SEMVMX + 1]).unwrap_err();
    assert_limit(&e, "SEMVMX", 32767);
    let e = set.set_value(0, SEMVMX + 1).unwrap_err();
    assert_limit(&e, "SEMVMX", 32767);
    set.set_value(0, SEMVMX).unwrap();
    let e = set.op(&[SemOp::new(0, 1)], Deadline::Now).unwrap_err();
    assert_limit(&e, "SEMVMX", 32767);
    eprintln!("checked");
}

roles!(sem_limits);

#[test]
fn each_semaphore_limit_names_its_knob_and_value() {
    let out = spawn("sem_limits").start().wait_success();
    if out.stderr.contains(SKIP) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}
