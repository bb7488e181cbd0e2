//! Every path-named open of this crate against every hostile file type planted at the path: a
//! regular file, a Unix socket, a directory, a symbolic link to a FIFO, a dangling symbolic
//! link, a character device and a block device (the devices only as root: made with `mknod`,
//! never opened). Each open must refuse with a typed error naming the path, and never block:
//! every one runs under the watchdog, which fails the test instead of hanging.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageSender};
use ipc_fifo::{ConnectOptions, Fifo, Listener, OpenOptions};
use ipc_testkit::{TempDir, within_watchdog};

use crate::{entries, scratch};

/// A hostile object to plant.
#[derive(Clone, Copy, Debug)]
enum Plant {
    File,
    Socket,
    Directory,
    LinkToFifo,
    DanglingLink,
    CharDevice,
    BlockDevice,
}

const PLANTS: [Plant; 7] = [
    Plant::File,
    Plant::Socket,
    Plant::Directory,
    Plant::LinkToFifo,
    Plant::DanglingLink,
    Plant::CharDevice,
    Plant::BlockDevice,
];

/// What keeps a planted object alive (a bound socket, the FIFO a link points to).
#[allow(dead_code)]
enum Keep {
    Nothing,
    Socket(std::os::unix::net::UnixListener),
    Fifo(Fifo),
}

/// Plants `what` at `path` (whose directory is `dir`). `None` when it cannot be made here
/// (a device without root), after saying so.
fn plant(what: Plant, path: &Path, dir: &TempDir) -> Option<Keep> {
    Some(match what {
        Plant::File => {
            std::fs::write(path, b"").unwrap();
            Keep::Nothing
        }
        Plant::Socket => Keep::Socket(std::os::unix::net::UnixListener::bind(path).unwrap()),
        Plant::Directory => {
            std::fs::create_dir(path).unwrap();
            Keep::Nothing
        }
        Plant::LinkToFifo => {
            let target = dir.join(&format!(
                "real-{}",
                path.file_name().unwrap().to_string_lossy()
            ));
            let fifo = Fifo::create(&target).unwrap();
            std::os::unix::fs::symlink(&target, path).unwrap();
            Keep::Fifo(fifo)
        }
        Plant::DanglingLink => {
            std::os::unix::fs::symlink(dir.join("nowhere"), path).unwrap();
            Keep::Nothing
        }
        Plant::CharDevice | Plant::BlockDevice => {
            let (ty, dev) = match what {
                Plant::CharDevice => (rustix::fs::FileType::CharacterDevice, (1, 3)), // null
                _ => (rustix::fs::FileType::BlockDevice, (7, 0)),                     // loop0
            };
            let dev = rustix::fs::makedev(dev.0, dev.1);
            match rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                ty,
                rustix::fs::Mode::from_raw_mode(0o600),
                dev,
            ) {
                Ok(()) => Keep::Nothing,
                Err(rustix::io::Errno::PERM) => {
                    eprintln!("not root: cannot mknod a {what:?}; that case is skipped");
                    return None;
                }
                Err(e) => panic!("mknod {what:?}: {e}"),
            }
        }
    })
}

/// The words a refusal of `what` must say.
fn says(what: Plant) -> (ErrorKind, &'static str) {
    match what {
        Plant::File => (ErrorKind::WrongType, "regular file"),
        Plant::Socket => (ErrorKind::WrongType, "socket"),
        Plant::Directory => (ErrorKind::WrongType, "directory"),
        Plant::LinkToFifo | Plant::DanglingLink => (ErrorKind::WrongType, "symbolic link"),
        Plant::CharDevice => (ErrorKind::WrongType, "character device"),
        Plant::BlockDevice => (ErrorKind::WrongType, "block device"),
    }
}

fn check(what: Plant, how: &str, path: &Path, e: ipc_core::Error) {
    let (kind, words) = says(what);
    assert_eq!(e.kind(), kind, "{how} on a {what:?}: {e}");
    let s = e.to_string();
    assert!(s.contains(words), "{how} on a {what:?} says {words:?}: {s}");
    assert!(
        s.contains(&*path.to_string_lossy()),
        "{how} on a {what:?} names the path: {s}"
    );
}

/// Every way of opening a FIFO by path, with every wait: `(description, options, for reading)`.
fn open_variants() -> Vec<(String, OpenOptions, bool)> {
    let t = Duration::from_secs(30);
    let waits = [
        ("blocking", OpenOptions::new()),
        ("timeout", OpenOptions::new().timeout(t).clone()),
        ("nonblocking", OpenOptions::new().nonblocking(true).clone()),
        (
            "deadline",
            OpenOptions::new().wait(Deadline::after(t)).clone(),
        ),
    ];
    let mut v = Vec::new();
    for (wait, opts) in waits {
        v.push((format!("open_read ({wait})"), opts.clone(), true));
        v.push((format!("open_write ({wait})"), opts, false));
    }
    let keep_open = OpenOptions::new().keep_open(true).clone();
    v.push(("open_read (keep_open)".into(), keep_open, true));
    v
}

