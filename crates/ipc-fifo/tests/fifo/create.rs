//! Creating FIFOs: exact modes despite the umask, AlreadyExists, and the guard's unlink rules.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use ipc_core::ErrorKind;
use ipc_fifo::{CreateOptions, Fifo};
use ipc_testkit::{Ctx, spawn};

use crate::scratch;

fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_fifo(),
        "{} is not a FIFO",
        path.display()
    );
    meta.permissions().mode() & 0o7777
}

/// Role: sets a hostile umask (process-wide, hence a child of its own), creates FIFOs with
/// several modes and checks each came out exactly as asked.
pub(crate) fn create_under_umask(ctx: &Ctx) {
    let dir = Path::new(ctx.arg());
    for umask in [0o077, 0o777, 0o022] {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
        let fifo = Fifo::create(dir.join(format!("default-{umask:o}"))).unwrap();
        assert_eq!(
            mode_of(fifo.path()),
            0o600,
            "default mode under umask {umask:o}"
        );
        for mode in [0o666, 0o620, 0o200, 0o000, 0o777] {
            let f = CreateOptions::new()
                .mode(mode)
                .create(dir.join(format!("m{mode:o}-{umask:o}")))
                .unwrap_or_else(|e| panic!("mode {mode:o} under umask {umask:o}: {e}"));
            assert_eq!(
                mode_of(f.path()),
                mode,
                "mode {mode:o} under umask {umask:o}"
            );
        }
    }
}

#[test]
fn modes_are_exact_whatever_the_umask() {
    let dir = scratch();
    spawn("create_under_umask")
        .arg(dir.path().to_str().unwrap())
        .start()
        .wait_success();
    assert_eq!(
        crate::entries(dir.path()),
        Vec::<String>::new(),
        "guards unlinked everything"
    );
}

#[test]
fn taken_paths_are_already_exists_and_left_alone() {
    let dir = scratch();
    let path = dir.join("f");
    let fifo = Fifo::create(&path).unwrap();
    let e = Fifo::create(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");

    let file = dir.join("file");
    std::fs::write(&file, b"data").unwrap();
    assert_eq!(
        Fifo::create(&file).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"data");

    // A dangling symlink is a taken name too, and its target is not created.
    let link = dir.join("link");
    std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
    assert_eq!(
        Fifo::create(&link).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert!(!dir.join("target").exists());
    drop(fifo);
}

#[test]
fn bad_requests_are_typed_errors() {
    let dir = scratch();
    let e = CreateOptions::new()
        .mode(0o4600)
        .create(dir.join("f"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("0o4600"), "{e}");
    let e = Fifo::create(dir.join("missing").join("f")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("missing"), "{e}");
    assert_eq!(
        Fifo::create("/").unwrap_err().kind(),
        ErrorKind::InvalidName
    );
    assert_eq!(crate::entries(dir.path()), Vec::<String>::new());
}

/// `mkfifo dir/name/` fails (`ENOENT`: a trailing slash names a directory); so must
/// `Fifo::create`, which must not create `dir/name` instead. Likewise a last component `.`.
#[test]
fn a_path_naming_a_directory_is_refused_as_mkfifo_refuses_it() {
    let dir = scratch();
    let trailing = format!("{}/name/", dir.path().display());
    let dot = format!("{}/name/.", dir.path().display());
    for p in [trailing.as_str(), dot.as_str()] {
        let e = Fifo::create(p).map(drop).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName, "{p}: {e}");
        assert!(e.to_string().contains(p), "names the path: {e}");
        assert_eq!(crate::entries(dir.path()), Vec::<String>::new(), "{p}");
    }
    // The shell's mkfifo agrees.
    let out = std::process::Command::new("mkfifo")
        .arg(&trailing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(crate::entries(dir.path()), Vec::<String>::new());
}

#[test]
fn guard_unlinks_on_drop_unless_kept() {
    let dir = scratch();
    let path = dir.join("f");
    drop(Fifo::create(&path).unwrap());
    assert!(!path.exists());

    let kept = Fifo::create(&path).unwrap().keep();
    assert_eq!(kept, path);
    assert_eq!(mode_of(&path), 0o600);
    std::fs::remove_file(&path).unwrap();

    Fifo::create(&path).unwrap().unlink().unwrap();
    assert!(std::fs::symlink_metadata(&path).is_err());

    // Already gone: unlink says so, drop stays quiet.
    let f = Fifo::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(f.unlink().unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn guard_never_unlinks_what_replaced_its_fifo() {
    let dir = scratch();
    let path = dir.join("f");
    let f = Fifo::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    let e = Fifo::unlink(f).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");

    std::fs::remove_file(&path).unwrap();
    let f = Fifo::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let other = Fifo::create(&path).unwrap().keep(); // another FIFO under the same name
    drop(f);
    assert_eq!(
        mode_of(&other),
        0o600,
        "the other FIFO survived the first guard's drop"
    );
}

#[test]
fn ends_keep_working_after_unlink() {
    use std::io::{Read, Write};
    let dir = scratch();
    let fifo = Fifo::create(dir.join("f")).unwrap();
    let mut r = ipc_fifo::OpenOptions::new()
        .nonblocking(true)
        .open_read(&fifo)
        .unwrap();
    let mut w = ipc_fifo::OpenOptions::new()
        .nonblocking(true)
        .open_write(&fifo)
        .unwrap();
    fifo.unlink().unwrap();
    w.write_all(b"still here").unwrap();
    drop(w);
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
}

#[test]
fn the_guard_opens_its_own_fifo_whatever_the_path_names_now() {
    use std::io::{Read, Write};
    let dir = scratch();
    let path = dir.join("f");
    let fifo = Fifo::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"planted").unwrap();
    // By path: the planted file is refused.
    let e = ipc_fifo::OpenOptions::new()
        .nonblocking(true)
        .open_read(&path)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongType);
    // Through the guard: its own FIFO, no lookup.
    let opts = ipc_fifo::OpenOptions::new().nonblocking(true).clone();
    let mut r = fifo.open_read_with(&opts).unwrap();
    let mut w = fifo.open_write_with(&opts).unwrap();
    w.write_all(b"ours").unwrap();
    drop(w);
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "ours");
    drop(fifo);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"planted",
        "the guard left the planted file"
    );
}
