//! Out of descriptors at every step, for every mechanism: each constructor and operation that
//! makes a descriptor is run with exactly k more descriptors free under `RLIMIT_NOFILE`, for
//! k = 0, 1, 2, ... until it succeeds. At every k it must either succeed fully or fail with
//! `LimitExceeded` naming `RLIMIT_NOFILE`, and leave nothing behind: the same descriptors open
//! as before, no new names in `/dev/shm`, `/dev/mqueue` or the test's directory (FIFOs,
//! socket files); and an endpoint that worked before the failure still works, with nothing it
//! had queued lost.
//!
//! One helper ([`sweep`]) iterates k; each operation is a closure ([`Case`]) that prepares
//! with room, makes its attempt inside [`Squeeze::run`] (the table filled with copies of
//! `/dev/null`, then k of them closed), and checks what came out with room again. Every case
//! runs in a child role, whose lowered limit no other test shares.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender, Readiness, Result};
use ipc_testkit::{Ctx, TempDir, roles, spawn, unique_name, unique_posix_name};
use rustix::io::Errno;

/// The soft `RLIMIT_NOFILE` each child runs under: low, so that filling the table is cheap.
const NOFILE: u64 = 64;

/// The most descriptors any operation here needs: a sweep that has not succeeded by then fails.
const MAX_K: usize = 12;

fn secs(n: u64) -> Deadline {
    Deadline::after(Duration::from_secs(n))
}

/// The descriptor table squeezed to exactly `k` free slots around one attempt.
struct Squeeze {
    k: usize,
    null: OwnedFd,
}

impl Squeeze {
    /// Fills every free slot below the limit with a copy of `/dev/null`, frees `k` of them,
    /// runs `f`, and frees the rest again: `f` runs with exactly `k` descriptors to spare.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut held = Vec::new();
        loop {
            match rustix::io::fcntl_dupfd_cloexec(&self.null, 0) {
                Ok(fd) => held.push(fd),
                Err(Errno::MFILE) => break,
                Err(e) => panic!("dup: {e}"),
            }
        }
        assert!(held.len() >= self.k, "too few slots to free {}", self.k);
        held.truncate(held.len() - self.k);
        let r = f();
        drop(held);
        r
    }
}

/// One operation: prepares with room, makes its attempt with [`Squeeze::run`], checks the
/// endpoints it made before the attempt still work, and returns the attempt's result.
type Case<'a> = Box<dyn FnMut(&Squeeze) -> Result<()> + 'a>;

/// The open descriptors (numbers and what they point at) of this process.
fn open_fds() -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            // The directory's own descriptor is gone by now.
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().into_string().unwrap(),
                target.display().to_string(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// The names this process made (`unique_name`s carry its pid) in each directory a mechanism
/// makes names in; other tests of the run share `/dev/shm` and `/dev/mqueue`.
fn names(dirs: &[PathBuf]) -> Vec<String> {
    let mine = format!("-{}-", std::process::id());
    let mut v = Vec::new();
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(d) {
            v.extend(
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&mine))
                    .map(|n| format!("{}/{n}", d.display())),
            );
        }
    }
    v.sort();
    v
}

/// Lowers the soft `RLIMIT_NOFILE` to [`NOFILE`] (the hard limit kept).
fn lower_nofile() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let max = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(NOFILE),
            maximum: max,
        },
    )
    .unwrap();
}