#[test]
fn every_open_by_path_refuses_every_hostile_type_without_blocking() {
    for what in PLANTS {
        let dir = scratch();
        let path = dir.join("p");
        let Some(keep) = plant(what, &path, &dir) else {
            continue;
        };
        let p = path.clone();
        within_watchdog(&format!("opens of a {what:?}"), move || {
            for (how, opts, read) in open_variants() {
                let e = if read {
                    opts.open_read(&p).map(drop).unwrap_err()
                } else {
                    opts.open_write(&p).map(drop).unwrap_err()
                };
                check(what, &how, &p, e);
            }
            let e = ConnectOptions::new()
                .timeout(Duration::from_secs(30))
                .connect(&p)
                .map(drop)
                .unwrap_err();
            check(what, "Connection::connect", &p, e);
            // Creating over it: refused, and the planted object is left alone.
            let e = Fifo::create(&p).map(drop).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "create over a {what:?}: {e}"
            );
            let e = Listener::bind(&p).map(drop).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "bind over a {what:?}: {e}"
            );
        });
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "{what:?} left alone"
        );
        drop(keep);
    }
}

/// A hello naming a connection whose FIFOs are hostile objects: `accept` refuses with a typed
/// error without blocking, the listener goes on, and `remove_stale` removes none of them.
#[test]
fn accept_and_remove_stale_refuse_hostile_connection_names() {
    for what in PLANTS {
        let dir = scratch();
        let path = dir.join("server");
        let listener = Listener::bind(&path).unwrap();
        // A pid that cannot exist (above pid_max), so remove_stale takes the names as stale.
        let id = "4194399.7";
        let c2s = PathBuf::from(format!("{}.{id}.c2s", path.display()));
        let s2c = PathBuf::from(format!("{}.{id}.s2c", path.display()));
        let Some(k1) = plant(what, &c2s, &dir) else {
            continue;
        };
        let k2 = plant(what, &s2c, &dir).expect("planted once already");
        let mut tx = OpenOptions::new()
            .open_write(&path)
            .unwrap()
            .into_atomic_sender()
            .unwrap();
        tx.send(format!("IFH\x01{id}").as_bytes()).unwrap();
        let (listener, e) = within_watchdog(&format!("accept of a {what:?}"), move || {
            let mut listener = listener;
            let e = listener
                .accept_timeout(Duration::from_secs(30))
                .map(drop)
                .unwrap_err();
            (listener, e)
        });
        check(what, "Listener::accept", &c2s, e);
        let removed = within_watchdog("remove_stale", move || {
            let n = listener.remove_stale().unwrap();
            (n, listener)
        });
        assert_eq!(removed.0, 0, "remove_stale removed a {what:?}");
        let names = entries(dir.path());
        assert!(
            names.iter().any(|n| n.ends_with(".c2s")) && names.iter().any(|n| n.ends_with(".s2c")),
            "{what:?} left alone: {names:?}"
        );
        drop((k1, k2));
    }
}

/// A hello naming a "pair" whose two names are hard links to one FIFO, or whose `c2s` is a
/// hard link to the listener's own FIFO: `accept` opened them and, finding a writer on `c2s`
/// (its own end of `s2c`, or the listener's keep-open end), returned a connection to itself
/// (that never reports its peer gone, with no process behind it) or one that read the
/// listener's own FIFO (taking other clients' hellos). Now refused with `WrongType`, and
/// nothing is accepted. Failed without the fix: `accept` returned a connection.
#[test]
fn accept_refuses_a_pair_that_is_one_fifo_or_the_listeners_own() {
    let dir = scratch();
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let name = |id: &str, suffix: &str| PathBuf::from(format!("{}.{id}.{suffix}", path.display()));
    let mut hello = OpenOptions::new()
        .open_write(&path)
        .unwrap()
        .into_atomic_sender()
        .unwrap();
    // One FIFO under both names, with a reader (as a client's s2c has).
    let one = Fifo::create(name("4194399.1", "s2c")).unwrap();
    std::fs::hard_link(one.path(), name("4194399.1", "c2s")).unwrap();
    let _one_read = OpenOptions::new()
        .nonblocking(true)
        .open_read(&one)
        .unwrap();
    // The listener's own FIFO as c2s, beside a real s2c with a reader.
    std::fs::hard_link(&path, name("4194399.2", "c2s")).unwrap();
    let s2c = Fifo::create(name("4194399.2", "s2c")).unwrap();
    let _s2c_read = OpenOptions::new()
        .nonblocking(true)
        .open_read(&s2c)
        .unwrap();
    for id in ["4194399.1", "4194399.2"] {
        hello.send(format!("IFH\x01{id}").as_bytes()).unwrap();
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .expect_err(id);
        assert_eq!(e.kind(), ErrorKind::WrongType, "{id}: {e}");
    }
    let e = listener
        .accept_deadline(Deadline::Now)
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
}

/// Pairs whose names carry a pid that no process can have (0, above any `pid_max`, above
/// `i32::MAX`), with nobody holding them: leftovers of no live client in any pid namespace,
/// all removed by `remove_stale`. Before, pid 0 and pids beyond `i32::MAX` were taken for
/// live (the pid did not parse, or named no single process) and such junk stayed for good,
/// while a pid just above `pid_max` was removed. Failed without the fix: 2 removed, not 6.
#[test]
fn remove_stale_removes_pairs_of_pids_no_process_can_have() {
    let dir = scratch();
    let path = dir.join("server");
    let listener = Listener::bind(&path).unwrap();
    for pid in ["0", "4194399", "99999999999"] {
        for suffix in ["c2s", "s2c"] {
            Fifo::create(format!("{}.{pid}.7.{suffix}", path.display()))
                .unwrap()
                .keep();
        }
    }
    assert_eq!(listener.remove_stale().unwrap(), 6);
    assert_eq!(entries(dir.path()), ["server"]);
}
