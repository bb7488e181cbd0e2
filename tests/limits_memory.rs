//! Mapping and file-size limits: a segment of every kind (POSIX, memfd, System V) and a page buffer that the
//! process has no room to map is `LimitExceeded` naming what stopped it, `RLIMIT_AS` (its
//! address space) or `/proc/sys/vm/max_map_count` (its count of mappings), and leaves no name
//! or id behind. Before, each was `LimitExceeded` with no knob at all (a bare `ENOMEM`), which
//! says neither what to raise nor that the process, not the machine, is out of room. And a
//! segment larger than the process may make a file (`RLIMIT_FSIZE`) is `LimitExceeded` naming
//! it, where the kernel's `SIGXFSZ` killed the process.
//!
//! Each runs in a child of its own: the limits it hits are per process.

use ipc_core::sysv::{Key, SysvKind, in_use};
use ipc_core::{Error, ErrorKind, Readiness};
use ipc_pipe::PageBuf;
use ipc_shm::Segment;
use ipc_testkit::limits::{run_checked, set_soft_limit, vm_size};
use ipc_testkit::{Ctx, roles};
use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
use rustix::process::Resource;

/// A segment larger than the room a test leaves.
const BIG: usize = 64 << 20;

/// Checks that `e` is `LimitExceeded` naming a knob that contains `knob`.
fn names(e: &Error, knob: &str, what: &str) {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{what}: {e}");
    let l = e
        .limit_info()
        .unwrap_or_else(|| panic!("{what}: no knob named: {e}"));
    assert!(l.knob.contains(knob), "{what}: {e}");
}

/// Makes a segment of every kind and a page buffer of `len` bytes, each of which must fail
/// naming `knob`, and leave no POSIX name or System V segment behind.
fn every_mapping_fails(len: usize, knob: &str) {
    let sysv_before = in_use(SysvKind::SharedMemory);
    let e = Segment::create("/ipc-limits-memory", len).unwrap_err();
    names(&e, knob, "POSIX segment");
    assert_eq!(
        Segment::open("/ipc-limits-memory").unwrap_err().kind(),
        ErrorKind::NotFound,
        "a segment that could not be mapped left its name"
    );
    names(
        &Segment::memfd("ipc-limits-memory", len).unwrap_err(),
        knob,
        "memfd segment",
    );
    names(
        &Segment::sysv_create(Key::PRIVATE, len).unwrap_err(),
        knob,
        "System V segment",
    );
    assert_eq!(
        in_use(SysvKind::SharedMemory),
        sysv_before,
        "a System V segment that could not be attached was left"
    );
    names(&PageBuf::new(len).unwrap_err(), knob, "page buffer");
}

// ---- roles ----

/// `RLIMIT_AS` set 16 MiB above what the process uses: a 64 MiB mapping of every kind names it;
/// 1 MiB still fits.
fn tight_address_space(_: &Ctx) {
    set_soft_limit(Resource::As, vm_size() + (16 << 20));
    every_mapping_fails(BIG, "RLIMIT_AS");
    let fits = Segment::memfd("ipc-limits-memory", 1 << 20).unwrap();
    assert_eq!(fits.len(), 1 << 20);
    eprintln!("checked");
}

/// Every mapping the process may have used up (one page each, protections alternating so no
/// two merge): a mapping of every kind names `max_map_count`.
fn mappings_used_up(_: &Ctx) {
    let page = rustix::param::page_size();
    let mut n = 0usize;
    loop {
        let prot = if n % 2 == 0 {
            ProtFlags::READ
        } else {
            ProtFlags::READ | ProtFlags::WRITE
        };
        // SAFETY: a new private anonymous mapping at an address the kernel picks overlaps no
        // memory in use; it is never touched and lives until the process exits.
        match unsafe { mmap_anonymous(std::ptr::null_mut(), page, prot, MapFlags::PRIVATE) } {
            Ok(_) => n += 1,
            Err(rustix::io::Errno::NOMEM) => break,
            Err(e) => panic!("mmap {n}: {e}"),
        }
    }
    every_mapping_fails(1 << 20, "max_map_count");
    eprintln!("checked after {n} mappings");
}

