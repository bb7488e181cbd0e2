//! Hostile tests of ipc-fifo: creating and opening FIFOs with the process out of descriptors
//! (RLIMIT_NOFILE) at every step that needs one, and opens racing a swap of the FIFO for a
//! regular file, a default ACL on the directory trying to widen a new FIFO's exact mode, a
//! listener accepting with too few descriptors left; and for the duplex handshake: clients
//! that send a listener their hello and go no further (one, or a burst beyond the backlog), a
//! hello naming a pair in progress, and clients whose pair the server may not open or refuses.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_fifo::{BACKLOG, ConnectOptions, Fifo, HANDSHAKE, Listener, OpenOptions};
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

/// `path`: as `nobody`, binds a listener at `path` taking root's pairs, accepts one client,
/// whose pair (mode `0o600`, root's) it may not open: `PermissionDenied` (or `NotFound` if the
/// client gave up first). Then parks with the listener open, so its client cannot learn
/// anything from the listener going away.
fn listen_as_nobody(ctx: &Ctx) {
    // SAFETY: plain credential calls with valid arguments (an empty group list); glibc applies
    // them to every thread of this child process.
    let rc =
        unsafe { libc::setgroups(0, std::ptr::null()) | libc::setgid(65534) | libc::setuid(65534) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let mut listener = Listener::bind(ctx.arg()).unwrap();
    listener.owner(ipc_fifo::Owner::Uid(0));
    ctx.checkpoint("listening");
    let e = listener
        .accept_timeout(ipc_testkit::watchdog())
        .map(drop)
        .unwrap_err();
    // NotFound: a client with a short deadline gave up (and removed its pair) first.
    assert!(
        matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{e}"
    );
    ctx.park("refused");
}

/// `dir`: with a handshake in progress (a client that stopped after its hello), the process
/// runs out of descriptors; the handshake's timeout passes: `accept` must give it up and say
/// so (`TimedOut`, its two descriptors free again), not fail for want of a descriptor while
/// the stalled handshake keeps holding its own.
fn expire_short_of_descriptors(ctx: &Ctx) {
    let path = Path::new(ctx.arg()).join("server");
    let mut listener = Listener::bind(&path).unwrap();
    let mut hello = hello_sender(&path);
    let idle = IdleClient::new(&path, 0, &mut hello);
    let e = listener
        .accept_deadline(Deadline::Now)
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    let null = small_descriptor_table();
    let mut held = Vec::new();
    take_every_descriptor(&mut held, &null);
    listener.handshake_timeout(Duration::ZERO);
    let e = listener
        .accept_deadline(Deadline::Now)
        .map(drop)
        .unwrap_err();
    assert!(is_handshake_timeout(&e), "{e}");
    assert!(idle.given_up(), "the client was not told");
    // Its two ends were freed (and the listener's scratch pipe, with no handshake left).
    let before = held.len();
    take_every_descriptor(&mut held, &null);
    assert!(held.len() - before >= 2, "{} freed", held.len() - before);
    held.clear();
    eprintln!("checked");
}

roles!(
    expire_short_of_descriptors,
    out_of_descriptors,
    nobody_is_refused,
    listen_as_nobody,
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

/// A client made by hand that sends a listener its hello (its pair beside the listener, its
/// read end of `s2c` open) and then does nothing: a stalled client, or a process that only
/// sends hellos. Its guards remove the pair.
struct IdleClient {
    _c2s: Fifo,
    _s2c: Fifo,
    /// Its end of `s2c` (non-blocking): reads `EAGAIN` while the server has its end open,
    /// end-of-file once the server gave the handshake up.
    s2c_read: ipc_fifo::FifoReader,
}

impl IdleClient {
    /// Sends the hello for id `<our pid>.<n>` to the listener at `path` through `hello`.
    fn new(path: &Path, n: usize, hello: &mut ipc_fifo::FifoSender) -> IdleClient {
        let id = format!("{}.{}", std::process::id(), 900_000 + n);
        let pair = |suffix: &str| {
            let mut name = path.as_os_str().to_os_string();
            name.push(format!(".{id}.{suffix}"));
            std::path::PathBuf::from(name)
        };
        let c2s = Fifo::create(pair("c2s")).unwrap();
        let s2c = Fifo::create(pair("s2c")).unwrap();
        let s2c_read = OpenOptions::new()
            .nonblocking(true)
            .open_read(&s2c)
            .unwrap();
        hello
            .send(&[b"IFH\x01".as_slice(), id.as_bytes()].concat())
            .unwrap();
        IdleClient {
            _c2s: c2s,
            _s2c: s2c,
            s2c_read,
        }
    }

    /// Opens its end of `c2s` (the server has its read end open): its handshake is done.
    fn finish(&self) -> ipc_fifo::FifoWriter {
        OpenOptions::new()
            .nonblocking(true)
            .open_write(self._c2s.path())
            .unwrap()
    }

    /// Whether the server gave its handshake up: `s2c` had a writer, and has none now.
    fn given_up(&self) -> bool {
        let mut b = [0u8; 1];
        match rustix::io::read(&self.s2c_read, &mut b) {
            Ok(0) => true,
            Err(Errno::AGAIN) => false,
            r => panic!("read of s2c: {r:?}"),
        }
    }
}

/// A sender of hellos to the listener at `path`.
fn hello_sender(path: &Path) -> ipc_fifo::FifoSender {
    OpenOptions::new()
        .open_write(path)
        .unwrap()
        .into_atomic_sender()
        .unwrap()
}

/// An honest client of the listener at `path` on a thread: connects and sends `msg`, retrying
/// (a few times) if the listener turned it away, which a short handshake timeout may do to a
/// client that a loaded machine did not run in time.
fn honest_client(path: &Path, msg: &'static [u8]) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        for attempt in 0.. {
            match ConnectOptions::new()
                .timeout(ipc_testkit::watchdog())
                .connect(&path)
            {
                Ok(mut c) => {
                    if c.send(msg).is_ok() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Disconnected && attempt < 5 => {}
                Err(e) => panic!("honest client: {e}"),
            }
        }
    })
}

