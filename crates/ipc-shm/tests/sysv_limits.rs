//! System V segment limits and ownership, in a private IPC namespace: each of `shmmni`,
//! `shmmax` and `shmall` is lowered and exhausted, and the error must name that knob and its
//! value; `sysv_create_with_mode` is exact; `sysv_attach` refuses another user's segment
//! unless `OpenOptions::owner` accepts that user; an id that changes hands between
//! `sysv_attach`'s look and its `shmat` (`shm_next_id` forces the reuse) is mapped at the size
//! of the segment attached; a dropped `remove_on_drop` segment never removes a new segment at
//! its id.
//!
//! The knobs are per IPC namespace, so the child that lowers them first makes its own
//! (`unshare(CLONE_NEWIPC)`): nothing else on the machine, and no test running beside this
//! one, sees the lowered values, and every segment made there vanishes with the namespace.
//! Where unsharing is not permitted (no `CAP_SYS_ADMIN`), the test says so and skips.
//!
//! Also here: the longest POSIX shared memory name this crate can create is the one
//! `PosixKind::SharedMemory` states.

use ipc_core::ErrorKind;
use ipc_shm::{Key, OpenOptions, Owner, Removable, RemoveGuard, Segment};

/// Removes System V segment `id` when dropped.
fn guard(id: i32) -> RemoveGuard {
    RemoveGuard::new(Removable::Sysv(ipc_core::sysv::SysvKind::SharedMemory, id))
}
use ipc_testkit::{Ctx, roles, spawn};

/// The line a child prints when it cannot make a private IPC namespace.
const SKIP: &str = "skipped: unshare(CLONE_NEWIPC) is not permitted";

/// Moves the calling thread (the one that runs the role) into a new IPC namespace; false if
/// that is not permitted.
fn private_ipc_namespace() -> bool {
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    let r = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
    if r != 0 {
        eprintln!("{SKIP}: {}", std::io::Error::last_os_error());
        return false;
    }
    true
}

/// Writes `value` to the knob file. Inside the private namespace, so nothing to restore.
fn set_knob(path: &str, value: u64) {
    std::fs::write(path, value.to_string()).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn assert_limit(e: &ipc_core::Error, knob: &str, value: u64) {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    let l = e.limit_info().expect("a limit detail");
    assert_eq!((&*l.knob, l.value), (knob, Some(value)), "{e}");
    assert!(e.to_string().contains(&format!("{knob} is {value}")), "{e}");
}

// ---- roles ----

fn shm_limits(_: &Ctx) {
    if !private_ipc_namespace() {
        return;
    }
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // shmmni: two segments may exist; the third is out of ids.
    set_knob("/proc/sys/kernel/shmmni", 2);
    let a = Segment::sysv_create(Key::PRIVATE, page).unwrap();
    let _ga = guard(a.sysv_id().unwrap());
    let b = Segment::sysv_create(Key::PRIVATE, page).unwrap();
    let gb = guard(b.sysv_id().unwrap());
    let e = Segment::sysv_create(Key::PRIVATE, page).unwrap_err();
    assert_limit(&e, "/proc/sys/kernel/shmmni", 2);
    drop((b, gb));
    set_knob("/proc/sys/kernel/shmmni", 4096);

    // shmmax: the largest segment.
    set_knob("/proc/sys/kernel/shmmax", 8192);
    let e = Segment::sysv_create(Key::PRIVATE, 8193).unwrap_err();
    assert_limit(&e, "/proc/sys/kernel/shmmax", 8192);
    let ok = Segment::sysv_create(Key::PRIVATE, 8192).unwrap();
    let _gok = guard(ok.sysv_id().unwrap());
    set_knob("/proc/sys/kernel/shmmax", 1 << 30);

    // shmall: pages of all segments together. Three exist (1 + 2 pages): allow 4 pages.
    set_knob("/proc/sys/kernel/shmall", 4);
    let e = Segment::sysv_create(Key::PRIVATE, 2 * page).unwrap_err();
    assert_limit(&e, "/proc/sys/kernel/shmall", 4);
    let one = Segment::sysv_create(Key::PRIVATE, page).unwrap();
    let _gone = guard(one.sysv_id().unwrap());
    eprintln!("checked");
}

fn shm_mode_and_owner(_: &Ctx) {
    if !private_ipc_namespace() {
        return;
    }
    let e = Segment::sysv_create_with_mode(Key::PRIVATE, 4096, 0o4600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // SAFETY: umask only changes this (child) process's creation mask; System V ignores it.
    unsafe { libc::umask(0o077) };
    let seg = Segment::sysv_create_with_mode(Key::PRIVATE, 4096, 0o640).unwrap();
    let id = seg.sysv_id().unwrap();
    let _g = guard(id);
    let ds = shm_stat(id);
    assert_eq!(ds.shm_perm.mode & 0o777, 0o640);

    // Give the segment to another user (as root may), then attach it.
    let me = rustix::process::geteuid().as_raw();
    let other = if me == 65534 { 65533 } else { 65534 };
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped the foreign-owner half: not root, cannot give a segment away");
        eprintln!("checked");
        return;
    }
    let mut ds = ds;
    ds.shm_perm.uid = other;
    // SAFETY: `ds` is a valid shmid_ds filled by IPC_STAT; IPC_SET only reads it.
    assert_eq!(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) }, 0);
    let e = Segment::sysv_attach(id, true, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        e.to_string().contains(&format!("Owner::Uid({other})")),
        "{e}"
    );
    let seg = OpenOptions::new()
        .read_only(true)
        .owner(Owner::Uid(other))
        .sysv_attach(id)
        .unwrap();
    assert_eq!(seg.len(), 4096);
    let seg = OpenOptions::new()
        .read_only(true)
        .owner(Owner::Any)
        .sysv_attach(id)
        .unwrap();
    assert_eq!(seg.len(), 4096);
    eprintln!("checked");
}