/// Runs `case` with k = 0, 1, ... free descriptors until it succeeded twice in a row; returns
/// what went wrong, one line each.
fn sweep(what: &str, dirs: &[PathBuf], mut case: Case<'_>) -> Vec<String> {
    let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let mut failures = Vec::new();
    let mut successes = 0;
    for k in 0..=MAX_K {
        let fds = open_fds();
        let before = names(dirs);
        let squeeze = Squeeze {
            k,
            null: null.try_clone().unwrap(),
        };
        let r = case(&squeeze);
        drop(squeeze);
        match &r {
            Ok(()) => successes += 1,
            Err(e) => {
                successes = 0;
                eprintln!("{what}, {k} free: {e}");
                let named = e.limit_info().is_some_and(|l| l.knob == "RLIMIT_NOFILE");
                if e.kind() != ErrorKind::LimitExceeded || !named {
                    failures.push(format!(
                        "{what}, {k} free: not LimitExceeded naming RLIMIT_NOFILE: {:?}: {e}",
                        e.kind()
                    ));
                }
            }
        }
        let fds_after = open_fds();
        if fds_after != fds {
            failures.push(format!(
                "{what}, {k} free ({}): descriptors before {fds:?}, after {fds_after:?}",
                if r.is_ok() { "succeeded" } else { "failed" }
            ));
        }
        let after = names(dirs);
        if after != before {
            failures.push(format!(
                "{what}, {k} free: names before {before:?}, after {after:?}"
            ));
        }
        if successes == 2 {
            eprintln!("{what}: needs {} descriptors", k - 1);
            return failures;
        }
    }
    failures.push(format!("{what}: never succeeded with up to {MAX_K} free"));
    failures
}