/// Whether `e` is the error of a handshake given up for its timeout (not of an accept whose
/// own deadline passed).
fn is_handshake_timeout(e: &ipc_core::Error) -> bool {
    e.kind() == ErrorKind::TimedOut && e.to_string().contains("within the handshake timeout")
}

/// Clients that send a listener their hello (naming a pair they made, their read end open) and
/// never open their write end held up every client behind them: `accept` gave each the whole
/// fixed `HANDSHAKE` (5 s) in turn, so the honest client queued behind three of them waited
/// 15 s, and an `accept` returned `TimedOut` three times before it. Now their handshakes wait
/// side by side and the first `accept` returns the honest client, whatever the timeout; the
/// stalled ones are given up after the listener's handshake timeout (their clients see `s2c`
/// hang up), one `TimedOut` each, and then there is nothing left. Failed without the fix
/// (one handshake at a time): the first `accept` waited for the first stalled client.
#[test]
fn clients_that_stop_after_their_hello_hold_up_no_client_behind_them() {
    ipc_testkit::within_watchdog("stalled hellos", || {
        let dir = TempDir::new("fifo-half-hello");
        let path = dir.join("server");
        let mut listener = Listener::bind(&path).unwrap();
        let mut hello = hello_sender(&path);
        let idle: Vec<_> = (0..3)
            .map(|n| IdleClient::new(&path, n, &mut hello))
            .collect();
        let honest = honest_client(&path, b"after the stallers");
        // A timeout no stalled client reaches here, however loaded the machine: they are
        // still in progress when the honest client is accepted.
        listener.handshake_timeout(ipc_testkit::watchdog());
        let mut c = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"after the stallers");
        honest.join().unwrap();
        assert!(
            idle.iter().all(|c| !c.given_up()),
            "stalled clients given up before their timeout"
        );
        listener.handshake_timeout(Duration::from_millis(1));
        for _ in &idle {
            let e = listener.accept().map(drop).unwrap_err();
            assert!(is_handshake_timeout(&e), "{e}");
        }
        assert!(
            idle.iter().all(IdleClient::given_up),
            "a client was not told"
        );
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    });
}

