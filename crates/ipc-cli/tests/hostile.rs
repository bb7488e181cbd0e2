//! The `ipc` binary against hostile surroundings: sockets (live and stale), FIFOs and symbolic
//! links planted in a scanned directory are never removed and links never followed; objects
//! created and removed while `list`, `inspect` and `clean` run are never an error; names given
//! to `clean` that match nothing are reported; planted names with control characters are
//! shown escaped; links, FIFOs and directories in `/dev/shm` are not objects (never followed
//! or opened).

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::ipc;
use ipc_testkit::{TempDir, unique_posix_name};
use serde_json::Value;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

/// Device and inode of what `p` names (not followed).
fn id(p: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.dev(), m.ino())
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn sockets_fifos_and_links_are_never_cleaned_or_followed() {
    let dir = TempDir::new("cli-planted");
    let d = dir.path().to_str().unwrap();
    let live = dir.join("live.sock");
    let _listener = UnixListener::bind(&live).unwrap();
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap()); // its file stays, nobody listening
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let links = ["link-live", "link-stale", "link-fifo", "link-dir"];
    for (link, to) in links
        .iter()
        .zip([&live, &stale, &fifo, &std::path::PathBuf::from("/tmp")])
    {
        std::os::unix::fs::symlink(to, dir.join(link)).unwrap();
    }
    let all: Vec<_> = [&live, &stale, &fifo]
        .into_iter()
        .cloned()
        .chain(links.iter().map(|l| dir.join(l)))
        .collect();
    let before: Vec<_> = all.iter().map(|p| id(p)).collect();

    let out = ipc(&["list", "--json", "--dir", d]);
    assert!(out.status.success());
    let objects = json(&out)["objects"].as_array().unwrap().clone();
    let listed: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["name"].as_str())
        .filter(|n| n.starts_with(d))
        .collect();
    let mut want = [&live, &stale, &fifo].map(|p| p.to_str().unwrap());
    want.sort_unstable();
    let mut got = listed.clone();
    got.sort_unstable();
    assert_eq!(
        got, want,
        "links are not followed, nothing under /tmp through link-dir"
    );
    let verdict = |p: &Path| {
        objects
            .iter()
            .find(|o| o["name"] == p.to_str().unwrap())
            .unwrap()["verdict"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(verdict(&live), "in-use");
    assert_ne!(verdict(&stale), "in-use");

    // Named or not, with --yes, nothing here is removed: a socket or a FIFO records no users,
    // so it is never provably stale.
    let out = ipc(&["clean", "--stale", "--yes", "--json", "--dir", d]);
    assert!(out.status.success());
    let named = [&live, &stale, &fifo].map(|p| p.to_str().unwrap());
    let mut args = vec!["clean", "--stale", "--yes", "--json", "--dir", d];
    args.extend(named);
    let out = ipc(&args);
    assert!(out.status.success());
    let doc = json(&out);
    for o in doc["objects"].as_array().unwrap() {
        assert_eq!(o["action"], "kept", "{o}");
        assert!(o["reason"].as_str().is_some_and(|r| !r.is_empty()), "{o}");
    }
    assert_eq!(doc["objects"].as_array().unwrap().len(), 3, "{doc}");
    let after: Vec<_> = all.iter().map(|p| id(p)).collect();
    assert_eq!(before, after, "something was replaced or removed");

    // Inspect a link: not followed, not found.
    let out = ipc(&["inspect", dir.join("link-live").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
}

/// The churning thread: stopped and joined on drop too, so a failing test leaves nothing
/// behind (each round removes what it made).
struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Churn {
    /// Stops the thread; how many rounds it made.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn objects_vanishing_mid_scan_are_never_an_error() {
    let dir = TempDir::new("cli-churn");
    let d = dir.path().to_str().unwrap().to_owned();
    let shm = unique_posix_name("cli-churn");
    let stop = Arc::new(AtomicBool::new(false));
    let mut churn = Churn {
        stop: stop.clone(),
        thread: None,
    };
    churn.thread = Some({
        let (stop, root, shm) = (stop.clone(), dir.path().to_path_buf(), shm.clone());
        std::thread::spawn(move || {
            let seg = Path::new("/dev/shm").join(&shm[1..]);
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) || rounds == 0 {
                let sub = root.join("sub");
                let _ = std::fs::create_dir(&sub);
                let s = sub.join("s.sock");
                let l = UnixListener::bind(&s).ok();
                mkfifo(&root.join("f"));
                std::fs::write(&seg, [0u8; 256]).unwrap();
                std::thread::yield_now();
                drop(l);
                let _ = std::fs::remove_file(&s);
                let _ = std::fs::remove_dir(&sub);
                std::fs::remove_file(root.join("f")).unwrap();
                std::fs::remove_file(&seg).unwrap();
                rounds += 1;
            }
            rounds
        })
    });
    for _ in 0..10 {
        let out = ipc(&["list", "--json", "--dir", &d]);
        assert!(out.status.success());
        json(&out);
        let out = ipc(&["clean", "--stale", "--json", "--dir", &d]);
        assert!(out.status.success());
        json(&out);
        let out = ipc(&["inspect", &shm, "--json"]);
        assert!(matches!(out.status.code(), Some(0 | 3)), "{:?}", out.status);
        let out = ipc(&["inspect", &format!("{d}/f")]);
        assert!(matches!(out.status.code(), Some(0 | 3)), "{:?}", out.status);
    }
    assert!(churn.stop() > 0);
    assert!(!Path::new("/dev/shm").join(&shm[1..]).exists());
}

#[test]
fn clean_reports_names_that_match_nothing() {
    let missing = unique_posix_name("cli-missing");
    let out = ipc(&["clean", "--stale", "--yes", &missing]);
    assert_eq!(out.status.code(), Some(3), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&missing) && err.contains("no such object"),
        "{err}"
    );
}

/// Removes a planted file (or empty directory) on drop, so a failing test leaves nothing
/// behind.
struct Planted(std::path::PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        if std::fs::remove_file(&self.0).is_err() {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

#[test]
fn planted_names_with_control_characters_are_shown_escaped() {
    // Another user could plant this in /dev/shm: a terminal escape sequence, a newline that
    // would forge a row of the table, a tab and a right-to-left override.
    let name = format!(
        "{}-\u{1b}[31mRED\u{1b}[0m\nshm  forged  root\t\u{202e}txt",
        unique_posix_name("cli-evil")
    );
    let planted = Planted(Path::new("/dev/shm").join(&name[1..]));
    std::fs::write(&planted.0, b"x").unwrap();
    let raw = |out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains(['\u{1b}', '\t', '\u{202e}']),
            "raw control characters printed: {text:?}"
        );
        text
    };
    let out = ipc(&["list", "--kind", "shm"]);
    assert!(out.status.success());
    let text = raw(&out);
    let row = text
        .lines()
        .find(|l| l.contains("cli-evil"))
        .expect("the planted name is listed");
    assert!(
        row.contains(r"\u{1b}[31mRED") && row.contains(r"\n") && row.contains("txt"),
        "{row}"
    );
    let out = ipc(&["inspect", &name]);
    assert!(out.status.success());
    let text = raw(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("name") && l.contains(r"\n")),
        "{text}"
    );
    // JSON carries the name exactly, for scripts.
    let out = ipc(&["list", "--kind", "shm", "--json"]);
    let doc = json(&out);
    assert!(
        doc["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == name.as_str())
    );
    drop(planted);
}

/// Runs `ipc` with `args` and fails (killing it) if it runs over 60 s: a FIFO opened for its
/// header would block it.
fn ipc_within_a_minute(args: &[&str]) -> std::process::ExitStatus {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ipc"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ipc {args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn links_fifos_and_directories_planted_in_dev_shm_are_not_objects() {
    let base = unique_posix_name("cli-planted-shm");
    let (link, fifo, dir) = (
        format!("{base}-link"),
        format!("{base}-fifo"),
        format!("{base}-dir"),
    );
    let at = |n: &str| Path::new("/dev/shm").join(&n[1..]);
    let _link = Planted(at(&link));
    let _fifo = Planted(at(&fifo));
    std::os::unix::fs::symlink("/etc/hostname", at(&link)).unwrap();
    mkfifo(&at(&fifo));
    std::fs::create_dir(at(&dir)).unwrap();
    let _dir = Planted(at(&dir));
    assert!(ipc_within_a_minute(&["list", "--kind", "shm"]).success());
    let out = ipc(&["list", "--kind", "shm", "--json"]);
    let doc = json(&out);
    let names: Vec<&str> = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with(&base)), "{names:?}");
    for n in [&link, &fifo, &dir] {
        assert_eq!(ipc_within_a_minute(&["inspect", n]).code(), Some(3), "{n}");
        assert_eq!(
            ipc_within_a_minute(&["clean", "--stale", "--yes", n]).code(),
            Some(3),
            "{n}"
        );
    }
    assert!(at(&link).symlink_metadata().is_ok() && at(&fifo).exists() && at(&dir).is_dir());
}

