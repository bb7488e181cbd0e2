//! Hostile tests of ipc-fifo: creating and opening FIFOs with the process out of descriptors
//! (RLIMIT_NOFILE) at every step that needs one, and opens racing a swap of the FIFO for a
//! regular file, a default ACL on the directory trying to widen a new FIFO's exact mode, and
//! a client that sends a listener its hello and goes no further, and a listener accepting
//! with too few descriptors left.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{ConnectOptions, Fifo, Listener, OpenOptions};
use ipc_testkit::{Ctx, TempDir, roles, spawn};
use rustix::io::Errno;

/// Lowers this process's soft `RLIMIT_NOFILE` to 64 (the hard limit kept), so running out of
/// descriptors takes few, and opens `/dev/null` to fill the table with.
fn small_descriptor_table() -> OwnedFd {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let max = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(64),
            maximum: max,
        },
    )
    .unwrap();
    null
}

/// Fails naming what a test left in `dir`.
fn assert_nothing_left(dir: &TempDir) {
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Descriptors of `/dev/null` taken until the process is out of them (`EMFILE`).
fn take_every_descriptor(held: &mut Vec<OwnedFd>, null: &OwnedFd) {
    loop {
        match rustix::io::fcntl_dupfd_cloexec(null, 0) {
            Ok(fd) => held.push(fd),
            Err(Errno::MFILE) => return,
            Err(e) => panic!("dup: {e}"),
        }
    }
}

/// Frees `free` descriptors, runs `op`, drops what it returned, and checks that it left every
/// descriptor it took free again (taking them back counts `free`).
fn with_free(held: &mut Vec<OwnedFd>, null: &OwnedFd, free: usize, op: impl FnOnce()) {
    held.truncate(held.len() - free);
    op();
    let before = held.len();
    take_every_descriptor(held, null);
    assert_eq!(held.len() - before, free, "a descriptor leaked");
}

/// A failure for want of descriptors: `LimitExceeded` naming `RLIMIT_NOFILE` and its value.
fn assert_names_rlimit_nofile(e: &ipc_core::Error, what: &str) {
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{what}: {e}");
    assert!(
        e.to_string().contains("RLIMIT_NOFILE is 64"),
        "{what}: the knob is not named: {e}"
    );
}

fn absent(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// `dir`: with 0 to 5 descriptors left under a soft RLIMIT_NOFILE of 64, creates a FIFO and
/// opens one every way (waiting for no peer): each succeeds, times out for want of a peer, or
/// fails with `LimitExceeded` naming RLIMIT_NOFILE; none leaves a FIFO or a descriptor behind.
fn out_of_descriptors(ctx: &Ctx) {
    let dir = Path::new(ctx.arg());
    let fifo = Fifo::create(dir.join("there")).unwrap();
    let null = small_descriptor_table();
    let mut held = Vec::new();
    take_every_descriptor(&mut held, &null);
    let short = Duration::from_millis(5);
    let mut limited = 0;
    for free in 0..6 {
        let path = dir.join(format!("new-{free}"));
        with_free(&mut held, &null, free, || match Fifo::create(&path) {
            Ok(f) => {
                drop(f);
                assert!(absent(&path), "{free} free: the guard left {path:?}");
            }
            Err(e) => {
                assert_names_rlimit_nofile(&e, &format!("create, {free} free"));
                assert!(absent(&path), "{free} free: a failed create left {path:?}");
                limited += 1;
            }
        });
        type Open<'a> = Box<dyn Fn() -> ipc_core::Result<()> + 'a>;
        let opens: [(&str, Open<'_>); 5] = [
            (
                "non-blocking open_read",
                Box::new(|| {
                    OpenOptions::new()
                        .nonblocking(true)
                        .open_read(fifo.path())
                        .map(drop)
                }),
            ),
            (
                "keep-open open_read",
                Box::new(|| {
                    OpenOptions::new()
                        .nonblocking(true)
                        .keep_open(true)
                        .open_read(fifo.path())
                        .map(drop)
                }),
            ),
            (
                "timed open_read",
                Box::new(|| {
                    OpenOptions::new()
                        .timeout(short)
                        .open_read(fifo.path())
                        .map(drop)
                }),
            ),
            (
                "timed open_write",
                Box::new(|| {
                    OpenOptions::new()
                        .timeout(short)
                        .open_write(fifo.path())
                        .map(drop)
                }),
            ),
            (
                "non-blocking open_write",
                Box::new(|| {
                    OpenOptions::new()
                        .nonblocking(true)
                        .open_write(fifo.path())
                        .map(drop)
                }),
            ),
        ];
        for (what, open) in opens {
            with_free(&mut held, &null, free, || match open() {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::NoPeer) => {}
                Err(e) => {
                    assert_names_rlimit_nofile(&e, &format!("{what}, {free} free"));
                    limited += 1;
                }
            });
        }
    }
    drop(held);
    assert!(limited > 0, "nothing ran out of descriptors");
    eprintln!("checked");
}

/// `path`: as `nobody`, opens the FIFO at `path` for reading and for writing without waiting
/// (any owner accepted): both must be refused by its permissions.
fn nobody_is_refused(ctx: &Ctx) {
    // SAFETY: plain credential calls with valid arguments (an empty group list); glibc applies
    // them to every thread of this child process.
    let rc =
        unsafe { libc::setgroups(0, std::ptr::null()) | libc::setgid(65534) | libc::setuid(65534) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let any = || {
        let mut o = OpenOptions::new();
        o.owner(ipc_fifo::Owner::Any).nonblocking(true);
        o
    };
    let e = any().open_read(ctx.arg()).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "read: {e}");
    // Held open for reading here, so a write open that the mode allowed would succeed.
    let e = any().open_write(ctx.arg()).map(drop).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "write: {e}");
    eprintln!("refused");
}

/// The most descriptors one `accept` needs (two handles, two ends, a scratch pipe), and one.
const ACCEPT_ROUNDS: usize = 8;

/// `path`: binds a listener, then for each number of free descriptors from 0 to
/// [`ACCEPT_ROUNDS`] - 1, with a client's hello queued, accepts: it succeeds, or fails with
/// `LimitExceeded` naming RLIMIT_NOFILE; then, with every descriptor free again, the client is
/// accepted after all. Each accepted client gets a pong for its ping.
fn accept_short_of_descriptors(ctx: &Ctx) {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let path = Path::new(ctx.arg());
    let mut listener = Listener::bind(path).unwrap();
    // A second reader of the listener's FIFO, to see a hello queued without taking it.
    let peek = openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    let null = small_descriptor_table();
    let mut held = Vec::new();
    let mut limited = 0;
    for free in 0..ACCEPT_ROUNDS {
        ctx.checkpoint(&format!("ready {free}"));
        while rustix::io::ioctl_fionread(&peek).unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        take_every_descriptor(&mut held, &null);
        held.truncate(held.len() - free);
        let mut conn = match listener.accept_timeout(ipc_testkit::watchdog()) {
            Ok(conn) => conn,
            Err(e) => {
                assert_names_rlimit_nofile(&e, &format!("accept, {free} free"));
                limited += 1;
                held.clear();
                listener
                    .accept_timeout(ipc_testkit::watchdog())
                    .unwrap_or_else(|e| panic!("{free} free: the client was lost: {e}"))
            }
        };
        held.clear();
        let mut buf = [0; 16];
        let n = conn.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        conn.send(b"pong").unwrap();
    }
    assert!(limited > 0, "accept never ran out of descriptors");
    ctx.checkpoint("done");
}

/// `path`: connects (waiting as long as the watchdog), sends a ping, expects a pong.
fn connect_and_ping(ctx: &Ctx) {
    let mut conn = ConnectOptions::new()
        .timeout(ipc_testkit::watchdog())
        .connect(ctx.arg())
        .unwrap();
    conn.send(b"ping").unwrap();
    let mut buf = [0; 16];
    let n = conn.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
}

/// `path`: under a soft RLIMIT_NOFILE of 64, with 0 to 15 descriptors free, connects to the
/// listener at `path` (a server thread in the parent accepts): each connect succeeds (then a
/// ping gets its pong) or fails with `LimitExceeded` naming RLIMIT_NOFILE, leaking no
/// descriptor.
fn connect_short_of_descriptors(ctx: &Ctx) {
    let path = Path::new(ctx.arg());
    let null = small_descriptor_table();
    let mut held = Vec::new();
    take_every_descriptor(&mut held, &null);
    let (mut limited, mut connected) = (0, 0);
    for free in 0..16 {
        with_free(&mut held, &null, free, || {
            match ConnectOptions::new()
                .timeout(ipc_testkit::watchdog())
                .connect(path)
            {
                Ok(mut conn) => {
                    conn.send(b"ping").unwrap();
                    let mut buf = [0; 16];
                    let n = conn.recv(&mut buf).unwrap();
                    assert_eq!(&buf[..n], b"pong");
                    connected += 1;
                }
                Err(e) => {
                    assert_names_rlimit_nofile(&e, &format!("connect, {free} free"));
                    limited += 1;
                }
            }
        });
    }
    assert!(
        limited > 0 && connected > 0,
        "{limited} limited, {connected} connected"
    );
    eprintln!("checked");
}

roles!(
    out_of_descriptors,
    nobody_is_refused,
    accept_short_of_descriptors,
    connect_and_ping,
    connect_short_of_descriptors
);

/// "Every error concerns one connection attempt": a listener whose process is out of
/// descriptors (RLIMIT_NOFILE) at any step of an accept fails that call with `LimitExceeded`
/// naming the limit, and the client whose hello was queued is still accepted once
/// descriptors are free, never lost (its connect, without a real deadline, would wait for
/// good) nor told to go away.
#[test]
fn an_accept_out_of_descriptors_keeps_the_clients_hello_for_the_next_accept() {
    let dir = TempDir::new("fifo-attack-accept-nofile");
    let path = dir.join("server");
    let mut server = spawn("accept_short_of_descriptors")
        .arg(path.to_str().unwrap())
        .start();
    for free in 0..ACCEPT_ROUNDS {
        server.wait_checkpoint(&format!("ready {free}"));
        spawn("connect_and_ping")
            .arg(path.to_str().unwrap())
            .start()
            .wait_success();
    }
    server.wait_checkpoint("done");
    server.wait_success();
    assert_nothing_left(&dir);
}

/// "`mkfifo` with exactly the mode asked for": in a directory with a default ACL (which takes
/// the umask's place for new files) granting `nobody` everything and the owning group nothing,
/// a FIFO created with mode `0o660` came out `prw-rw----+`: an inherited access ACL whose mask
/// the `chmod` set, so `nobody` could open it for reading and writing (and the owning group,
/// whose bits the mode shows, could not). The FIFO must carry no access ACL of its own, its
/// mode alone deciding; as root, `nobody` is shown refused both ways. Fails without the fix
/// (the ACL is there, and nobody opens the FIFO). Skipped where the filesystem takes no ACLs.
#[test]
fn a_default_acl_on_the_directory_does_not_widen_a_new_fifos_exact_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("fifo-attack-acl");
    let Some(sub) = ipc_testkit::acl::dir_with_default_acl(&dir) else {
        return;
    };
    for mode in [0o660, 0o600, 0o622] {
        let path = sub.join(format!("f{mode:o}"));
        let fifo = ipc_fifo::CreateOptions::new()
            .mode(mode)
            .create(&path)
            .unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{mode:o}");
        let mut buf = [0u8; 256];
        match rustix::fs::lgetxattr(&path, "system.posix_acl_access", &mut buf) {
            Err(Errno::NODATA) => {}
            r => panic!("{mode:o}: the FIFO carries an access ACL beside its exact mode: {r:?}"),
        }
        if mode == 0o660 && rustix::process::geteuid().is_root() {
            // A reader here, so that a write open the mode allowed would not fail for want of
            // one.
            let _reader = fifo
                .open_read_with(OpenOptions::new().nonblocking(true))
                .unwrap();
            let out = spawn("nobody_is_refused")
                .arg(path.to_str().unwrap())
                .start()
                .wait_success();
            assert!(out.stderr.contains("refused"), "{}", out.stderr);
        }
    }
}