/// The handshake bound is the listener's option: with it short, a burst of stalled hellos
/// costs the timeout per [`BACKLOG`] of them, and the honest client queued behind them all
/// (three backlogs' worth) is accepted well within one default `HANDSHAKE`, which a fixed
/// 5 s bound would need three times over (and a listener serving one hello at a time, 48
/// times). Each stalled hello comes back as exactly one `TimedOut`. No assertion on speed but
/// that generous bound: the expected time is three timeouts of 100 ms.
#[test]
fn a_short_handshake_timeout_turns_a_burst_of_stalled_hellos_away_in_time() {
    ipc_testkit::within_watchdog("a burst of stalled hellos", || {
        let dir = TempDir::new("fifo-hello-burst");
        let path = dir.join("server");
        let mut listener = Listener::bind(&path).unwrap();
        listener.handshake_timeout(Duration::from_millis(100));
        let mut hello = hello_sender(&path);
        let k = 3 * BACKLOG;
        let idle: Vec<_> = (0..k)
            .map(|n| IdleClient::new(&path, n, &mut hello))
            .collect();
        let honest = honest_client(&path, b"behind the burst");
        let by = Deadline::after(HANDSHAKE);
        let mut given_up = 0;
        let mut c = loop {
            match listener.accept_deadline(by) {
                Ok(c) => break c,
                Err(e) if is_handshake_timeout(&e) => given_up += 1,
                Err(e) => panic!(
                    "the honest client was not accepted in time ({given_up} stalled ones turned away): {e}"
                ),
            }
        };
        let mut buf = [0u8; 64];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"behind the burst");
        honest.join().unwrap();
        // Until every stalled client was told (counting is not enough: a loaded machine may
        // have turned the honest client away once too, before its retry).
        while !idle.iter().all(IdleClient::given_up) {
            let e = listener
                .accept_timeout(ipc_testkit::watchdog())
                .map(drop)
                .unwrap_err();
            assert!(is_handshake_timeout(&e), "{e}");
            given_up += 1;
        }
        assert!(
            given_up >= k,
            "{given_up} handshakes given up for {k} stalled clients"
        );
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    });
}