/// Sweeps every case of `cases` and fails naming each case that misbehaved.
fn sweep_all(dirs: &[PathBuf], cases: Vec<(&str, Case<'_>)>) {
    lower_nofile();
    let mut failures = Vec::new();
    for (what, case) in cases {
        failures.extend(sweep(what, dirs, case));
    }
    for f in &failures {
        eprintln!("FAIL: {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    eprintln!("checked");
}

/// `/dev/shm`, `/dev/mqueue` and `dir`: where names could be left.
fn name_dirs(dir: &Path) -> Vec<PathBuf> {
    vec!["/dev/shm".into(), "/dev/mqueue".into(), dir.to_path_buf()]
}

/// A message through `tx` arrives intact at `rx`.
fn round_trip(tx: &mut impl MessageSender, rx: &mut impl MessageReceiver, msg: &[u8]) {
    tx.send_deadline(msg, secs(10)).unwrap();
    let mut buf = [0u8; 256];
    let n = rx.recv_deadline(&mut buf, secs(10)).unwrap();
    assert_eq!(&buf[..n], msg);
}

/// `rx` receives exactly `msg` next.
fn expect(rx: &mut impl MessageReceiver, msg: &[u8]) {
    let mut buf = [0u8; 256];
    let n = rx.recv_deadline(&mut buf, secs(10)).unwrap();
    assert_eq!(&buf[..n], msg);
}

// ---- roles ----

/// Anonymous pipes (ipc-pipe).
fn pipes(ctx: &Ctx) {
    use std::io::{Read, Write};
    let dirs = name_dirs(Path::new(ctx.arg()));
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "ipc_pipe::pipe",
            Box::new(|s| {
                let (mut r, mut w) = s.run(ipc_pipe::pipe)?;
                w.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                r.read_exact(&mut b).unwrap();
                Ok(())
            }),
        ),
        (
            "ipc_pipe::packet_pipe",
            Box::new(|s| s.run(ipc_pipe::packet_pipe).map(drop)),
        ),
        (
            "ipc_pipe::channel",
            Box::new(|s| {
                let (mut tx, mut rx) = s.run(|| ipc_pipe::channel(ipc_pipe::FrameMode::Atomic))?;
                round_trip(&mut tx, &mut rx, b"pipe");
                Ok(())
            }),
        ),
        (
            "ipc_pipe::duplex",
            Box::new(|s| s.run(ipc_pipe::duplex).map(drop)),
        ),
        (
            "ipc_pipe::duplex_channel",
            Box::new(|s| {
                let (mut a, mut b) =
                    s.run(|| ipc_pipe::duplex_channel(ipc_pipe::FrameMode::Atomic))?;
                round_trip(&mut a, &mut b, b"there");
                round_trip(&mut b, &mut a, b"back");
                Ok(())
            }),
        ),
        (
            "ChildPipes::stdout and spawn",
            Box::new(|s| {
                let (mut r, w) = ipc_pipe::pipe().unwrap();
                let mut child = s.run(|| {
                    let mut pipes = ipc_pipe::ChildPipes::new();
                    pipes.stdout(w)?;
                    let mut cmd = std::process::Command::new("echo");
                    cmd.arg("hi");
                    pipes.spawn(cmd)
                })?;
                assert!(child.wait().unwrap().success());
                let mut got = String::new();
                r.read_to_string(&mut got).unwrap();
                assert_eq!(got, "hi\n");
                Ok(())
            }),
        ),
        (
            "AsyncEndpoint: the first park registers with tokio",
            Box::new(|s| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .unwrap();
                let (mut tx, rx) = ipc_pipe::channel(ipc_pipe::FrameMode::Atomic).unwrap();
                let mut rx = ipc_core::tokio::AsyncEndpoint::new(rx).unwrap();
                let mut buf = [0u8; 64];
                // Empty: the receive parks, which registers (a duplicate of the descriptor).
                let r = s.run(|| {
                    rt.block_on(async {
                        let wait = rx.recv(&mut buf);
                        match tokio::time::timeout(Duration::from_millis(20), wait).await {
                            Ok(Ok(n)) => panic!("received {n} bytes from nowhere"),
                            Ok(Err(e)) => Err(e),
                            Err(_elapsed) => Ok(()),
                        }
                    })
                });
                // The endpoint goes on either way.
                tx.send(b"after").unwrap();
                let n = rt.block_on(rx.recv(&mut buf)).unwrap();
                assert_eq!(&buf[..n], b"after");
                r
            }),
        ),
        (
            "PipeReceiver readiness_fd",
            Box::new(|s| {
                let (mut tx, mut rx) = ipc_pipe::channel(ipc_pipe::FrameMode::Atomic).unwrap();
                tx.send(b"queued").unwrap();
                let r = s.run(|| rx.readiness_fd().map(|_| ()));
                expect(&mut rx, b"queued");
                r
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

/// Shared memory segments and descriptor passing of memfds (ipc-shm).
fn shm_segments(ctx: &Ctx) {
    use ipc_shm::{MemfdOptions, OpenOptions, Segment};
    let dirs = name_dirs(Path::new(ctx.arg()));
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "Segment::create",
            Box::new(|s| {
                let name = unique_posix_name("nofile-seg");
                let seg = s.run(|| Segment::create(name.as_str(), 4096))?;
                let seg = seg.remove_on_drop();
                seg.write_at(0, b"x").unwrap();
                Ok(())
            }),
        ),
        (
            "Segment::open",
            Box::new(|s| {
                let name = unique_posix_name("nofile-open");
                let seg = Segment::create(name.as_str(), 4096)
                    .unwrap()
                    .remove_on_drop();
                seg.write_at(0, b"y").unwrap();
                let other = s.run(|| OpenOptions::new().open(name.as_str()))?;
                let mut b = [0u8; 1];
                other.read_at(0, &mut b).unwrap();
                assert_eq!(&b, b"y");
                Ok(())
            }),
        ),
        (
            "Segment::memfd",
            Box::new(|s| s.run(|| Segment::memfd("nofile", 4096)).map(drop)),
        ),
        (
            "MemfdOptions huge_pages",
            Box::new(|s| {
                match s.run(|| {
                    MemfdOptions::new()
                        .huge_pages(true)
                        .create("nofile-huge", 1)
                }) {
                    Ok(_) => Ok(()),
                    // No huge pages reserved here: a limit, but not this sweep's.
                    Err(e)
                        if e.kind() == ErrorKind::LimitExceeded
                            && e.limit_info().is_some_and(|l| l.knob.contains("HugePages")) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }),
        ),
        (
            "Segment::recv_fd",
            Box::new(|s| {
                let (a, b) = unix_pair();
                let seg = Segment::memfd("nofile-passed", 4096).unwrap();
                seg.write_at(0, b"z").unwrap();
                seg.send_fd(&a).unwrap();
                let got = s.run(|| Segment::recv_fd(&b))?;
                let mut buf = [0u8; 1];
                got.read_at(0, &mut buf).unwrap();
                assert_eq!(&buf, b"z");
                Ok(())
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

/// A connected pair of Unix seqpacket sockets, close-on-exec.
fn unix_pair() -> (OwnedFd, OwnedFd) {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

/// Channels, publish-subscribe and MPSC over shared memory (ipc-shm): create, open each end,
/// its doorbell, and a wait that watches the peer's process.
fn shm_channels(ctx: &Ctx) {
    use ipc_shm::{ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, PubSubOptions};
    use ipc_shm::{Publisher, Receiver, Sender, Subscriber};
    let dirs = name_dirs(Path::new(ctx.arg()));
    // The peer watcher's thread and epoll descriptor live as long as the process: start them
    // before any count (a channel pair whose receiver waits on a live sender).
    let (mut tx0, mut rx0) = ChannelOptions::new().pair().unwrap();
    assert_eq!(
        rx0.recv_timeout(&mut [0u8; 8], Duration::from_millis(1))
            .unwrap_err()
            .kind(),
        ErrorKind::TimedOut
    );
    round_trip(&mut tx0, &mut rx0, b"warm");
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "ChannelOptions::create_posix",
            Box::new(|s| {
                let name = unique_posix_name("nofile-chan");
                let seg = s.run(|| ChannelOptions::new().create_posix(name.as_str()))?;
                drop(seg.remove_on_drop());
                Ok(())
            }),
        ),
        (
            "ChannelOptions::pair",
            Box::new(|s| {
                let (mut tx, mut rx) = s.run(|| ChannelOptions::new().pair())?;
                round_trip(&mut tx, &mut rx, b"pair");
                Ok(())
            }),
        ),
        (
            "Receiver::open",
            Box::new(|s| {
                let seg =
                    std::sync::Arc::new(ChannelOptions::new().create_memfd("nofile-rx").unwrap());
                let mut tx = Sender::open(seg.clone()).unwrap();
                tx.send(b"queued").unwrap();
                let mut rx = s.run(|| Receiver::open(seg.clone()))?;
                expect(&mut rx, b"queued");
                round_trip(&mut tx, &mut rx, b"after");
                Ok(())
            }),
        ),
        (
            "a wait that watches the peer's process",
            Box::new(|s| {
                // Fresh ends each time: the first wait of a receiver opens the pidfd.
                let (mut tx, mut rx) = ChannelOptions::new().pair().unwrap();
                let mut buf = [0u8; 64];
                let r = s.run(|| rx.recv_timeout(&mut buf, Duration::from_millis(200)));
                let r = match r {
                    Err(e) if e.kind() == ErrorKind::TimedOut => Ok(()),
                    Err(e) => Err(e),
                    Ok(n) => panic!("received {n} bytes from nowhere"),
                };
                // Refused or not, the receiver goes on.
                round_trip(&mut tx, &mut rx, b"after");
                r
            }),
        ),
        (
            "Receiver readiness_fd",
            Box::new(|s| {
                let (mut tx, mut rx) = ChannelOptions::new().pair().unwrap();
                tx.send(b"queued").unwrap();
                let r = s.run(|| rx.readiness_fd().map(|_| ()));
                expect(&mut rx, b"queued");
                round_trip(&mut tx, &mut rx, b"after");
                r
            }),
        ),
        (
            "Sender readiness_fd",
            Box::new(|s| {
                let (mut tx, mut rx) = ChannelOptions::new().pair().unwrap();
                tx.send(b"queued").unwrap();
                let r = s.run(|| tx.readiness_fd().map(|_| ()));
                expect(&mut rx, b"queued");
                round_trip(&mut tx, &mut rx, b"after");
                r
            }),
        ),
        (
            "PubSubOptions::create_posix",
            Box::new(|s| {
                let name = unique_posix_name("nofile-ps");
                let seg = s.run(|| PubSubOptions::new().create_posix(name.as_str()))?;
                drop(seg.remove_on_drop());
                Ok(())
            }),
        ),
        (
            "Publisher::open, Subscriber::open",
            Box::new(|s| {
                let seg =
                    std::sync::Arc::new(PubSubOptions::new().create_memfd("nofile-ps").unwrap());
                let (mut publ, mut sub) = s.run(|| {
                    let p = Publisher::open(seg.clone())?;
                    let sub = Subscriber::open(seg.clone())?;
                    Ok::<_, ipc_core::Error>((p, sub))
                })?;
                round_trip(&mut publ, &mut sub, b"news");
                Ok(())
            }),
        ),
        (
            "Subscriber join and readiness_fd",
            Box::new(|s| {
                let seg =
                    std::sync::Arc::new(PubSubOptions::new().create_memfd("nofile-ps").unwrap());
                let mut publ = Publisher::open(seg.clone()).unwrap();
                let mut first = Subscriber::open(seg.clone()).unwrap();
                publ.send(b"queued").unwrap();
                let r = s.run(|| {
                    let mut sub = Subscriber::open(seg.clone())?;
                    sub.readiness_fd()?;
                    Ok(sub)
                });
                expect(&mut first, b"queued");
                publ.send(b"after").unwrap();
                expect(&mut first, b"after");
                r.map(|mut sub| expect(&mut sub, b"after"))
            }),
        ),
        (
            "MpscOptions::create_posix",
            Box::new(|s| {
                let name = unique_posix_name("nofile-mpsc");
                let seg = s.run(|| MpscOptions::new().create_posix(name.as_str()))?;
                drop(seg.remove_on_drop());
                Ok(())
            }),
        ),
        (
            "MpscConsumer::open, MpscProducer::open",
            Box::new(|s| {
                let seg =
                    std::sync::Arc::new(MpscOptions::new().create_memfd("nofile-mpsc").unwrap());
                let mut first = MpscProducer::open(seg.clone()).unwrap();
                first.send(b"queued").unwrap();
                let mut c = s.run(|| MpscConsumer::open(seg.clone()))?;
                expect(&mut c, b"queued");
                let mut p = s.run(|| MpscProducer::open(seg.clone()))?;
                round_trip(&mut p, &mut c, b"second");
                round_trip(&mut first, &mut c, b"first");
                Ok(())
            }),
        ),
        (
            "MpscConsumer and MpscProducer readiness_fd",
            Box::new(|s| {
                let seg =
                    std::sync::Arc::new(MpscOptions::new().create_memfd("nofile-mpsc").unwrap());
                let mut p = MpscProducer::open(seg.clone()).unwrap();
                let mut c = MpscConsumer::open(seg.clone()).unwrap();
                p.send(b"queued").unwrap();
                let r = s.run(|| c.readiness_fd().map(drop));
                let r = r.and_then(|()| s.run(|| p.readiness_fd().map(drop)));
                expect(&mut c, b"queued");
                round_trip(&mut p, &mut c, b"after");
                r
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

/// Unix seqpacket/stream and TCP listeners, connections and descriptor passing (ipc-socket).
fn sockets(ctx: &Ctx) {
    use ipc_socket::{Address, Listener, Options, Seqpacket, Stream};
    let dir = PathBuf::from(ctx.arg());
    let dirs = name_dirs(&dir);
    let opts = Options::new();
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "seqpacket Listener::bind (path)",
            Box::new(|s| {
                let path = dir.join(unique_name("sock"));
                let l = s.run(|| Listener::<Seqpacket>::bind(&Address::path(&path), &opts))?;
                let mut c = Seqpacket::connect(&Address::path(&path), &opts, secs(10)).unwrap();
                let mut a = l.accept(secs(10)).unwrap();
                round_trip(&mut c, &mut a, b"bound");
                Ok(())
            }),
        ),
        (
            "stream Listener::bind (abstract)",
            Box::new(|s| {
                let addr = Address::abstract_name(unique_name("sock"));
                s.run(|| Listener::<Stream>::bind(&addr, &opts)).map(drop)
            }),
        ),
        (
            "tcp Listener::bind",
            Box::new(|s| {
                let addr = Address::Inet("127.0.0.1:0".parse().unwrap());
                s.run(|| Listener::<Stream>::bind(&addr, &opts)).map(drop)
            }),
        ),
        (
            "seqpacket connect (path)",
            Box::new(|s| {
                let addr = Address::path(dir.join(unique_name("sock")));
                let l = Listener::<Seqpacket>::bind(&addr, &opts).unwrap();
                let mut c = s.run(|| Seqpacket::connect(&addr, &opts, secs(10)))?;
                let mut a = l.accept(secs(10)).unwrap();
                round_trip(&mut c, &mut a, b"connected");
                Ok(())
            }),
        ),
        (
            "seqpacket accept (path)",
            Box::new(|s| {
                let addr = Address::path(dir.join(unique_name("sock")));
                let l = Listener::<Seqpacket>::bind(&addr, &opts).unwrap();
                let c = Seqpacket::connect(&addr, &opts, secs(10)).unwrap();
                accept_keeps_queued(s, c, &l)
            }),
        ),
        (
            "stream connect (abstract)",
            Box::new(|s| {
                let addr = Address::abstract_name(unique_name("sock"));
                let l = Listener::<Stream>::bind(&addr, &opts).unwrap();
                let mut c = s.run(|| Stream::connect(&addr, &opts, secs(10)))?;
                let mut a = l.accept(secs(10)).unwrap();
                round_trip(&mut c, &mut a, b"connected");
                Ok(())
            }),
        ),
        (
            "stream accept (abstract)",
            Box::new(|s| {
                let addr = Address::abstract_name(unique_name("sock"));
                let l = Listener::<Stream>::bind(&addr, &opts).unwrap();
                let c = Stream::connect(&addr, &opts, secs(10)).unwrap();
                accept_keeps_queued(s, c, &l)
            }),
        ),
        (
            "tcp connect",
            Box::new(|s| {
                let any = Address::Inet("127.0.0.1:0".parse().unwrap());
                let l = Listener::<Stream>::bind(&any, &opts).unwrap();
                let addr = l.local_addr().unwrap();
                let mut c = s.run(|| Stream::connect(&addr, &opts, secs(10)))?;
                let mut a = l.accept(secs(10)).unwrap();
                round_trip(&mut c, &mut a, b"connected");
                Ok(())
            }),
        ),
        (
            "tcp accept",
            Box::new(|s| {
                let any = Address::Inet("127.0.0.1:0".parse().unwrap());
                let l = Listener::<Stream>::bind(&any, &opts).unwrap();
                let c = Stream::connect(&l.local_addr().unwrap(), &opts, secs(10)).unwrap();
                accept_keeps_queued(s, c, &l)
            }),
        ),
        (
            "Seqpacket::pair, Stream::pair",
            Box::new(|s| {
                let (mut a, mut b) = s.run(|| Seqpacket::pair(256))?;
                round_trip(&mut a, &mut b, b"pair");
                let (mut a, mut b) = s.run(|| Stream::pair(256))?;
                round_trip(&mut a, &mut b, b"pair");
                Ok(())
            }),
        ),
        (
            "recv_with_fds of two descriptors",
            Box::new(|s| {
                let (mut a, mut b) = Seqpacket::pair(256).unwrap();
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
                a.send_with_fds(b"fds", &[r.as_fd(), w.as_fd()], secs(10))
                    .unwrap();
                a.send(b"after").unwrap();
                drop((r, w));
                let mut fds = Vec::new();
                let mut buf = [0u8; 64];
                let r = s.run(|| b.recv_with_fds(&mut buf, &mut fds, secs(10)));
                let r = r.map(|n| {
                    assert_eq!(&buf[..n], b"fds");
                    assert_eq!(fds.len(), 2);
                    rustix::io::write(&fds[1], b"!").unwrap();
                    let mut got = [0u8; 1];
                    rustix::io::read(&fds[0], &mut got).unwrap();
                    assert_eq!(&got, b"!");
                });
                drop(fds);
                expect(&mut b, b"after");
                r
            }),
        ),
        (
            "Seqpacket readiness_fd",
            Box::new(|s| {
                let (mut a, mut b) = Seqpacket::pair(256).unwrap();
                a.send(b"queued").unwrap();
                let r = s.run(|| b.readiness_fd().map(|_| ()));
                expect(&mut b, b"queued");
                r
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

/// Sends a message on `c`, accepts its connection on `l` squeezed, and checks the message
/// arrives: on the connection accepted, or (a refused accept leaves the connection queued) on
/// the one a later accept with room gets.
fn accept_keeps_queued<K>(s: &Squeeze, mut c: K, l: &ipc_socket::Listener<K>) -> Result<()>
where
    K: ipc_socket::Kind + MessageSender + MessageReceiver,
{
    c.send(b"queued").unwrap();
    let (mut a, r) = match s.run(|| l.accept(secs(10))) {
        Ok(a) => (a, Ok(())),
        Err(e) => (l.accept(secs(10)).unwrap(), Err(e)),
    };
    expect(&mut a, b"queued");
    round_trip(&mut a, &mut c, b"back");
    r
}

/// A process whose first shared memory end opens with no descriptor free (it cannot read its
/// own start time then) must not publish a wrong identity: a peer that checks the owner
/// word against `/proc` would take this live process for a dead one. Each kind of end is
/// opened by a fresh child (the identity is computed once per process), then the peer, with
/// room, waits on it: a timeout, not `Disconnected`.
fn first_end_without_descriptors(ctx: &Ctx) {
    use ipc_shm::{ChannelOptions, MpscConsumer, MpscOptions, MpscProducer, Receiver, Sender};
    let seg = std::sync::Arc::new(match ctx.arg() {
        "mpsc" => MpscOptions::new().create_memfd("nofile-first").unwrap(),
        _ => ChannelOptions::new().create_memfd("nofile-first").unwrap(),
    });
    lower_nofile();
    let squeeze = Squeeze {
        k: 0,
        null: OwnedFd::from(std::fs::File::open("/dev/null").unwrap()),
    };
    let mut buf = [0u8; 64];
    let wait = Duration::from_millis(300);
    let e = match ctx.arg() {
        "mpsc" => {
            // Either the consumer opens (and names this process rightly) or it is refused
            // naming the limit; then a producer waits for room it will not get.
            let c = squeeze.run(|| MpscConsumer::open(seg.clone()));
            let mut c = match c {
                Ok(c) => c,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
                    eprintln!("checked: refused naming the limit: {e}");
                    return;
                }
            };
            let mut p = MpscProducer::open(seg.clone()).unwrap();
            p.send(b"one").unwrap();
            expect(&mut c, b"one");
            c.recv_timeout(&mut buf, wait).unwrap_err()
        }
        _ => {
            let tx = squeeze.run(|| Sender::open(seg.clone()));
            let _tx = match tx {
                Ok(tx) => tx,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
                    eprintln!("checked: refused naming the limit: {e}");
                    return;
                }
            };
            let mut rx = Receiver::open(seg.clone()).unwrap();
            rx.recv_timeout(&mut buf, wait).unwrap_err()
        }
    };
    assert_eq!(
        e.kind(),
        ErrorKind::TimedOut,
        "a live peer taken for gone: {e}"
    );
    eprintln!("checked");
}

/// FIFOs (ipc-fifo): create, open each way, the duplex listener's bind.
fn fifos(ctx: &Ctx) {
    let dir = PathBuf::from(ctx.arg());
    let dirs = name_dirs(&dir);
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "Fifo::create",
            Box::new(|s| {
                let path = dir.join(unique_name("fifo"));
                s.run(|| ipc_fifo::Fifo::create(&path)).map(drop)
            }),
        ),
        (
            "OpenOptions open_read (non-blocking), open_write",
            Box::new(|s| {
                let fifo = ipc_fifo::Fifo::create(dir.join(unique_name("fifo"))).unwrap();
                let mut r = s.run(|| {
                    ipc_fifo::OpenOptions::new()
                        .nonblocking(true)
                        .open_read(fifo.path())
                })?;
                let mut w = s.run(|| {
                    ipc_fifo::OpenOptions::new()
                        .nonblocking(true)
                        .open_write(fifo.path())
                })?;
                use std::io::{Read, Write};
                w.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                r.read_exact(&mut b).unwrap();
                Ok(())
            }),
        ),
        (
            "duplex Listener::bind",
            Box::new(|s| {
                let path = dir.join(unique_name("listen"));
                s.run(|| ipc_fifo::Listener::bind(&path)).map(drop)
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

/// POSIX message queues (ipc-mq): create, open, clone, readiness.
fn queues(ctx: &Ctx) {
    use ipc_mq::Access;
    use ipc_mq::posix::Queue;
    let dirs = name_dirs(Path::new(ctx.arg()));
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "Queue::create",
            Box::new(|s| {
                let name = unique_posix_name("nofile-mq");
                let q = s.run(|| Queue::create(name.as_str(), 4, 64))?;
                let _g = q.remove_guard().unwrap();
                Ok(())
            }),
        ),
        (
            "Queue::open, try_clone",
            Box::new(|s| {
                let name = unique_posix_name("nofile-mq");
                let mut q = Queue::create(name.as_str(), 4, 64).unwrap();
                let _g = q.remove_guard().unwrap();
                q.send(b"queued").unwrap();
                let r = s.run(|| {
                    let mut other = Queue::open(name.as_str(), Access::ReadWrite)?;
                    let clone = other.try_clone()?;
                    other.readiness_fd()?;
                    Ok::<_, ipc_core::Error>((other, clone))
                });
                expect(&mut q, b"queued");
                let (mut other, mut clone) = r?;
                round_trip(&mut other, &mut clone, b"between");
                Ok(())
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

/// Named semaphores (ipc-sync): create, open.
fn semaphores(ctx: &Ctx) {
    use ipc_sync::NamedSemaphore;
    let dirs = name_dirs(Path::new(ctx.arg()));
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "NamedSemaphore::create",
            Box::new(|s| {
                let name = unique_posix_name("nofile-sem");
                let sem = s.run(|| NamedSemaphore::create(name.as_str(), 1))?;
                let sem = sem.remove_on_drop();
                sem.try_wait().unwrap();
                Ok(())
            }),
        ),
        (
            "NamedSemaphore::open",
            Box::new(|s| {
                let name = unique_posix_name("nofile-sem");
                let sem = NamedSemaphore::create(name.as_str(), 0)
                    .unwrap()
                    .remove_on_drop();
                sem.post().unwrap();
                let other = s.run(|| NamedSemaphore::open(name.as_str()))?;
                other.try_wait().unwrap();
                Ok(())
            }),
        ),
    ];
    sweep_all(&dirs, cases);
}

roles!(
    fifos,
    queues,
    semaphores,
    pipes,
    shm_segments,
    shm_channels,
    sockets,
    first_end_without_descriptors
);

fn run(role: &str) {
    let dir = TempDir::new("nofile");
    let out = spawn(role).arg(dir.path().to_str().unwrap()).start().wait();
    // What each sweep found (shown with --nocapture).
    eprintln!("{}", out.stderr);
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left in the directory: {left:?}");
}

#[test]
fn fifos_out_of_descriptors_at_every_step() {
    run("fifos");
}

#[test]
fn queues_out_of_descriptors_at_every_step() {
    run("queues");
}

#[test]
fn semaphores_out_of_descriptors_at_every_step() {
    run("semaphores");
}

#[test]
fn pipes_out_of_descriptors_at_every_step() {
    run("pipes");
}

#[test]
fn shm_segments_out_of_descriptors_at_every_step() {
    run("shm_segments");
}

#[test]
fn shm_channels_out_of_descriptors_at_every_step() {
    run("shm_channels");
}

#[test]
fn an_shm_end_first_opened_without_descriptors_is_not_taken_for_dead() {
    for kind in ["channel", "mpsc"] {
        let out = spawn("first_end_without_descriptors")
            .arg(kind)
            .start()
            .wait();
        eprintln!("{kind}: {}", out.stderr);
        assert!(out.stderr.contains("checked"), "{kind}: {}", out.stderr);
    }
}

#[test]
fn sockets_out_of_descriptors_at_every_step() {
    run("sockets");
}
