//! POSIX named semaphores across real processes: found by name, interoperable with programs
//! that call `sem_open` directly, names validated and created exclusively, and the unlink
//! guard that leaves nothing in `/dev/shm`.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use ipc_core::ErrorKind;
use ipc_sync::{NamedOpenOptions, NamedSemaphore, Owner, SEM_VALUE_MAX};
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

/// Opens `args[0]`, says so, and takes one unit within the watchdog's time.
fn wait_by_name(ctx: &Ctx) {
    let sem = NamedSemaphore::open(ctx.arg()).expect("open");
    ctx.checkpoint("opened");
    sem.wait_timeout(watchdog())
        .expect("a post from another process wakes the wait");
}

/// Sets umask 0o277, then creates `args[0]` with mode `args[1]` (octal).
fn create_under_umask(ctx: &Ctx) {
    let args = ctx.args();
    // SAFETY: umask only changes this (child) process's file creation mask.
    unsafe { libc::umask(0o277) };
    let mode = u32::from_str_radix(args[1], 8).unwrap();
    let sem = NamedSemaphore::create_with_mode(args[0], 2, mode).expect("create");
    sem.post().unwrap();
}

/// Something planted at a semaphore's file, removed on drop.
struct Planted(PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0).or_else(|_| std::fs::remove_dir(&self.0));
    }
}

/// Plants each hostile kind of file at a fresh semaphore name and checks that `open` gives a
/// typed error at once (this role runs under the parent's watchdog: a blocking open fails the
/// test) and `create` says the name is taken. Runs in a child so that a semaphore mapped from
/// an empty file (SIGBUS on first use) kills only the child.
fn open_hostile_files(_: &Ctx) {
    use std::os::unix::fs::symlink;
    let target = NamedSemaphore::create(unique_posix_name("hostile-target").as_str(), 5)
        .unwrap()
        .remove_on_drop();
    let target_file = dev_shm_file(&target);
    let mut checked = Vec::new();
    for kind in [
        "fifo", "dir", "symlink", "dangling", "socket", "empty", "short", "device",
    ] {
        let name = unique_posix_name(&format!("hostile-{kind}"));
        let path = PathBuf::from(format!("/dev/shm/sem.{}", &name[1..]));
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let _planted = Planted(path.clone());
        let _sock;
        match kind {
            // SAFETY: `c` is a NUL-terminated path.
            "fifo" => assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0),
            "dir" => std::fs::create_dir(&path).unwrap(),
            "symlink" => symlink(&target_file, &path).unwrap(),
            "dangling" => symlink("/nonexistent/ipctest", &path).unwrap(),
            "socket" => _sock = std::os::unix::net::UnixListener::bind(&path).unwrap(),
            "empty" => std::fs::write(&path, b"").unwrap(),
            "short" => std::fs::write(&path, [0u8; 8]).unwrap(),
            "device" => {
                // SAFETY: `c` is a NUL-terminated path; makedev takes plain integers.
                let r =
                    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
                if r != 0 {
                    eprintln!("device: not planted ({})", std::io::Error::last_os_error());
                    continue;
                }
            }
            _ => unreachable!(),
        }
        let e = NamedSemaphore::open(name.as_str())
            .map(|s| s.value())
            .expect_err(kind);
        let want = if kind == "dangling" {
            [ErrorKind::WrongType, ErrorKind::NotFound]
        } else {
            [ErrorKind::WrongType; 2]
        };
        assert!(want.contains(&e.kind()), "{kind}: {e}");
        assert!(e.to_string().contains(&name), "{kind}: {e}");
        let e = NamedSemaphore::create(name.as_str(), 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{kind}: {e}");
        assert!(
            path.symlink_metadata().is_ok(),
            "{kind}: the planted file is left alone"
        );
        checked.push(kind);
    }
    assert_eq!(
        target.value().unwrap(),
        5,
        "the symlink's target is untouched"
    );
    eprintln!("checked {checked:?}");
}

/// Becomes `nobody` if root, then creates, opens, uses and unlinks a semaphore: creation
/// (an O_TMPFILE linked through /proc/self/fd) needs no privilege.
fn unprivileged_cycle(ctx: &Ctx) {
    if rustix::process::geteuid().is_root() {
        // SAFETY: plain credential calls with valid arguments (an empty group list); glibc
        // applies them to every thread of this child process.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
    }
    let sem = NamedSemaphore::create_with_mode(ctx.arg(), 1, 0o600)
        .expect("create")
        .remove_on_drop();
    let other = NamedSemaphore::open(ctx.arg()).expect("open");
    other.try_wait().unwrap();
    sem.post().unwrap();
    assert_eq!(other.value().unwrap(), 1);
    eprintln!("checked as uid {}", rustix::process::geteuid().as_raw());
}

roles!(
    post_by_name,
    wait_by_name,
    plain_c_program,
    create_under_umask,
    open_hostile_files,
    unprivileged_cycle
);