/// `ipc ... | head -0`: a command whose stdout is a pipe nobody reads any more ends quietly,
/// with status 0, as a Unix filter does, whatever it prints (a table, JSON, a completion
/// script).
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    for args in [
        &["completions", "bash"][..],
        &["list"],
        &["list", "--json"],
        &["limits"],
        &["limits", "--json"],
        &["clean", "--stale"],
    ] {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just made both descriptors; each is owned once, here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipc"))
            .args(args)
            .stdout(std::process::Stdio::from(write))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "ipc {args:?}: {err}");
        assert!(!err.contains("panicked"), "ipc {args:?}: {err}");
    }
}

/// `ipc recv` takes no message it cannot write: with stdout a pipe nobody reads any more
/// (`ipc recv ... | head -1` once `head` left) it ends quietly, status 0, and the messages it
/// did not write stay queued for the next reader. (It used to take one from the queue and
/// drop it, status 0.)
#[test]
fn recv_takes_no_message_it_cannot_write() {
    use ipc_core::MessageSender;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Command, Stdio};

    let name = unique_posix_name("cli-recv-gone");
    let q = ipc_mq::posix::Queue::create(name.as_str(), 4, 64).unwrap();
    let _guard = q.remove_guard().unwrap();
    (&q).send(b"one").unwrap();
    (&q).send(b"two").unwrap();
    let queued = || q.attributes().unwrap().messages;
    let recv = ["recv", name.as_str(), "-n", "2", "--timeout", "5"];

    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just made both descriptors; each is owned once, here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let out = Command::new(env!("CARGO_BIN_EXE_ipc"))
        .args(recv)
        .stdout(Stdio::from(write))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout's reader gone: {err}");
    assert_eq!(
        queued(),
        2,
        "stdout's reader gone: a message was taken and lost"
    );

    let mut left = [0u8; 64];
    let n = q.try_recv(&mut left).unwrap().len;
    assert_eq!(
        &left[..n],
        b"one",
        "the first message is still the next one"
    );
}