/// Out of descriptors at each step of a create or an open (the `O_PATH` handle, the directory,
/// the reopen through `/proc/self/fd`, the scratch pipe of a timed read open, a keep-open
/// write end): the error is `LimitExceeded` naming `RLIMIT_NOFILE` and its value (as a pipe's
/// is), never a bare errno, and a create that fails leaves no FIFO at the path. Failed without
/// the fix: the errors named no knob, and with one descriptor left `Fifo::create` made the FIFO
/// (mkfifoat needs none), failed to take its handle, and left the FIFO behind for nobody to
/// remove (a retry then found the path taken).
#[test]
fn out_of_descriptors_at_any_step_names_rlimit_nofile_and_leaves_nothing() {
    let dir = TempDir::new("fifo-attack-nofile");
    let out = spawn("out_of_descriptors")
        .arg(dir.path().to_str().unwrap())
        .start()
        .wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
    assert_nothing_left(&dir);
}

/// While another thread swaps the name between a FIFO and a regular file as fast as it can
/// (`rename` of fresh hard links over it: the name always exists), opens by path in every
/// mode, blocking ones included (this test holds the FIFO open both ways, so none need wait):
/// each gets the FIFO itself (the very inode, checked with `fstat` on the end it returned) or
/// `WrongType` for the regular file; never the regular file opened as an end, never a hang.
/// Passed on the unchanged code (the type is checked on an `O_PATH` handle and the end opened
/// through it); no test raced the check against the open before. It fails if an open looked
/// the path up a second time after the check.
#[test]
fn a_fifo_swapped_with_a_regular_file_during_opens_is_never_opened_as_the_file() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = TempDir::new("fifo-attack-swap");
    let fifo = Fifo::create(dir.join("fifo")).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"not a pipe").unwrap();
    let fifo_ino = std::fs::metadata(fifo.path()).unwrap().ino();
    // Both ends held here (O_RDWR on a FIFO never waits): no open below waits for a peer.
    let _both = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo.path())
        .unwrap();
    let target = dir.join("target");
    std::fs::hard_link(fifo.path(), &target).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, fifo_path, file, target, dir) = (
            Arc::clone(&stop),
            fifo.path().to_path_buf(),
            file.clone(),
            target.clone(),
            dir.path().to_path_buf(),
        );
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for src in [&file, &fifo_path] {
                    let tmp = dir.join("tmp");
                    std::fs::hard_link(src, &tmp).unwrap();
                    std::fs::rename(&tmp, &target).unwrap();
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let (mut opened, mut refused) = (0, 0);
    let check = move |r: ipc_core::Result<std::os::fd::OwnedFd>, what: &str| -> bool {
        match r {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).unwrap();
                assert_eq!(st.st_ino, fifo_ino, "{what}: opened something else");
                true
            }
            Err(e) => {
                // "is a regular file", or (without /proc, reopening by path) "replaced".
                assert_eq!(e.kind(), ErrorKind::WrongType, "{what}: {e}");
                false
            }
        }
    };
    let target2 = target.clone();
    let (o, r) = ipc_testkit::within_watchdog("opens racing a swap", move || {
        let target = target2;
        for i in 0..1500 {
            let results = [
                (
                    "blocking open_read",
                    OpenOptions::new().open_read(&target).map(OwnedFd::from),
                ),
                (
                    "blocking open_write",
                    OpenOptions::new().open_write(&target).map(OwnedFd::from),
                ),
                (
                    "timed open_read",
                    OpenOptions::new()
                        .timeout(Duration::from_secs(30))
                        .open_read(&target)
                        .map(OwnedFd::from),
                ),
                (
                    "non-blocking open_write",
                    OpenOptions::new()
                        .nonblocking(true)
                        .open_write(&target)
                        .map(OwnedFd::from),
                ),
            ];
            for (what, r) in results {
                if check(r, &format!("{what} #{i}")) {
                    opened += 1;
                } else {
                    refused += 1;
                }
            }
        }
        (opened, refused)
    });
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 0 && o > 0 && r > 0,
        "no race: {swaps} swaps, {o} opened, {r} refused"
    );
}

