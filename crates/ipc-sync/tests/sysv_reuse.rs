//! A System V semaphore set removed under a handle, and its id given to a larger set by
//! another process (ids are plain numbers: the kernel hands the same one out again once its
//! sequence wraps, or at once through `/proc/sys/kernel/sem_next_id`). The old handle's
//! `values()` must not let the kernel copy the new set's values past the buffer it sized for
//! the old one: it is refused as `Disconnected`.
//!
//! Runs in a child that makes its own IPC namespace (`unshare(CLONE_NEWIPC)`), where it may
//! set `sem_next_id`; where that is not permitted, the test says so and skips.

use ipc_core::ErrorKind;
use ipc_sync::{Key, SemaphoreSet};
use ipc_testkit::{Ctx, roles, spawn};

const SKIP: &str = "skipped";

/// Makes a private IPC namespace and points its next semaphore set id at `id`; false (having
/// said why) where that is not permitted.
fn next_set_id_in_private_namespace(id: Option<i32>) -> bool {
    if let Some(id) = id {
        return match std::fs::write("/proc/sys/kernel/sem_next_id", id.to_string()) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{SKIP}: /proc/sys/kernel/sem_next_id: {e}");
                false
            }
        };
    }
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
        eprintln!(
            "{SKIP}: unshare(CLONE_NEWIPC): {}",
            std::io::Error::last_os_error()
        );
        return false;
    }
    true
}

fn id_reused_by_a_larger_set(_: &Ctx) {
    if !next_set_id_in_private_namespace(None) {
        return;
    }
    let victim = SemaphoreSet::create(Key::PRIVATE, &[7]).unwrap();
    assert_eq!(victim.values().unwrap(), vec![7]);
    let id = victim.id();
    SemaphoreSet::from_id(id).unwrap().remove().unwrap();
    if !next_set_id_in_private_namespace(Some(id)) {
        return;
    }
    let squatter = SemaphoreSet::create(Key::PRIVATE, &[0x7eee; 512])
        .unwrap()
        .remove_on_drop();
    assert_eq!(squatter.id(), id, "sem_next_id was not used");
    // Before: GETALL wrote 512 values into a buffer of 1.
    let e = victim.values().expect_err("values of another set");
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(e.to_string().contains("512"), "{e}");
    eprintln!("checked: {e}");
}

roles!(id_reused_by_a_larger_set);

#[test]
fn values_of_a_set_whose_id_was_reused_are_refused_not_copied_past_the_buffer() {
    let out = spawn("id_reused_by_a_larger_set").start().wait_success();
    if out.stderr.contains(SKIP) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}
