//! Every path-named open of ipc-shm against every hostile file type planted at the name in
//! `/dev/shm`: a FIFO (which blocks an open without `O_NONBLOCK` until a writer comes), a
//! Unix socket, a directory, a symbolic link to a regular file and a dangling one, a character
//! device. Each open is refused with a typed error naming the object, never blocks (a watchdog
//! fails the test instead of hanging), and leaves the planted file where it was.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use ipc_core::ErrorKind;
use ipc_shm::{ChannelOptions, OpenOptions, Owner, Segment};
use ipc_testkit::{unique_posix_name, within_watchdog};
use rustix::fs::{CWD, FileType, Mode, mknodat};

/// Removes what a test planted, also when it fails.
struct Planted(Vec<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir(p);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn shm_path(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name.trim_start_matches('/'))
}

/// What to plant, and the word the refusal must use for it.
const KINDS: [(&str, &str); 6] = [
    ("fifo", "FIFO"),
    ("socket", "socket"),
    ("directory", "directory"),
    ("symlink", "symbolic link"),
    ("dangling-symlink", "symbolic link"),
    ("char-device", "device"),
];

/// Plants a `kind` at the shm name `name`; `None` (with a message) when this process may not
/// make it (a device node needs CAP_MKNOD).
fn plant(kind: &str, name: &str, planted: &mut Planted) -> Option<Option<UnixListener>> {
    let path = shm_path(name);
    let mut listener = None;
    match kind {
        "fifo" => mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap(),
        "socket" => listener = Some(UnixListener::bind(&path).unwrap()),
        "directory" => std::fs::create_dir(&path).unwrap(),
        "symlink" => {
            let target = shm_path(&unique_posix_name("shm-target"));
            std::fs::write(&target, vec![0u8; 4096]).unwrap();
            planted.0.push(target.clone());
            std::os::unix::fs::symlink(&target, &path).unwrap();
        }
        "dangling-symlink" => {
            std::os::unix::fs::symlink(shm_path(&unique_posix_name("shm-nowhere")), &path).unwrap()
        }
        "char-device" => {
            // /dev/null's numbers: harmless even if something did open it.
            let dev = rustix::fs::makedev(1, 3);
            if let Err(e) = mknodat(
                CWD,
                &path,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o600),
                dev,
            ) {
                eprintln!("skipped the device case: mknod needs CAP_MKNOD here ({e})");
                return None;
            }
        }
        other => panic!("no kind {other}"),
    }
    planted.0.push(path);
    Some(listener)
}

type Open = fn(&str) -> ipc_core::Result<()>;

/// Every path-named open that must refuse an existing non-segment, and every create (which
/// must find the name taken).
fn opens() -> Vec<(&'static str, Open, ErrorKind)> {
    vec![
        (
            "Segment::open",
            |n| Segment::open(n).map(drop),
            ErrorKind::WrongType,
        ),
        (
            "Segment::open_read_only",
            |n| Segment::open_read_only(n).map(drop),
            ErrorKind::WrongType,
        ),
        (
            "OpenOptions owner Any",
            |n| OpenOptions::new().owner(Owner::Any).open(n).map(drop),
            ErrorKind::WrongType,
        ),
        (
            "OpenOptions read_only owner Any min_len",
            |n| {
                OpenOptions::new()
                    .read_only(true)
                    .owner(Owner::Any)
                    .min_len(1)
                    .open(n)
                    .map(drop)
            },
            ErrorKind::WrongType,
        ),
        (
            "Segment::create",
            |n| Segment::create(n, 4096).map(drop),
            ErrorKind::AlreadyExists,
        ),
        (
            "Segment::create_with_mode",
            |n| Segment::create_with_mode(n, 4096, 0o640).map(drop),
            ErrorKind::AlreadyExists,
        ),
        (
            "ChannelOptions::create_posix",
            |n| {
                ChannelOptions::new()
                    .capacity(4096)
                    .create_posix(n)
                    .map(drop)
            },
            ErrorKind::AlreadyExists,
        ),
    ]
}

#[test]
fn every_path_named_open_refuses_every_hostile_file_type_without_blocking() {
    for (kind, word) in KINDS {
        for (what, open, want) in opens() {
            let name = unique_posix_name("shm-hostile");
            let mut planted = Planted(Vec::new());
            let Some(_listener) = plant(kind, &name, &mut planted) else {
                continue;
            };
            let n = name.clone();
            let r = within_watchdog(&format!("{what} on a planted {kind}"), move || open(&n));
            let e = r.expect_err(&format!("{what} on a planted {kind}"));
            let msg = e.to_string();
            // A device on a `nodev` mount cannot even be opened: refused by the kernel.
            let device_denied = kind == "char-device" && e.kind() == ErrorKind::PermissionDenied;
            assert!(
                e.kind() == want || device_denied,
                "{what} on a planted {kind}: {:?}: {e}",
                e.kind()
            );
            assert!(msg.contains(&name), "{what} on a planted {kind}: {msg}");
            if want == ErrorKind::WrongType && !device_denied {
                assert!(msg.contains(word), "{what} on a planted {kind}: {msg}");
            }
            // The planted file is still there: nothing unlinked what it did not create.
            let still = std::fs::symlink_metadata(shm_path(&name));
            assert!(still.is_ok(), "{what} removed the planted {kind}");
        }
    }
}
