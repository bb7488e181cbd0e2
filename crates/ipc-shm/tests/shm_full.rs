//! A full `/dev/shm` is an error at creation, never a `SIGBUS` at first use.
//!
//! tmpfs lets `ftruncate` make a file larger than the mount's free space; the pages are only
//! found missing when touched, and the process touching them dies of `SIGBUS`. So every POSIX
//! segment this crate creates must reserve its pages, and one that does not fit must be
//! [`ErrorKind::LimitExceeded`], with its name removed again.
//!
//! The child first makes its own mount namespace (`unshare(CLONE_NEWNS)`) with a 1 MiB tmpfs
//! on `/dev/shm`: nothing else on the machine, and no test running beside this one, sees it,
//! and it vanishes with the child. Where unsharing is not permitted (no `CAP_SYS_ADMIN`), the
//! test says so and skips.

use ipc_shm::{ChannelOptions, Segment};
use ipc_testkit::shmfs::{SKIP, assert_no_room, names};
use ipc_testkit::{Ctx, roles, spawn};

/// The size of the child's own `/dev/shm`.
const ROOM: usize = 1 << 20;

fn small_dev_shm() -> bool {
    ipc_testkit::shmfs::small_dev_shm(ROOM)
}

/// Writes every byte of `seg`: a page tmpfs had no room for would kill this process here.
fn touch_all(seg: &Segment) {
    let page = vec![0xa5u8; 4096];
    let mut at = 0;
    while at < seg.len() {
        let n = page.len().min(seg.len() - at);
        seg.write_at(at, &page[..n]).unwrap();
        at += n;
    }
}

// ---- roles ----

fn segments_past_the_room(_: &Ctx) {
    if !small_dev_shm() {
        return;
    }
    // Larger than the whole mount.
    let e = Segment::create("/ipc-full-huge", 4 * ROOM).unwrap_err();
    assert_no_room(&e);
    assert_eq!(
        names(),
        Vec::<String>::new(),
        "a refused segment left its name"
    );

    // Fits: every byte can be written.
    let first = Segment::create("/ipc-full-first", ROOM * 3 / 4)
        .unwrap()
        .remove_on_drop();
    touch_all(&first);

    // Would fit the mount alone, but not beside the first. Without its pages reserved it
    // would be created, and writing it would die of SIGBUS.
    let e = Segment::create("/ipc-full-second", ROOM / 2).unwrap_err();
    assert_no_room(&e);
    assert_eq!(names(), vec!["ipc-full-first".to_owned()]);

    // A channel in a segment that does not fit: refused, and no name left behind.
    let e = ChannelOptions::new()
        .capacity(ROOM / 2)
        .create_posix("/ipc-full-channel")
        .unwrap_err();
    assert_no_room(&e);
    assert_eq!(names(), vec!["ipc-full-first".to_owned()]);
    drop(first);
    assert_eq!(names(), Vec::<String>::new());
    eprintln!("checked");
}

roles!(segments_past_the_room);

#[test]
fn a_segment_that_does_not_fit_dev_shm_is_refused_at_creation() {
    let out = spawn("segments_past_the_room").start().wait_success();
    if out.stderr.contains(SKIP) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}
