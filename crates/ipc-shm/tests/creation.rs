//! A named segment appears whole or not at all: its size, mode and header are laid out before
//! it gets its name, so no process opens a half-made one, and a creator killed midway leaves
//! nothing behind (before, its name stayed with no header, and every later `create_posix`
//! of that name was `AlreadyExists` until someone removed it by hand).

use ipc_core::{ErrorKind, MessageReceiver, MessageSender, PosixName};
use ipc_shm::testing::create_then;
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
use ipc_testkit::{Ctx, roles, spawn, unique_name};

fn name(tag: &str) -> PosixName {
    PosixName::new(format!("/{}", unique_name(tag))).unwrap()
}

/// Whether anything is at `name` in `/dev/shm`.
fn exists(name: &PosixName) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name.file_name())
        .symlink_metadata()
        .is_ok()
}

/// Child: creates the segment named by its argument and is stopped inside `init`, to be killed.
fn create_and_stop(ctx: &Ctx) {
    let name = PosixName::new(ctx.args()[0]).unwrap();
    let _ = create_then(&name, 1 << 16, |seg| {
        seg.write_at(0, b"half made").unwrap();
        ctx.park("initialising")
    });
}

roles!(create_and_stop);

#[test]
fn a_segment_being_made_has_no_name_yet() {
    let name = name("creation-unseen");
    let seg = create_then(&name, 1 << 16, |seg| {
        assert!(!exists(&name), "the name appeared before init ended");
        let e = Segment::open(&name).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        seg.write_at(0, b"laid out").unwrap();
        Ok(())
    })
    .unwrap()
    .remove_on_drop();
    assert!(exists(&name));
    let mut got = [0u8; 8];
    Segment::open(&name).unwrap().read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"laid out");
    drop(seg);
    assert!(!exists(&name));
}

#[test]
fn a_failed_init_leaves_no_name() {
    let name = name("creation-failed");
    let e = create_then(&name, 1 << 16, |_| {
        Err(ipc_core::Error::corrupted("init refused"))
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(!exists(&name));
}

#[test]
fn a_creator_killed_midway_leaves_nothing_and_the_name_can_be_made_again() {
    let name = name("creation-killed");
    let mut child = spawn("create_and_stop").arg(name.as_str()).start();
    child.wait_checkpoint("initialising");
    assert!(child.kill_and_wait().killed());
    assert!(!exists(&name), "a killed creator left its name");

    // The name is free: a channel made there works.
    let seg = std::sync::Arc::new(
        ChannelOptions::new()
            .capacity(1 << 12)
            .create_posix(&name)
            .unwrap()
            .remove_on_drop(),
    );
    let mut tx = Sender::open(seg.clone()).unwrap();
    let mut rx = Receiver::open(seg).unwrap();
    tx.send(b"made again").unwrap();
    let mut buf = [0u8; 16];
    let n = rx.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"made again");
}

#[test]
fn a_name_taken_by_anything_is_refused_and_kept() {
    let name = name("creation-taken");
    let path = std::path::Path::new("/dev/shm").join(name.file_name());
    // A symbolic link planted at the name: refused, and the link is not followed or removed.
    std::os::unix::fs::symlink("/nonexistent-ipc-target", &path).unwrap();
    let e = Segment::create(&name, 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(path.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(!std::path::Path::new("/nonexistent-ipc-target").exists());
    std::fs::remove_file(&path).unwrap();

    // Another segment made there: refused, its contents untouched.
    let first = Segment::create(&name, 4096).unwrap().remove_on_drop();
    first.write_at(0, b"first").unwrap();
    let e = ChannelOptions::new().create_posix(&name).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // Says how to find out whether a crashed run left it, and how to remove it.
    let text = e.to_string();
    assert!(
        text.contains("ipc inspect") && text.contains("ipc clean --stale"),
        "{text}"
    );
    let mut got = [0u8; 5];
    Segment::open(&name).unwrap().read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"first");
}

#[test]
fn a_name_taken_while_the_segment_is_made_is_refused_at_the_link() {
    let name = name("creation-raced");
    let mut other = None;
    let e = create_then(&name, 1 << 16, |_| {
        // Another process wins the name between the first look and the link.
        let seg = Segment::create(&name, 4096).unwrap().remove_on_drop();
        seg.write_at(0, b"winner").unwrap();
        other = Some(seg);
        Ok(())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let other = other.unwrap();
    let mut got = [0u8; 6];
    Segment::open(&name).unwrap().read_at(0, &mut got).unwrap();
    assert_eq!(&got, b"winner");
    assert_eq!(Segment::open(&name).unwrap().len(), 4096);
    drop(other);
    assert!(!exists(&name));
}
