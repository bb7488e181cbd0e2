//! The test watchdog end to end: `xtask watchdog --secs N -- PROGRAM` (what `cargo xtask test`
//! makes cargo start every test binary with) passes a finished program's output and exit
//! status through, and kills a hung one with its whole process group, failing with a message
//! that names the binary and the test still running.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "XTASK_WATCHDOG_TEST_ROLE";
const PIDFILE_ENV: &str = "XTASK_WATCHDOG_TEST_PIDFILE";

/// The hung "test binary": libtest-like progress lines, a grandchild in its process group,
/// then it hangs.
#[test]
fn __role_entry() {
    if std::env::var(ROLE_ENV).as_deref() != Ok("hang") {
        return;
    }
    println!("test quick ... ok");
    println!("test stuck::forever has been running for over 60 seconds");
    // Killed with the group by the watchdog under test (never waited for: this process hangs).
    #[allow(clippy::zombie_processes)]
    let grandchild = Command::new("sleep").arg("1000").spawn().unwrap();
    let pidfile = std::env::var(PIDFILE_ENV).unwrap();
    std::fs::write(&pidfile, grandchild.id().to_string()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

fn alive(pid: i32) -> bool {
    // A zombie has no `State: Z`-free status; count it as gone.
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

#[test]
fn a_hung_binary_fails_named_and_its_process_group_is_killed() {
    let dir = ipc_testkit::TempDir::new("watchdog");
    let pidfile = dir.join("grandchild");
    let exe = std::env::current_exe().unwrap();
    let out = xtask()
        .args(["watchdog", "--secs", "3", "--"])
        .arg(&exe)
        .args(["__role_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "hang")
        .env(PIDFILE_ENV, &pidfile)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a hung binary must fail the run");
    assert!(
        stderr.contains(&format!(
            "watchdog: {} still running after 3 s",
            exe.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("tests still running: stuck::forever"),
        "{stderr}"
    );
    assert!(!stderr.contains("quick,"), "{stderr}");
    assert!(
        stdout.contains("test quick ... ok"),
        "output is passed through: {stdout}"
    );

    // The grandchild was in the binary's process group: killed too (reaped by init, which
    // may take a moment; bounded).
    let pid: i32 = std::fs::read_to_string(Path::new(&pidfile))
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        if Instant::now() > deadline {
            // Do not leave it behind even when failing.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("grandchild {pid} survived the watchdog");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_finished_binary_keeps_its_output_and_exit_status() {
    let out = xtask()
        .args([
            "watchdog",
            "--secs",
            "600",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}

#[test]
fn unknown_arguments_get_usage_and_status_2() {
    for args in [
        &["test", "--bogus"][..],
        &["fuzz", "nope"],
        &["frobnicate"],
        &[],
    ] {
        let out = xtask().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: cargo xtask test"));
    }
}

#[test]
fn a_watchdog_whose_parent_dies_takes_its_program_with_it() {
    // What an interrupted `cargo xtask test` does to a running test binary: xtask dies, cargo
    // dies with it, then the watchdog cargo started. Here `sh` plays cargo.
    let dir = ipc_testkit::TempDir::new("watchdog-orphan");
    let pidfile = dir.join("program");
    let script = format!(
        "'{}' watchdog --secs 600 -- sh -c 'echo $$ > {}; exec sleep 1000' & wait",
        env!("CARGO_BIN_EXE_xtask"),
        pidfile.display()
    );
    let mut parent = Command::new("sh").arg("-c").arg(script).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the program never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the program {pid} outlived its watchdog's parent");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
