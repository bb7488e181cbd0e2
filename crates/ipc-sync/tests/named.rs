//! POSIX named semaphores across real processes: found by name, interoperable with programs
//! that call `sem_open` directly, names validated and created exclusively, the unlink guard
//! that leaves nothing in `/dev/shm`, and waits that survive another program's writes into the
//! file and a waiter killed in its sleep.

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

/// What a C program that waits does: `sem_open(name, 0)`, `sem_wait` (glibc's, which sleeps
/// until a post wakes it: no deadline, no recheck), `sem_close`.
fn plain_c_waiter(ctx: &Ctx) {
    let name = CString::new(ctx.arg()).unwrap();
    // SAFETY: `name` is NUL-terminated; without O_CREAT no variadic arguments follow.
    let sem = unsafe { libc::sem_open(name.as_ptr(), 0) };
    assert_ne!(
        sem,
        libc::SEM_FAILED,
        "sem_open: {}",
        std::io::Error::last_os_error()
    );
    ctx.checkpoint("opened");
    // SAFETY: `sem` is open.
    unsafe {
        assert_eq!(
            libc::sem_wait(sem),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
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

/// Opens `args[0]`, says so, and takes one unit within `args[1]` milliseconds.
fn wait_by_name_for(ctx: &Ctx) {
    let args = ctx.args();
    let sem = NamedSemaphore::open(args[0]).expect("open");
    ctx.checkpoint("opened");
    sem.wait_timeout(Duration::from_millis(args[1].parse().unwrap()))
        .expect("a unit that came before the deadline is taken");
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

/// `name`: posts and takes `name` many times while a thread of this process writes garbage
/// over the semaphore's futex-sharing word (as any program mapping the file can), with the
/// waiter count scribbled non-zero so that every post wakes. glibc, reading such a word,
/// makes a futex call that fails with `ENOSYS` (it then aborts the process) or turns the
/// post's wake into a wait on the post's own value (for ever): neither must happen.
fn post_and_take_under_scribbles(ctx: &Ctx) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let sem = NamedSemaphore::open(ctx.arg()).expect("open");
    let map = map_sem_file(&sem);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let sharing = word_of(&map, SHARING_AT);
            word_of(&map, NWAITERS_AT).store(1, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                for bad in [0xff, 1, 0x100, u32::MAX] {
                    sharing.store(bad, Ordering::Relaxed);
                }
            }
        });
        for _ in 0..20_000 {
            sem.post().expect("post");
            sem.try_wait().expect("take what was posted");
        }
        stop.store(true, Ordering::Relaxed);
    });
}

