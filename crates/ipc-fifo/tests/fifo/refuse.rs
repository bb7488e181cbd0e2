//! Refusing what is not ours: symbolic links, other file types (without blocking on them) and
//! FIFOs of other users, each a typed error naming the path.

use std::path::Path;

use ipc_core::{Error, ErrorKind};
use ipc_fifo::{Fifo, OpenOptions, Owner};
use ipc_testkit::within_watchdog;

use crate::scratch;

/// Opens `path` both ways with default (blocking) options under the watchdog: a refusal must
/// come at once, never after blocking on the object. Returns both errors.
fn refuse_both(path: &Path) -> [Error; 2] {
    let p = path.to_path_buf();
    within_watchdog("open of a non-FIFO", move || {
        let r = OpenOptions::new().open_read(&p).map(drop).unwrap_err();
        let w = OpenOptions::new().open_write(&p).map(drop).unwrap_err();
        [r, w]
    })
}

fn assert_refused(path: &Path, kind: ErrorKind, words: &str) {
    for e in refuse_both(path) {
        assert_eq!(e.kind(), kind, "{e}");
        let s = e.to_string();
        assert!(s.contains(path.to_str().unwrap()), "names the path: {s}");
        assert!(s.contains(words), "says {words:?}: {s}");
    }
}

#[test]
fn symbolic_links_are_not_followed() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("real")).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(fifo.path(), &link).unwrap();
    assert_refused(&link, ErrorKind::WrongType, "symbolic link");
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    assert_refused(&dangling, ErrorKind::WrongType, "symbolic link");
}

#[test]
fn other_file_types_are_refused_without_blocking() {
    let dir = scratch();
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    assert_refused(&file, ErrorKind::WrongType, "regular file, not a FIFO");

    let sock = dir.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_refused(&sock, ErrorKind::WrongType, "a socket, not a FIFO");

    assert_refused(dir.path(), ErrorKind::WrongType, "a directory, not a FIFO");
    // A device: refused on its type before its owner (root) is even looked at, and never
    // opened for I/O.
    assert_refused(
        Path::new("/dev/null"),
        ErrorKind::WrongType,
        "character device",
    );
}

#[test]
fn missing_paths_are_not_found() {
    let dir = scratch();
    assert_refused(&dir.join("none"), ErrorKind::NotFound, "not found");
}

#[test]
fn fifos_of_other_users_are_refused_unless_allowed() {
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let me = rustix::process::geteuid().as_raw();
    let other = 54_321;
    match rustix::fs::chown(fifo.path(), Some(rustix::fs::Uid::from_raw(other)), None) {
        Ok(()) => {}
        Err(rustix::io::Errno::PERM) => {
            eprintln!("not root: cannot give a FIFO to another user; owner refusal not exercised");
            return;
        }
        Err(e) => panic!("chown: {e}"),
    }
    for e in refuse_both(fifo.path()) {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        let s = e.to_string();
        assert!(s.contains(fifo.path().to_str().unwrap()), "{s}");
        assert!(
            s.contains(&format!("uid {other}")) && s.contains(&format!("uid {me}")),
            "{s}"
        );
    }
    // Allowed explicitly, by uid or for anyone.
    for owner in [Owner::Uid(other), Owner::Any] {
        let r = OpenOptions::new()
            .owner(owner)
            .nonblocking(true)
            .open_read(&fifo)
            .unwrap();
        drop(r);
    }
    let e = OpenOptions::new()
        .owner(Owner::Uid(other + 1))
        .nonblocking(true)
        .open_read(&fifo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
}
