//! The leftover check end to end: `xtask isolated -- PROGRAM` runs a program the way
//! `cargo xtask test` runs the tests. A program that leaks one object of every kind (System V
//! queue, segment and semaphore set, POSIX shared memory, named semaphore and queue, a temporary
//! directory, a stray process) fails the run, with each one named; objects and processes that
//! another program creates while the run is going are left alone. Both with private namespaces
//! (the default where permitted) and without (`IPC_XTASK_ISOLATION=off`).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "XTASK_LEAK_TEST_ROLE";
const HANDSHAKE_ENV: &str = "XTASK_LEAK_TEST_DIR";

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// The leaking program: makes one object of each kind, reports their names and ids, tells
/// the test it is ready, waits for "go" (so the test can create its own objects meanwhile),
/// and exits without cleaning up.
#[test]
fn __role_entry() {
    if std::env::var(ROLE_ENV).as_deref() != Ok("leak") {
        return;
    }
    let dir = PathBuf::from(std::env::var(HANDSHAKE_ENV).unwrap());
    let mut report = Vec::new();
    // SAFETY: plain syscalls with valid NUL-terminated names and no pointers kept; results
    // are checked.
    unsafe {
        let msg = libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600);
        let shm = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
        let sem = libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600);
        assert!(msg >= 0 && shm >= 0 && sem >= 0);
        report.push(format!("msg {msg}"));
        report.push(format!("shm {shm}"));
        report.push(format!("sem {sem}"));

        let shm_name = ipc_testkit::unique_posix_name("leak-shm");
        let fd = libc::shm_open(
            cstr(&shm_name).as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600,
        );
        assert!(fd >= 0);
        report.push(format!("posix-shm {}", &shm_name[1..]));

        let sem_name = ipc_testkit::unique_posix_name("leak-sem");
        let s = libc::sem_open(cstr(&sem_name).as_ptr(), libc::O_CREAT, 0o600, 1);
        assert!(s != libc::SEM_FAILED);
        report.push(format!("posix-sem {}", &sem_name[1..]));

        let mq_name = ipc_testkit::unique_posix_name("leak-mq");
        let mq = libc::mq_open(
            cstr(&mq_name).as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600,
            std::ptr::null_mut::<libc::mq_attr>(),
        );
        assert!(mq >= 0, "{}", std::io::Error::last_os_error());
        report.push(format!("mq {}", &mq_name[1..]));
    }
    let tmp = ipc_testkit::TempDir::new("leak-tmp");
    report.push(format!(
        "tmp {}",
        tmp.path().file_name().unwrap().to_string_lossy()
    ));
    std::mem::forget(tmp);
    // A stray process: its parent (sh) exits at once, so it is reparented.
    let out = Command::new("sh")
        .args(["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    report.push(format!(
        "proc {}",
        String::from_utf8_lossy(&out.stdout).trim()
    ));

    std::fs::write(dir.join("report"), report.join("\n")).unwrap();
    std::fs::write(dir.join("ready"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.join("go").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An object of the test process itself (outside the run), removed on drop.
struct Outside {
    sem_id: i32,
    shm_name: String,
    sleeper: std::process::Child,
}

impl Outside {
    fn create() -> Outside {
        // SAFETY: plain syscalls with a valid name; results checked.
        let sem_id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
        assert!(sem_id >= 0);
        let shm_name = ipc_testkit::unique_posix_name("outside");
        // SAFETY: as above.
        let fd = unsafe {
            libc::shm_open(
                cstr(&shm_name).as_ptr(),
                libc::O_CREAT | libc::O_RDWR,
                0o600,
            )
        };
        assert!(fd >= 0);
        // SAFETY: `fd` is ours and open.
        unsafe { libc::close(fd) };
        let sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
        Outside {
            sem_id,
            shm_name,
            sleeper,
        }
    }

    fn assert_untouched(&mut self) {
        // SAFETY: IPC_STAT-free existence check: GETVAL reads one value, no buffer.
        let v = unsafe { libc::semctl(self.sem_id, 0, libc::GETVAL) };
        assert!(
            v >= 0,
            "the outside semaphore set {} was removed",
            self.sem_id
        );
        assert!(
            Path::new("/dev/shm").join(&self.shm_name[1..]).exists(),
            "the outside name {} was removed",
            self.shm_name
        );
        assert!(
            self.sleeper.try_wait().unwrap().is_none(),
            "the outside process was killed"
        );
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // SAFETY: removing our own objects; failures (already gone) are ignored.
        unsafe {
            libc::semctl(self.sem_id, 0, libc::IPC_RMID);
            libc::shm_unlink(cstr(&self.shm_name).as_ptr());
        }
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
    }
}

/// Runs the leaking program under `xtask isolated`, creating outside objects while it runs.
/// Returns xtask's stderr, the leaked objects' report and whether the run was isolated.
fn leak_run(isolation_off: bool) -> (String, Vec<(String, String)>, bool) {
    let hs = ipc_testkit::TempDir::new("leak-handshake");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["isolated", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["__role_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "leak")
        .env(HANDSHAKE_ENV, hs.path())
        .env_remove("CI")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if isolation_off {
        cmd.env("IPC_XTASK_ISOLATION", "off");
    }
    let mut xtask = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !hs.join("ready").exists() {
        if let Some(status) = xtask.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut xtask.stderr.take().unwrap(), &mut err).unwrap();
            panic!("xtask ended ({status}) before the program was ready:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "watchdog: the leaking program never got ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Another program's objects and process, created while the run is going.
    let mut outside = Outside::create();
    std::fs::write(hs.join("go"), "").unwrap();
    let out =
        ipc_testkit::within_watchdog("xtask isolated", move || xtask.wait_with_output()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a leaking program must fail the run:\n{stderr}"
    );
    outside.assert_untouched();
    let report = std::fs::read_to_string(hs.join("report")).unwrap();
    let report = report
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let isolated = stderr.contains("tests run in private IPC and mount namespaces");
    (stderr, report, isolated)
}

fn gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |s| {
        s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

/// What must be reported in every mode: names, the temporary directory and the process.
fn assert_named_leftovers_reported(stderr: &str, report: &[(String, String)]) {
    for (kind, v) in report {
        let expected = match kind.as_str() {
            "posix-shm" => v.clone(),
            "posix-sem" => format!("sem.{v}"),
            "mq" => format!("POSIX message queue /{v} (removed)"),
            "tmp" => format!("{v} (removed)"),
            "proc" => format!("process {v}: sleep 1000 (killed)"),
            _ => continue,
        };
        assert!(
            stderr.contains(&expected),
            "{kind} {v} not reported:\n{stderr}"
        );
        if kind == "proc" {
            assert!(gone(v), "stray process {v} still alive");
        }
    }
}

#[test]
fn leaks_of_every_kind_fail_the_run_and_only_they_are_touched() {
    let (stderr, report, isolated) = leak_run(false);
    assert_named_leftovers_reported(&stderr, &report);
    if isolated {
        // Every System V kind, reported and removed (they lived in the run's namespace).
        for (kind, id) in &report {
            let what = match kind.as_str() {
                "msg" => "message queue",
                "shm" => "shared memory segment",
                "sem" => "semaphore set",
                _ => continue,
            };
            let line = format!("System V {what} id {id} (key 0x00000000) (removed)");
            assert!(stderr.contains(&line), "{line} not in:\n{stderr}");
        }
    } else {
        eprintln!("private namespaces not permitted here; checked the shared mode only");
    }
}

#[test]
fn without_namespaces_ledger_names_are_removed_and_system_v_is_only_reported() {
    let (stderr, report, isolated) = leak_run(true);
    assert!(!isolated);
    assert_named_leftovers_reported(&stderr, &report);
    for (kind, v) in &report {
        match kind.as_str() {
            "posix-shm" | "posix-sem" => {
                let file = if kind == "posix-sem" {
                    format!("sem.{v}")
                } else {
                    v.clone()
                };
                assert!(
                    !Path::new("/dev/shm").join(file).exists(),
                    "{v} not removed"
                );
            }
            "msg" | "shm" | "sem" => {
                let id: i32 = v.parse().unwrap();
                let line = format!("id {id} (key 0x00000000) appeared during the run (not removed");
                assert!(stderr.contains(&line), "{line} not in:\n{stderr}");
                // Left alone, so ours to remove.
                // SAFETY: removing objects this test's child made; a null buffer is allowed.
                let rc = unsafe {
                    match kind.as_str() {
                        "msg" => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
                        "shm" => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
                        _ => libc::semctl(id, 0, libc::IPC_RMID),
                    }
                };
                assert_eq!(rc, 0, "System V {kind} {id} should have been left alone");
            }
            _ => {}
        }
    }
}

/// A command of the run starts with stdin, stdout and stderr only: a descriptor xtask
/// inherited open (here 9, as a shell's would be) does not reach it, so a test sees the same
/// descriptor table from any shell as on CI.
#[test]
fn inherited_descriptors_do_not_reach_the_run() {
    use std::os::unix::process::CommandExt;
    let probe = "for f in /proc/$$/fd/*; do echo \"${f##*/}\"; done";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["isolated", "--", "sh", "-c", probe])
        .env("IPC_XTASK_ISOLATION", "off")
        .stderr(std::process::Stdio::null());
    // SAFETY: runs between fork and exec and makes one dup2 syscall (async-signal-safe, no
    // allocation): xtask starts with descriptor 9 open and not close-on-exec, as under a
    // shell that holds one.
    unsafe {
        cmd.pre_exec(|| {
            if libc::dup2(2, 9) != 9 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = ipc_testkit::within_watchdog("xtask isolated", move || cmd.output()).unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let fds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(fds.contains(&"0".to_owned()), "no stdin in {fds:?}");
    assert!(
        !fds.contains(&"9".to_owned()),
        "descriptor 9 reached the command: {fds:?}"
    );
}