/// `ipc inspect NAME` of a FIFO or socket in the current directory, named as a shell user
/// names it (no `./`), finds it.
#[test]
fn inspect_finds_a_fifo_or_socket_by_a_relative_path() {
    let dir = TempDir::new("cli-relative");
    mkfifo(&dir.join("fifo"));
    let _listener = UnixListener::bind(dir.join("sock")).unwrap();
    for (name, kind) in [("fifo", "fifo"), ("sock", "socket"), ("./fifo", "fifo")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipc"))
            .args(["inspect", name, "--json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "inspect {name}: {err}");
        let doc = json(&out);
        assert_eq!(doc[0]["kind"], kind, "{doc}");
        assert_eq!(doc.as_array().unwrap().len(), 1, "{doc}");
    }
}

/// `ipc recv` from a FIFO whose writer closed in the middle of a message (died, or wrote
/// bytes that are not this framing: `echo hi > fifo`): the library drops the part and says
/// so; the command says so too and fails, rather than ending as if all had arrived.
#[test]
fn recv_reports_a_message_cut_by_the_end_of_the_stream() {
    let dir = TempDir::new("cli-cut");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    for (cut, what) in [
        (&b"\x05\x00\x00\x00ab"[..], "a message"),
        (&b"hi\n"[..], "a frame header"),
    ] {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ipc"))
            .args(["recv", fifo.to_str().unwrap(), "--timeout", "60"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Opening for writing waits for `ipc` to open for reading.
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::io::Write::write_all(&mut w, cut).unwrap();
        drop(w);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{what}: {:?} {err}", out.status);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains("in the middle of"), "{what}: {err}");
    }
}

/// Processes that end while `ipc` searches `/proc` are not "processes of other users" that
/// could not be searched: run as root, with processes starting and ending all along, the note
/// that says so (and tells to run as root) never appears.
#[test]
fn processes_ending_during_the_scan_are_not_called_unreadable() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: as another user than root, the note is right");
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut churn = Churn {
        stop: stop.clone(),
        thread: None,
    };
    churn.thread = Some(std::thread::spawn(move || {
        let mut rounds = 0u64;
        while !stop.load(Ordering::Relaxed) || rounds == 0 {
            let _ = std::process::Command::new("true").status();
            rounds += 1;
        }
        rounds
    }));
    for _ in 0..10 {
        let out = ipc(&["list", "--kind", "sysv-shm", "--json"]);
        assert!(out.status.success());
        let doc = json(&out);
        for note in doc["notes"].as_array().unwrap() {
            assert!(
                !note.as_str().unwrap().contains("not searched"),
                "as root: {note}"
            );
        }
    }
    assert!(churn.stop() > 0);
}

/// `ipc ... 2>&1 >/dev/null | head -0`: a stderr nobody reads any more changes no exit code
/// (the messages are lost, the outcome is not).
#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let missing = unique_posix_name("cli-missing");
    for (args, code) in [
        (&["list", "--kind", "sysv-shm"][..], 0),
        (&["inspect", missing.as_str()], 3),
        (&["clean", "--stale", missing.as_str()], 3),
    ] {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just made both descriptors; each is owned once, here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_ipc"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(write))
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code), "ipc {args:?}");
    }
}
