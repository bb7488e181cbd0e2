//! POSIX named semaphores across real processes: found by name, interoperable with programs
//! that call `sem_open` directly, names validated and created exclusively, and the unlink
//! guard that leaves nothing in `/dev/shm`.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use ipc_core::ErrorKind;
use ipc_sync::{NamedSemaphore, SEM_VALUE_MAX};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name, watchdog};

fn dev_shm_file(name: &NamedSemaphore) -> PathBuf {
    PathBuf::from(format!("/dev/shm/sem.{}", name.name().file_name()))
}

/// Opens `args[0]` with this crate and posts `args[1]` times.
fn post_by_name(ctx: &Ctx) {
    let args = ctx.args();
    let sem = NamedSemaphore::open(args[0]).expect("open");
    for _ in 0..args[1].parse::<u32>().expect("count") {
        sem.post().expect("post");
    }
}

/// What a C program does: `sem_open(name, 0)`, `sem_post`, `sem_close`; or, with a second
/// argument, creates the semaphore with that value.
fn plain_c_program(ctx: &Ctx) {
    let args = ctx.args();
    let name = CString::new(args[0]).unwrap();
    // SAFETY: `name` is NUL-terminated; with O_CREAT the variadic mode and value follow.
    let sem = unsafe {
        match args.get(1) {
            None => libc::sem_open(name.as_ptr(), 0),
            Some(v) => libc::sem_open(
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::mode_t,
                v.parse::<libc::c_uint>().unwrap(),
            ),
        }
    };
    assert_ne!(
        sem,
        libc::SEM_FAILED,
        "sem_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `sem` is open.
    unsafe {
        if args.len() == 1 {
            assert_eq!(libc::sem_post(sem), 0);
        }
        assert_eq!(libc::sem_close(sem), 0);
    }
}

roles!(post_by_name, plain_c_program);

#[test]
fn another_process_posts_by_name() {
    let name = unique_posix_name("named");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .unlink_on_drop();
    let child = spawn("post_by_name").arg(format!("{name} 5")).start();
    for _ in 0..5 {
        sem.wait_timeout(watchdog()).unwrap();
    }
    child.wait_success();
    assert_eq!(sem.try_wait().unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn interoperates_with_plain_sem_open_both_ways() {
    // A C program posts to ours.
    let name = unique_posix_name("named-c");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .unlink_on_drop();
    spawn("plain_c_program")
        .arg(name.as_str())
        .start()
        .wait_success();
    sem.wait_timeout(watchdog()).unwrap();
    // We open one a C program created.
    let theirs = unique_posix_name("named-c");
    spawn("plain_c_program")
        .arg(format!("{theirs} 3"))
        .start()
        .wait_success();
    let sem = NamedSemaphore::open(theirs.as_str())
        .unwrap()
        .unlink_on_drop();
    assert_eq!(sem.value().unwrap(), 3);
}

#[test]
fn the_guard_unlinks_the_name_also_on_panic() {
    let name = unique_posix_name("named-guard");
    let sem = NamedSemaphore::create(name.as_str(), 1)
        .unwrap()
        .unlink_on_drop();
    let file = dev_shm_file(&sem);
    assert!(file.exists(), "{} missing", file.display());
    drop(sem);
    assert!(!file.exists(), "{} left behind", file.display());
    assert_eq!(
        NamedSemaphore::open(name.as_str()).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let panicked = std::panic::catch_unwind(|| {
        let _sem = NamedSemaphore::create(name.as_str(), 1)
            .unwrap()
            .unlink_on_drop();
        panic!("on purpose");
    });
    assert!(panicked.is_err());
    assert_eq!(
        NamedSemaphore::open(name.as_str()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn names_are_checked_and_created_exclusively() {
    let name = unique_posix_name("named-excl");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .unlink_on_drop();
    let e = NamedSemaphore::create(name.as_str(), 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().contains(&name), "{e}");
    for bad in ["no-slash", "/a/b", "/"] {
        assert_eq!(
            NamedSemaphore::create(bad, 0).unwrap_err().kind(),
            ErrorKind::InvalidName,
            "{bad}"
        );
    }
    // glibc adds "sem." in /dev/shm: 251 bytes is the longest name that fits.
    let long = format!("/ipctest-{}", "x".repeat(251 - "ipctest-".len()));
    let ok = NamedSemaphore::create(long.as_str(), 0)
        .unwrap()
        .unlink_on_drop();
    drop(ok);
    let too_long = format!("{long}y");
    let e = NamedSemaphore::create(too_long.as_str(), 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName);
    let e = NamedSemaphore::create(unique_posix_name("named-max").as_str(), SEM_VALUE_MAX + 1)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    assert!(e.to_string().contains("SEM_VALUE_MAX"), "{e}");
    let e = sem.wait_timeout(Duration::from_millis(5)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}