/// A client that sends a listener its hello (naming a pair it made, its read end open) and
/// never opens its write end: `accept` without a deadline waited for it for good, and every
/// client after it with it. Now that attempt is `TimedOut` after `HANDSHAKE`, and the next
/// `accept` serves the honest client queued behind it. Fails (at the watchdog) with the
/// handshake bounded by the caller's deadline alone.
#[test]
fn a_client_that_stops_after_its_hello_costs_one_attempt_not_the_listener() {
    use ipc_core::{MessageReceiver, MessageSender};
    use ipc_fifo::{Connection, Listener};
    ipc_testkit::within_watchdog("half a handshake", || {
        let dir = TempDir::new("fifo-half-hello");
        let path = dir.join("server");
        let mut listener = Listener::bind(&path).unwrap();
        // The stalling client, by hand: its pair beside the listener, its read end open, its
        // hello sent; then nothing.
        let id = format!("{}.999999", std::process::id());
        let pair = |suffix: &str| {
            let mut name = path.as_os_str().to_os_string();
            name.push(format!(".{id}.{suffix}"));
            std::path::PathBuf::from(name)
        };
        let _c2s = Fifo::create(pair("c2s")).unwrap();
        let _s2c = Fifo::create(pair("s2c")).unwrap();
        let _s2c_read = OpenOptions::new()
            .nonblocking(true)
            .open_read(pair("s2c"))
            .unwrap();
        let mut hello = OpenOptions::new()
            .open_write(&path)
            .unwrap()
            .into_atomic_sender()
            .unwrap();
        hello
            .send(&[b"IFH\x01".as_slice(), id.as_bytes()].concat())
            .unwrap();
        // An honest client queued behind it.
        let honest = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut c = Connection::connect(&path).unwrap();
                c.send(b"after the staller").unwrap();
            }
        });
        let e = listener.accept().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        let mut c = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"after the staller");
        honest.join().unwrap();
    });
}

/// A client out of descriptors at any step of `connect` gets `LimitExceeded` naming
/// RLIMIT_NOFILE, leaks no descriptor and leaves no connection FIFO behind, and the listener
/// goes on serving the attempts that got through. Passed at once (no test ran a client out of
/// descriptors before).
#[test]
fn a_client_out_of_descriptors_at_any_step_names_rlimit_nofile_and_leaves_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new("fifo-attack-connect-nofile");
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Failed clients make failed accepts; only the served ones matter here.
                if let Ok(mut conn) = listener.accept_timeout(Duration::from_millis(20)) {
                    let mut buf = [0; 16];
                    if conn.recv(&mut buf).is_ok() {
                        let _ = conn.send(b"pong");
                    }
                }
            }
            listener
        })
    };
    let out = spawn("connect_short_of_descriptors")
        .arg(path.to_str().unwrap())
        .start()
        .wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
    stop.store(true, Ordering::Relaxed);
    let listener = ipc_testkit::within_watchdog("server thread", move || server.join().unwrap());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["server"], "left behind");
    drop(listener);
}