/// An `accept` whose own deadline passes while a handshake is in progress keeps it: the
/// client finishes meanwhile and the next `accept` returns it (before, the attempt was given
/// up with the call, and a server polling with `Deadline::Now` could serve no client that took
/// longer than no time at all). A second hello naming that pair (resent, or sent by another
/// process naming a client's pair), or a pair with one of its FIFOs (a hard link), is refused
/// with `AlreadyExists` and makes no second connection over the same FIFOs.
#[test]
fn a_handshake_outlives_the_accept_that_started_it_and_is_accepted_once() {
    ipc_testkit::within_watchdog("a kept handshake", || {
        let dir = TempDir::new("fifo-kept-handshake");
        let path = dir.join("server");
        let mut listener = Listener::bind(&path).unwrap();
        let mut hello = hello_sender(&path);
        let client = IdleClient::new(&path, 0, &mut hello);
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
        assert!(
            !client.given_up(),
            "the handshake was given up with the call"
        );
        // The same hello again, as a process naming this client's pair would send it.
        hello
            .send(format!("IFH\x01{}.{}", std::process::id(), 900_000).as_bytes())
            .unwrap();
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        // A pair whose c2s is a hard link to that client's s2c (the server's own end writes
        // it: it would take itself for this pair's client).
        let id = format!("{}.{}", std::process::id(), 900_001);
        let crossed = |suffix: &str| dir.join(&format!("server.{id}.{suffix}"));
        std::fs::hard_link(client._s2c.path(), crossed("c2s")).unwrap();
        let s2c = Fifo::create(crossed("s2c")).unwrap();
        let _s2c_read = OpenOptions::new()
            .nonblocking(true)
            .open_read(&s2c)
            .unwrap();
        hello.send(format!("IFH\x01{id}").as_bytes()).unwrap();
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let mut w = client.finish();
        let mut c = listener.accept_deadline(Deadline::Now).unwrap();
        std::io::Write::write_all(&mut w, &[2, 0, 0, 0, b'h', b'i']).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c.recv(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        // No second connection over the same FIFOs.
        let e = listener
            .accept_deadline(Deadline::Now)
            .map(drop)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
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

/// A client whose pair the server may not open (the server runs as another user, the pair's
/// mode is `0o600`) waited for good without a deadline, and until its deadline with one, as
/// `TimedOut`: the server gave the hello up with nothing the client could see. Now the server
/// removes the pair's names (its owner policy allowed the pair; only the mode kept it out)
/// and the client, watching its `c2s`, fails with `Disconnected`. The server parks with its
/// listener open, so the client cannot have learnt it from the listener going away. Fails
/// without the fix (`TimedOut` after the watchdog). As root only (it needs another uid).
#[test]
fn a_client_whose_pair_the_server_may_not_open_is_told_not_left_waiting() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: no other user to run the server as; skipped");
        return;
    }
    let dir = TempDir::new("fifo-pair-mode");
    // The server (nobody) creates its listener and removes names here; not sticky.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("server");
    let mut server = spawn("listen_as_nobody")
        .arg(path.to_str().unwrap())
        .start();
    server.wait_checkpoint("listening");
    let p = path.clone();
    let e = ipc_testkit::within_watchdog("connect", move || {
        ConnectOptions::new()
            .owner(ipc_fifo::Owner::Uid(65534))
            .timeout(ipc_testkit::watchdog())
            .connect(&p)
            .map(drop)
            .unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    server.wait_checkpoint("refused");
    server.kill_and_wait();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The killed server's FIFO; no pair.
    assert_eq!(left, ["server"], "left behind");
}

/// The limit of the above: in a sticky directory (as `/tmp` is) the server may remove only
/// its own files, so a pair it may not open stays, and its client's deadline ends its wait
/// (`TimedOut`), the pair removed by the client. As root only (it needs another uid).
#[test]
fn a_client_whose_pair_the_server_can_neither_open_nor_remove_waits_until_its_deadline() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: no other user to run the server as; skipped");
        return;
    }
    let dir = TempDir::new("fifo-pair-mode-sticky");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.join("server");
    let mut server = spawn("listen_as_nobody")
        .arg(path.to_str().unwrap())
        .start();
    server.wait_checkpoint("listening");
    let p = path.clone();
    let e = ipc_testkit::within_watchdog("connect", move || {
        ConnectOptions::new()
            .owner(ipc_fifo::Owner::Uid(65534))
            .timeout(Duration::from_secs(1))
            .connect(&p)
            .map(drop)
            .unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    server.wait_checkpoint("refused");
    server.kill_and_wait();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["server"], "left behind");
}

/// A client whose pair the server refuses by its owner policy: the server leaves another
/// user's files alone, so it cannot tell the client, and the client's deadline is what ends
/// its wait (`TimedOut`, its pair removed), while the server's `accept` reports the refusal.
#[test]
fn a_client_the_owner_policy_refuses_waits_until_its_deadline_and_no_longer() {
    let dir = TempDir::new("fifo-pair-owner");
    let path = dir.join("server");
    let mut listener = Listener::bind(&path).unwrap();
    listener.owner(ipc_fifo::Owner::Uid(54_321));
    let p = path.clone();
    let client = std::thread::spawn(move || {
        ConnectOptions::new()
            .timeout(Duration::from_secs(3))
            .connect(&p)
            .map(drop)
            .unwrap_err()
    });
    let e = listener
        .accept_timeout(ipc_testkit::watchdog())
        .map(drop)
        .unwrap_err();
    // Refused by the policy; or, on a machine too loaded to look before the client's deadline
    // removed its pair, not found any more. Either way the server touched nothing.
    assert!(
        matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound),
        "{e}"
    );
    let e = ipc_testkit::within_watchdog("connect", move || client.join().unwrap());
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    drop(listener);
    assert_nothing_left(&dir);
}

/// A listener out of descriptors (RLIMIT_NOFILE) with a handshake in progress still gives it
/// up when its timeout passes, which frees that handshake's descriptors. Failed without the
/// fix: every `accept` failed with `LimitExceeded` (the pipe of its check for the client's
/// write end), and the stalled handshake kept its descriptors for as long as the shortage
/// lasted.
#[test]
fn a_listener_out_of_descriptors_still_gives_up_a_stalled_handshake() {
    let dir = TempDir::new("fifo-attack-expire-nofile");
    let out = spawn("expire_short_of_descriptors")
        .arg(dir.path().to_str().unwrap())
        .start()
        .wait_success();
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
    assert_nothing_left(&dir);
}
