//! Hostile file names against the inventory: names that are not UTF-8, in the shared memory
//! directory and in the paths a live process maps.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ipc_core::inventory::{self, Options};
use ipc_testkit::{Ctx, TempDir, roles, spawn};

/// A file name that is not UTF-8.
fn non_utf8(stem: &str) -> PathBuf {
    let mut bytes = stem.as_bytes().to_vec();
    bytes.push(0xff);
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// Scans `shm_dir` as the shared memory directory, and nothing else of the filesystem.
fn scan(shm_dir: &Path) -> inventory::Inventory {
    inventory::scan(&Options {
        dirs: Vec::new(),
        depth: 0,
        shm_dir: shm_dir.to_owned(),
    })
}

/// A shared memory object whose name is not UTF-8 was listed under its lossy form
/// (`\xff` read as U+FFFD), and `posix_name` returned that form: the name of another object,
/// which a squatter can create. `ipc list` reads the header of the object `posix_name` names
/// and `ipc clean` removes by path, so a squatter's header (users all dead) could make a live
/// object with a non-UTF-8 name look stale and be removed. `posix_name` must be `None` for a
/// name no `PosixName` can hold, and name only the object whose file it is.
#[test]
fn an_object_whose_name_is_not_utf8_has_no_posix_name() {
    let dir = TempDir::new("inventory-names");
    let odd = non_utf8("seg-");
    std::fs::write(dir.path().join(&odd), b"x").unwrap();
    std::fs::write(dir.path().join("seg-\u{fffd}"), b"y").unwrap();
    let inv = scan(dir.path());
    let ours: Vec<_> = inv
        .objects
        .iter()
        .filter(|o| o.path.as_deref().is_some_and(|p| p.starts_with(dir.path())))
        .collect();
    assert_eq!(ours.len(), 2, "{ours:#?}");
    for o in ours {
        let file = o.path.as_ref().unwrap().file_name().unwrap();
        match file.to_str() {
            None => assert_eq!(o.posix_name(), None, "{o:#?}"),
            Some(name) => assert_eq!(
                o.posix_name().map(|n| n.to_string()),
                Some(format!("/{name}")),
                "{o:#?}"
            ),
        }
    }
}

/// Role `DIR`: maps `DIR/seg` and a file of `DIR` whose name is not UTF-8, closes both
/// descriptors (the mappings stay) and parks.
fn maps_and_parks(ctx: &Ctx) {
    let dir = Path::new(ctx.arg());
    for name in [PathBuf::from("seg"), non_utf8("poison-")] {
        let f = std::fs::File::open(dir.join(name)).unwrap();
        // SAFETY: a new shared read-only mapping of a 4096-byte file, chosen by the kernel;
        // it is never dereferenced and stays until the process dies.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    }
    ctx.park("mapped");
}

/// A live process maps an object (its descriptor closed) and, besides, any file whose path is
/// not UTF-8. The scan read `/proc/PID/maps` as a `String`, which failed for the whole file,
/// so none of the process's mappings counted: the object it maps showed no holder (the
/// first condition of a stale verdict).
#[test]
fn a_mapping_is_a_holder_whatever_else_the_process_maps() {
    let dir = TempDir::new("inventory-maps");
    for name in [PathBuf::from("seg"), non_utf8("poison-")] {
        std::fs::write(dir.path().join(name), vec![0u8; 4096]).unwrap();
    }
    let mut child = spawn("maps_and_parks")
        .arg(dir.path().to_str().unwrap())
        .start();
    child.wait_checkpoint("mapped");
    let inv = scan(dir.path());
    let seg = dir.path().join("seg");
    let o = inv
        .objects
        .iter()
        .find(|o| o.path.as_deref() == Some(seg.as_path()))
        .expect("the segment is listed");
    assert!(o.holders.contains(&child.pid()), "{o:#?}");
    assert!(child.kill_and_wait().killed());
}

/// Role `DIR`: binds Unix sockets at `DIR/sock et` (a space in the name) and at a path of
/// `DIR` that is not UTF-8, and parks listening.
fn binds_and_parks(ctx: &Ctx) {
    let dir = Path::new(ctx.arg());
    let _a = std::os::unix::net::UnixListener::bind(dir.join("sock et")).unwrap();
    let _b = std::os::unix::net::UnixListener::bind(dir.join(non_utf8("sock-"))).unwrap();
    ctx.park("bound");
}

/// A socket a live process is listening on is in use (its path is in `/proc/net/unix`). The
/// scan read that table as a `String`, so one bound path that is not UTF-8, anybody's in this
/// network namespace, made every socket look unbound; and it took the path as the eighth
/// whitespace-separated field, so a path with a space never matched.
#[test]
fn a_bound_socket_is_in_use_whatever_its_name_and_the_others() {
    let dir = TempDir::new("inventory-sockets");
    let mut child = spawn("binds_and_parks")
        .arg(dir.path().to_str().unwrap())
        .start();
    child.wait_checkpoint("bound");
    let inv = inventory::scan(&Options {
        dirs: vec![dir.path().to_owned()],
        depth: 0,
        shm_dir: dir.path().join("no-shm-here"),
    });
    for name in [PathBuf::from("sock et"), non_utf8("sock-")] {
        let path = dir.path().join(name);
        let o = inv
            .objects
            .iter()
            .find(|o| o.path.as_deref() == Some(path.as_path()))
            .unwrap_or_else(|| panic!("{} is listed", path.display()));
        assert_eq!(o.verdict, inventory::Verdict::InUse, "{o:#?}");
    }
    assert!(child.kill_and_wait().killed());
}

roles!(maps_and_parks, binds_and_parks);