roles!(
    plain_c_waiter,
    post_and_take_under_scribbles,
    post_by_name,
    wait_by_name,
    wait_by_name_for,
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
fn a_post_wakes_a_c_program_asleep_in_sem_wait() {
    // glibc's sem_wait sleeps until a post wakes it (no recheck): a post that does not
    // follow glibc's protocol (register, wake when waiters are registered, shared futex)
    // leaves it asleep until the watchdog.
    let name = unique_posix_name("named-c-waiter");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    for _ in 0..3 {
        let mut child = spawn("plain_c_waiter").arg(name.as_str()).start();
        child.wait_checkpoint("opened");
        let asleep = ipc_core::Deadline::after(watchdog());
        while file_word(&sem, NWAITERS_AT) == 0 {
            assert!(!asleep.has_passed(), "the child never waited");
            std::thread::sleep(Duration::from_millis(1));
        }
        sem.post().unwrap();
        child.wait_success();
        assert_eq!(file_word(&sem, NWAITERS_AT), 0, "the waiter deregistered");
    }
    assert_eq!(sem.value().unwrap(), 0);
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

/// A shared mapping of the semaphore's file: what another program using it sees.
fn map_sem_file(sem: &NamedSemaphore) -> memmap2::MmapMut {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_shm_file(sem))
        .unwrap();
    // SAFETY: the file is this test's own semaphore, nobody truncates it, and its words are
    // accessed only through atomics (here) and glibc's or the library's atomic operations.
    unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap()
}

/// glibc's 32-bit word at `at` in a mapping of a semaphore's file.
fn word_of(map: &memmap2::MmapMut, at: u64) -> &std::sync::atomic::AtomicU32 {
    assert!(at as usize + 4 <= map.len() && at % 4 == 0);
    // SAFETY: inside the mapping (checked), 4-aligned (the mapping is page-aligned), valid for
    // as long as `map` is borrowed; every user of these bytes accesses them atomically.
    unsafe {
        &*map
            .as_ptr()
            .add(at as usize)
            .cast::<std::sync::atomic::AtomicU32>()
    }
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

#[test]
fn a_waiter_woken_while_the_sharing_word_is_garbage_sleeps_on_instead_of_aborting() {
    // The child sleeps in its wait. Another program writes garbage over the sharing word and
    // wakes the sleeper (a plain FUTEX_WAKE on the value word, as a post whose unit was taken
    // at once by someone else does). A wait that goes back to sleep through glibc reads the
    // garbage and aborts the process ("The futex facility returned an unexpected error
    // code"); it must sleep on and take the unit posted later.
    let name = unique_posix_name("named-woken-garbage");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let map = map_sem_file(&sem);
    let mut child = spawn("wait_by_name").arg(name.as_str()).start();
    child.wait_checkpoint("opened");
    let asleep = ipc_core::Deadline::after(watchdog());
    while file_word(&sem, NWAITERS_AT) == 0 {
        assert!(!asleep.has_passed(), "the child never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    overwrite_sharing_word(&sem, 0xff);
    ipc_sync::futex::wake_all(word_of(&map, 0));
    if let Some(out) = child.wait_timeout(Duration::from_millis(100)) {
        panic!(
            "the waiter ended ({}) without a post:\n{}",
            out.status, out.stderr
        );
    }
    sem.post().unwrap();
    child.wait_success();
}

/// See `post_and_take_under_scribbles`: before, the child aborted (SIGABRT) or hung in a post.
#[test]
fn posts_and_takes_survive_garbage_in_the_sharing_word() {
    let name = unique_posix_name("named-hammer");
    // Removes the name at the end, also if the test fails.
    let _sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let mut child = spawn("post_and_take_under_scribbles")
        .arg(name.as_str())
        .start();
    match child.wait_timeout(Duration::from_secs(20)) {
        Some(out) => assert!(out.success(), "{}:\n{}", out.status, out.stderr),
        None => panic!("hung: {}", child.kill_and_wait().stderr),
    }
}

#[test]
fn a_post_to_a_value_overwritten_beyond_sem_value_max_is_refused_and_changes_nothing() {
    // glibc refuses a post only at exactly SEM_VALUE_MAX: above it, its post adds one, and at
    // u32::MAX the carry wraps the value to 0 and adds a phantom waiter (every later post a
    // futex syscall).
    let name = unique_posix_name("named-beyond-max");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let map = map_sem_file(&sem);
    let value = word_of(&map, 0);
    let nwaiters = word_of(&map, NWAITERS_AT);
    for bad in [SEM_VALUE_MAX + 1, u32::MAX] {
        value.store(bad, std::sync::atomic::Ordering::Relaxed);
        let e = sem.post().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{bad:#x}: {e}");
        assert!(e.to_string().contains(&name), "{e}");
        assert_eq!(value.load(std::sync::atomic::Ordering::Relaxed), bad);
        assert_eq!(nwaiters.load(std::sync::atomic::Ordering::Relaxed), 0);
        let e = sem.value().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{bad:#x}: {e}");
        // Any value is a count to take from.
        sem.try_wait().unwrap();
        assert_eq!(value.load(std::sync::atomic::Ordering::Relaxed), bad - 1);
    }
    value.store(SEM_VALUE_MAX, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sem.post().unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert_eq!(sem.value().unwrap(), SEM_VALUE_MAX);
}

/// A creator whose name was removed and reused by another semaphore does not remove the new
/// one when it drops (it removed whatever the name named, before).
#[test]
fn remove_on_drop_leaves_a_new_semaphore_under_the_same_name_alone() {
    let name = unique_posix_name("named-reused");
    let first = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    NamedSemaphore::unlink(name.as_str()).unwrap();
    let second = NamedSemaphore::create(name.as_str(), 7)
        .unwrap()
        .remove_on_drop();
    drop(first);
    let again = NamedSemaphore::open(name.as_str()).expect("the new semaphore's name was removed");
    assert_eq!(again.value().unwrap(), 7);
    drop(second);
    assert_eq!(
        NamedSemaphore::open(name.as_str()).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// Waits until `n` waiters are registered in the semaphore's file, failing at the watchdog.
fn until_waiters(sem: &NamedSemaphore, n: u32) {
    let asleep = ipc_core::Deadline::after(watchdog());
    while file_word(sem, NWAITERS_AT) != n {
        assert!(!asleep.has_passed(), "never {n} waiters");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A waiter `SIGKILL`ed in its sleep leaves its registration behind (as with glibc): the next
/// post still wakes a living waiter, and later posts only make a spare wake-up.
#[test]
fn a_waiter_killed_asleep_leaves_a_registration_that_wakes_the_living() {
    let name = unique_posix_name("named-killed-waiter");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let mut doomed = spawn("wait_by_name").arg(name.as_str()).start();
    doomed.wait_checkpoint("opened");
    until_waiters(&sem, 1);
    let mut living = spawn("wait_by_name").arg(name.as_str()).start();
    living.wait_checkpoint("opened");
    until_waiters(&sem, 2);
    assert!(doomed.kill_and_wait().killed());
    sem.post().unwrap();
    living.wait_success();
    assert_eq!(
        file_word(&sem, NWAITERS_AT),
        1,
        "the dead waiter's registration"
    );
    sem.post().unwrap();
    sem.try_wait().unwrap();
    assert_eq!(sem.value().unwrap(), 0);
}

/// The waiter count overwritten with 0 while a waiter sleeps: the post sees no waiter and
/// wakes nobody. The waiter looks at the value again within `futex::RECHECK` and takes the
/// unit (a delay, never a wait to its deadline); the count it leaves (it deregisters from 0,
/// wrapping) only costs later posts a spare wake-up.
#[test]
fn a_waiter_count_overwritten_with_zero_delays_the_sleeper_but_never_strands_it() {
    let name = unique_posix_name("named-nwaiters");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let map = map_sem_file(&sem);
    let mut child = spawn("wait_by_name").arg(name.as_str()).start();
    child.wait_checkpoint("opened");
    until_waiters(&sem, 1);
    word_of(&map, NWAITERS_AT).store(0, std::sync::atomic::Ordering::Relaxed);
    sem.post().unwrap();
    child.wait_success();
    assert_eq!(sem.value().unwrap(), 0, "the waiter took the unit");
    sem.post().unwrap();
    sem.wait_timeout(watchdog()).unwrap();
}

/// A unit that comes before the deadline with its wake-up lost (a poster killed between its
/// compare-and-swap and its `FUTEX_WAKE`; a wake that comes as the deadline passes): the
/// sleeper's futex wait times out, and the wait takes the unit rather than report a timeout
/// with the unit left behind. (The deadline is shorter than `futex::RECHECK`.)
#[test]
fn a_unit_whose_wake_up_was_lost_is_taken_when_the_deadline_passes() {
    let name = unique_posix_name("named-late-wake");
    let sem = NamedSemaphore::create(name.as_str(), 0)
        .unwrap()
        .remove_on_drop();
    let map = map_sem_file(&sem);
    let mut child = spawn("wait_by_name_for")
        .arg(format!("{} 900", name.as_str()))
        .start();
    child.wait_checkpoint("opened");
    until_waiters(&sem, 1);
    std::thread::sleep(Duration::from_millis(20)); // until it sleeps in the futex
    // The post, without its wake-up: the value word, as glibc's post writes it.
    word_of(&map, 0).store(1, std::sync::atomic::Ordering::SeqCst);
    child.wait_success();
    assert_eq!(sem.value().unwrap(), 0);
    assert_eq!(file_word(&sem, NWAITERS_AT), 0, "the waiter deregistered");
}