#[test]
fn an_unprivileged_process_creates_and_opens_named_semaphores() {
    let name = unique_posix_name("named-unpriv");
    let _guard = UnlinkOnDrop(name.clone());
    let out = spawn("unprivileged_cycle")
        .arg(&name)
        .start()
        .wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

#[test]
fn create_with_mode_refuses_special_bits() {
    for mode in [0o4600, 0o2600, 0o1600, 0o10600] {
        let name = unique_posix_name("named-mode");
        let _guard = UnlinkOnDrop(name.clone());
        let e = NamedSemaphore::create_with_mode(name.as_str(), 0, mode).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{mode:o}: {e}");
        assert_eq!(
            NamedSemaphore::open(name.as_str()).unwrap_err().kind(),
            ErrorKind::NotFound,
            "{mode:o}: nothing created"
        );
    }
}

#[test]
fn the_mode_is_exact_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique_posix_name("named-umask");
    let _guard = UnlinkOnDrop(name.clone());
    spawn("create_under_umask")
        .arg(format!("{name} 640"))
        .start()
        .wait_success();
    let file = PathBuf::from(format!("/dev/shm/sem.{}", &name[1..]));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "{mode:o}");
    assert_eq!(
        NamedSemaphore::open(name.as_str())
            .unwrap()
            .value()
            .unwrap(),
        3
    );
}

/// Unlinks a semaphore name on drop (also when the test fails).
struct UnlinkOnDrop(String);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        let _ = NamedSemaphore::unlink(self.0.as_str());
    }
}

#[test]
fn hostile_files_at_the_name_get_a_typed_error_without_blocking() {
    let out = spawn("open_hostile_files").start().wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

#[test]
fn another_users_semaphore_is_refused_unless_asked_for() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: only root can give a semaphore to another user");
        return;
    }
    let name = unique_posix_name("named-owner");
    let sem = NamedSemaphore::create(name.as_str(), 4)
        .unwrap()
        .remove_on_drop();
    let file = dev_shm_file(&sem);
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let e = NamedSemaphore::open(name.as_str()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("Owner::Uid(65534)"), "{e}");
    let other = NamedOpenOptions::new()
        .owner(Owner::Any)
        .open(name.as_str())
        .unwrap();
    assert_eq!(other.value().unwrap(), 4);
}

#[test]
fn another_process_posts_by_name() {
    let name = unique_posix_name("named");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
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
        .remove_on_drop();
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
        .remove_on_drop();
    assert_eq!(sem.value().unwrap(), 3);
}

#[test]
fn the_guard_unlinks_the_name_also_on_panic() {
    let name = unique_posix_name("named-guard");
    let sem = NamedSemaphore::create(name.as_str(), 1)
        .unwrap()
        .remove_on_drop();
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
            .remove_on_drop();
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
        .remove_on_drop();
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
        .remove_on_drop();
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

/// glibc's words in a semaphore's file (64-bit `struct new_sem`): the waiter count (high half
/// of the first word) and the futex-sharing word, 128 (`FUTEX_SHARED`) in every shared
/// semaphore.
const NWAITERS_AT: u64 = 4;
const SHARING_AT: u64 = 8;

fn file_word(sem: &NamedSemaphore, at: u64) -> u32 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    std::fs::File::open(dev_shm_file(sem))
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    u32::from_ne_bytes(b)
}

/// What another program writing into the file does (the page cache is the shared memory).
fn overwrite_sharing_word(sem: &NamedSemaphore, value: u32) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm_file(sem))
        .unwrap()
        .write_all_at(&value.to_ne_bytes(), SHARING_AT)
        .unwrap();
}

#[test]
fn an_overwritten_sharing_word_is_put_back_before_waiting_and_posting() {
    // 0 makes glibc's futex calls process-private: this process's post and the child's wait
    // would then miss each other, and the wait would end only at its deadline.
    let name = unique_posix_name("named-sharing");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    overwrite_sharing_word(&sem, 0);
    let mut child = spawn("wait_by_name").arg(name.as_str()).start();
    child.wait_checkpoint("opened");
    sem.post().unwrap();
    child.wait_success();
    assert_eq!(file_word(&sem, SHARING_AT), 128, "put back");
}

#[test]
fn a_wake_up_lost_to_an_overwritten_sharing_word_delays_the_wait_but_never_ends_it() {
    // The waiter sleeps (shared); then a plain C program posts through a sharing word that was
    // overwritten meanwhile: its wake-up is process-private and reaches nobody. The wait looks
    // at the value again after at most `futex::RECHECK` and takes the unit.
    let name = unique_posix_name("named-lost");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let mut child = spawn("wait_by_name").arg(name.as_str()).start();
    child.wait_checkpoint("opened");
    let asleep = ipc_core::Deadline::after(watchdog());
    while file_word(&sem, NWAITERS_AT) == 0 {
        assert!(!asleep.has_passed(), "the child never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    overwrite_sharing_word(&sem, 0);
    spawn("plain_c_program")
        .arg(name.as_str())
        .start()
        .wait_success();
    child.wait_success();
}