fn shm_stat(id: i32) -> libc::shmid_ds {
    // SAFETY: an all-zero shmid_ds is a valid value of this plain C struct.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a writable shmid_ds that outlives the call.
    assert_eq!(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) }, 0);
    ds
}

/// The id the swapper below makes its segments at (`shm_next_id`): index 77, sequence 0.
const SWAPPED_ID: i32 = 77;

/// In a private IPC namespace: one thread removes the segment at [`SWAPPED_ID`] and makes
/// another at the same id (`/proc/sys/kernel/shm_next_id`), alternately of 64 pages and of
/// one, as fast as it can, while this thread attaches the id over and over. Every segment
/// attached must be mapped at its real size: the kernel's size for the attached segment
/// (`IPC_STAT` while attached, when the id cannot change hands) is the segment's `len`, and
/// its last byte reads.
fn sysv_id_swapped_under_attach(_: &Ctx) {
    if !private_ipc_namespace() {
        return;
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let next_id = std::fs::OpenOptions::new()
                .write(true)
                .open("/proc/sys/kernel/shm_next_id")
                .unwrap();
            let value = SWAPPED_ID.to_string();
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) {
                next_id.write_at(value.as_bytes(), 0).unwrap();
                let size = if made % 2 == 0 { 64 * page } else { page };
                // SAFETY: shmget takes plain integers and touches no memory of ours.
                let id = unsafe { libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | 0o600) };
                if id < 0 {
                    continue;
                }
                // Another id when that one is still held (attached, removed): just removed.
                made += u64::from(id == SWAPPED_ID);
                // SAFETY: IPC_RMID takes no buffer.
                let r = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            }
            made
        })
    };
    let until = std::time::Instant::now() + std::time::Duration::from_millis(600);
    let mut attached = 0u64;
    while std::time::Instant::now() < until {
        let Ok(seg) = OpenOptions::new().read_only(true).sysv_attach(SWAPPED_ID) else {
            continue;
        };
        attached += 1;
        let real = shm_stat(SWAPPED_ID).shm_segsz;
        assert_eq!(
            seg.len(),
            real,
            "mapped as {} bytes, the segment has {real}",
            seg.len()
        );
        let mut last = [0u8];
        seg.read_at(seg.len() - 1, &mut last).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let made = swapper.join().unwrap();
    eprintln!("checked: {attached} attaches, {made} segments made");
}