/// Every mapping the process may have used up, as in [`mappings_used_up`]: a named semaphore
/// created or opened (each maps its file), and a System V semaphore set created or read whole
/// (each maps a guarded buffer for `semctl`), name `max_map_count` and leave no name or set
/// behind; so does a thread the library cannot start for want of a mapping for its stack
/// (glibc's `pthread_create` says `EAGAIN` then, as for a process limit). Fails on the old
/// code: each semaphore was `LimitExceeded` naming nothing (a bare `ENOMEM`), and the thread
/// named `threads-max` (or `RLIMIT_NPROC`), which nothing had reached.
fn more_with_mappings_used_up(_: &Ctx) {
    let (_tx, mut rx) = ipc_shm::ChannelOptions::new()
        .capacity(1 << 12)
        .pair()
        .unwrap();
    let name = ipc_testkit::unique_posix_name("limits-sem");
    let kept = ipc_sync::NamedSemaphore::create(name.as_str(), 1)
        .unwrap()
        .remove_on_drop();
    let set = ipc_sync::SemaphoreSet::create(Key::PRIVATE, &[1, 2, 3])
        .unwrap()
        .remove_on_drop();
    let sysv_before = in_use(SysvKind::SemaphoreSet);
    let fresh = ipc_testkit::unique_posix_name("limits-sem");
    let page = rustix::param::page_size();
    let mut n = 0usize;
    loop {
        let prot = if n % 2 == 0 {
            ProtFlags::READ
        } else {
            ProtFlags::READ | ProtFlags::WRITE
        };
        // SAFETY: a new private anonymous mapping at an address the kernel picks overlaps no
        // memory in use; it is never touched and lives until the process exits.
        match unsafe { mmap_anonymous(std::ptr::null_mut(), page, prot, MapFlags::PRIVATE) } {
            Ok(_) => n += 1,
            Err(rustix::io::Errno::NOMEM) => break,
            Err(e) => panic!("mmap {n}: {e}"),
        }
    }
    names(
        &rx.readiness_fd().unwrap_err(),
        "max_map_count",
        "doorbell thread",
    );
    names(
        &ipc_sync::NamedSemaphore::create(fresh.as_str(), 1).unwrap_err(),
        "max_map_count",
        "named semaphore created",
    );
    names(
        &ipc_sync::NamedSemaphore::open(name.as_str()).unwrap_err(),
        "max_map_count",
        "named semaphore opened",
    );
    names(
        &ipc_sync::SemaphoreSet::create(Key::PRIVATE, &[1, 2, 3]).unwrap_err(),
        "max_map_count",
        "System V semaphore set created",
    );
    names(
        &set.values().unwrap_err(),
        "max_map_count",
        "System V semaphore set read",
    );
    assert_eq!(
        in_use(SysvKind::SemaphoreSet),
        sysv_before,
        "a System V semaphore set that could not be set up was left"
    );
    assert!(
        !std::path::Path::new(&format!("/dev/shm/sem.{}", &fresh[1..])).exists(),
        "a named semaphore that could not be mapped left its name"
    );
    drop((kept, set));
    eprintln!("checked after {n} mappings");
}

/// `RLIMIT_FSIZE` (`ulimit -f`) at 1 MiB: a segment of 4 MiB (POSIX, memfd, a pub-sub
/// segment) is `LimitExceeded` naming it, with no name left, and 512 KiB fits; at 0, an
/// ipc-sync object in a memfd names it too. Before, the kernel answered the `ftruncate` with
/// `SIGXFSZ`, which killed the process.
fn small_file_size(_: &Ctx) {
    set_soft_limit(Resource::Fsize, 1 << 20);
    let e = Segment::create("/ipc-limits-fsize", 4 << 20).unwrap_err();
    names(&e, "RLIMIT_FSIZE", "POSIX segment");
    assert_eq!(
        Segment::open("/ipc-limits-fsize").unwrap_err().kind(),
        ErrorKind::NotFound,
        "a refused segment left its name"
    );
    names(
        &Segment::memfd("ipc-limits-fsize", 4 << 20).unwrap_err(),
        "RLIMIT_FSIZE",
        "memfd segment",
    );
    let opts = ipc_shm::PubSubOptions::new()
        .slots(64)
        .max_message(64 << 10);
    assert!(opts.segment_size() > 1 << 20);
    names(
        &opts.create_posix("/ipc-limits-fsize").unwrap_err(),
        "RLIMIT_FSIZE",
        "pub-sub segment",
    );
    let fits = Segment::memfd("ipc-limits-fsize", 512 << 10).unwrap();
    assert_eq!(fits.len(), 512 << 10);
    set_soft_limit(Resource::Fsize, 0);
    names(
        &ipc_sync::Shared::<ipc_sync::Semaphore>::create(1).unwrap_err(),
        "RLIMIT_FSIZE",
        "ipc-sync semaphore",
    );
    eprintln!("checked");
}

roles!(
    tight_address_space,
    mappings_used_up,
    more_with_mappings_used_up,
    small_file_size
);

#[test]
fn semaphores_and_threads_past_the_mapping_count_name_max_map_count() {
    run_checked("more_with_mappings_used_up", &[]);
}

#[test]
fn a_segment_past_the_file_size_limit_names_rlimit_fsize_instead_of_dying() {
    run_checked("small_file_size", &[]);
}

#[test]
fn a_mapping_past_the_address_space_limit_names_rlimit_as() {
    run_checked("tight_address_space", &[]);
}

#[test]
fn a_mapping_past_the_mapping_count_names_max_map_count() {
    run_checked("mappings_used_up", &[]);
}