/// In a private IPC namespace: this thread makes a segment at [`SWAPPED_ID`] with
/// `remove_on_drop`, has it removed "by someone else" (`IPC_RMID` while still attached, as
/// another process may), and drops it, over and over; another thread keeps making bystander
/// segments at the same id and removing them itself. A bystander must never be removed by the
/// dropped segment: its own `IPC_RMID` must always find it.
fn sysv_remove_on_drop_spares_the_next_segment_at_its_id(_: &Ctx) {
    if !private_ipc_namespace() {
        return;
    }
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let next_id = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/sys/kernel/shm_next_id")
            .unwrap()
    };
    let value = SWAPPED_ID.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let bystanders = {
        let (stop, value, next_id) = (stop.clone(), value.clone(), next_id());
        std::thread::spawn(move || {
            let (mut made, mut stolen) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                next_id.write_at(value.as_bytes(), 0).unwrap();
                // SAFETY: shmget takes plain integers and touches no memory of ours.
                let id = unsafe { libc::shmget(libc::IPC_PRIVATE, page, libc::IPC_CREAT | 0o600) };
                if id < 0 {
                    continue;
                }
                // SAFETY: IPC_RMID takes no buffer.
                let r = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                if id == SWAPPED_ID {
                    made += 1;
                    stolen += u64::from(r != 0);
                }
            }
            (made, stolen)
        })
    };
    let until = std::time::Instant::now() + std::time::Duration::from_millis(600);
    let next = next_id();
    let mut dropped = 0u64;
    while std::time::Instant::now() < until {
        next.write_at(value.as_bytes(), 0).unwrap();
        let Ok(seg) = Segment::sysv_create(Key::PRIVATE, page) else {
            continue;
        };
        let seg = seg.remove_on_drop();
        let id = seg.sysv_id().unwrap();
        if id == SWAPPED_ID {
            // Removed by "someone else" while still attached here.
            // SAFETY: IPC_RMID takes no buffer.
            let r = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            dropped += 1;
        }
        drop(seg);
    }
    stop.store(true, Ordering::Relaxed);
    let (made, stolen) = bystanders.join().unwrap();
    assert_eq!(
        stolen, 0,
        "{stolen} of {made} bystanders removed by {dropped} dropped segments"
    );
    eprintln!("checked: {dropped} dropped, {made} bystanders");
}

roles!(
    shm_limits,
    shm_mode_and_owner,
    sysv_id_swapped_under_attach,
    sysv_remove_on_drop_spares_the_next_segment_at_its_id
);

fn run(role: &str) {
    let out = spawn(role).start().wait_success();
    if out.stderr.contains(SKIP) {
        eprintln!("{role}: {}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{role}: {}", out.stderr);
}

#[test]
fn each_shm_limit_names_its_knob_and_value() {
    run("shm_limits");
}

#[test]
fn sysv_create_mode_is_exact_and_attach_refuses_other_users() {
    run("shm_mode_and_owner");
}

/// The id `sysv_attach` checked with `IPC_STAT` can change hands before its `shmat`: a
/// segment removed and another made at the same id (here forced with `shm_next_id`, in a
/// private IPC namespace; elsewhere a matter of id reuse). The segment must be mapped at
/// the size of the one attached, never at the size the first look saw.
#[test]
fn a_sysv_id_that_changes_hands_during_attach_is_mapped_at_its_real_size() {
    run("sysv_id_swapped_under_attach");
}

/// `remove_on_drop` on a System V segment that someone else removed already: dropping it must
/// not remove a new segment made at the same id meanwhile (as a POSIX segment's drop leaves a
/// new object under its name alone).
#[test]
fn a_dropped_sysv_segment_never_removes_the_next_segment_at_its_id() {
    run("sysv_remove_on_drop_spares_the_next_segment_at_its_id");
}

#[test]
fn the_longest_shm_name_is_the_one_posix_kind_states() {
    use ipc_core::{PosixKind, PosixName};
    let max = PosixKind::SharedMemory.max_len();
    let head = format!("/ipctest-shmlen-{}-", std::process::id());
    let name = |len: usize| format!("{head}{}", "n".repeat(len + 1 - head.len()));
    let seg = Segment::create(name(max).as_str(), 4096).unwrap();
    let _unlink = RemoveGuard::new(Removable::Shm(name(max).as_str().parse().unwrap()));
    drop(seg);
    let e = Segment::create(name(max + 1).as_str(), 4096).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    let e = PosixName::for_kind(name(max + 1), PosixKind::SharedMemory).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
}
