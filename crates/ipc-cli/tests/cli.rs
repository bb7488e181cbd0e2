//! The `ipc` binary, run for real: stale objects of a SIGKILLed creator are listed and
//! cleaned, live ones and another user's are not, a scribbled header is reported, and
//! `send`/`recv` talk to programs that use the library.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::ipc;
use ipc_core::{Deadline, MessageReceiver, MessageSender};
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};
use ipc_testkit::{Ctx, TempDir, roles, spawn, unique_posix_name};
use serde_json::Value;

/// Creates a channel named by the argument, opens both of its ends here, and waits to be
/// killed: what a crashed pair of processes leaves behind.
fn channel_then_park(ctx: &Ctx) {
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(ctx.arg())
        .unwrap();
    let _tx = Sender::open(seg).unwrap();
    let _rx = Receiver::open(Segment::open(ctx.arg()).unwrap()).unwrap();
    ctx.park("ready");
}

/// Creates a private System V segment and waits to be killed.
fn sysv_then_park(ctx: &Ctx) {
    let seg = Segment::sysv_create(ipc_shm::Key::PRIVATE, 4096).unwrap();
    std::mem::forget(seg);
    ctx.park("ready");
}

/// Creates a publish-subscribe segment named by the argument, opens its publisher and a
/// subscriber here, and waits to be killed.
fn pubsub_then_park(ctx: &Ctx) {
    let seg = Arc::new(
        ipc_shm::PubSubOptions::new()
            .slots(4)
            .max_message(64)
            .create_posix(ctx.arg())
            .unwrap(),
    );
    let _publisher = ipc_shm::Publisher::open(seg.clone()).unwrap();
    let _subscriber = ipc_shm::Subscriber::open(seg).unwrap();
    ctx.park("ready");
}

/// Creates a many-to-one segment named by the argument, opens its consumer and a producer
/// here, and waits to be killed.
fn mpsc_then_park(ctx: &Ctx) {
    let seg = Arc::new(
        ipc_shm::MpscOptions::new()
            .producers(2)
            .capacity(4096)
            .create_posix(ctx.arg())
            .unwrap(),
    );
    let _consumer = ipc_shm::MpscConsumer::open(seg.clone()).unwrap();
    let _producer = ipc_shm::MpscProducer::open(seg).unwrap();
    ctx.park("ready");
}

/// [`channel_then_park`], run in a PID namespace of its own (a container's process): the pids
/// its channel's header names mean nothing to `ipc`.
fn foreign_channel_then_park(ctx: &Ctx) {
    assert_eq!(
        std::process::id(),
        1,
        "the first process of a new PID namespace"
    );
    channel_then_park(ctx);
}

roles!(
    foreign_channel_then_park,
    channel_then_park,
    sysv_then_park,
    pubsub_then_park,
    mpsc_then_park
);

/// `ipc list --json` (FIFOs and sockets searched in `dir` only): the objects.
fn list(dir: &TempDir) -> Vec<Value> {
    let out = ipc(&["list", "--json", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["objects"].as_array().unwrap().clone()
}

fn find<'a>(objects: &'a [Value], name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["name"] == name)
}

fn verdict(objects: &[Value], name: &str) -> String {
    find(objects, name).map_or("absent".into(), |o| o["verdict"].as_str().unwrap().into())
}

/// A channel left by a dead creator.
fn killed_channel(tag: &str) -> String {
    let name = unique_posix_name(tag);
    let mut child = spawn("channel_then_park").arg(&name).start();
    child.wait_checkpoint("ready");
    assert!(child.kill_and_wait().killed());
    name
}

/// Whether this test runs in an IPC namespace of its own (`cargo xtask isolated`), where
/// every stale object is the run's, so an unnamed `clean --yes` touches nothing else: some
/// ancestor process (the cargo that started xtask) is in another one.
fn private_ipc_namespace() -> bool {
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/ipc")).ok();
    let parent = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("PPid:")?.trim().parse::<u32>().ok())
    };
    let mine = ns(std::process::id());
    let mut pid = std::process::id();
    while let Some(p) = parent(pid).filter(|&p| p > 1) {
        match ns(p) {
            Some(theirs) if Some(&theirs) != mine.as_ref() => return true,
            _ => pid = p,
        }
    }
    false
}

/// Held by the tests that leave stale objects: one of them cleans every stale object of the
/// namespace unnamed (`clean --stale --yes`), which would take the other's from under it
/// (seen: `inspect` of a pub-sub segment listed stale a moment before said "not found").
static STALE_OBJECTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn stale_objects_are_listed_and_cleaned_live_and_foreign_ones_kept() {
    let _one_at_a_time = STALE_OBJECTS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("cli-clean");
    let stale = killed_channel("cli-stale");
    let mut sysv = spawn("sysv_then_park").start();
    sysv.wait_checkpoint("ready");
    let sysv_pid = sysv.pid();
    sysv.kill_and_wait();

    // A live channel: this process holds both ends.
    let live = unique_posix_name("cli-live");
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(live.as_str())
        .unwrap()
        .remove_on_drop();
    let seg = Arc::new(seg);
    let _tx = Sender::open(seg.clone()).unwrap();
    let _rx = Receiver::open(Segment::open(live.as_str()).unwrap()).unwrap();

    // Another user's stale channel (root only: made by a killed process, then given away).
    let root = rustix::process::geteuid().is_root();
    let foreign = root.then(|| {
        let name = killed_channel("cli-foreign");
        std::os::unix::fs::chown(format!("/dev/shm{name}"), Some(65534), Some(65534)).unwrap();
        name
    });
    if !root {
        eprintln!("not root: the case of another user's object is skipped");
    }

    let objects = list(&dir);
    assert_eq!(verdict(&objects, &stale), "stale");
    let o = find(&objects, &stale).unwrap();
    assert_eq!(o["recognised"]["what"], "ipc-shm channel");
    assert_eq!(verdict(&objects, &live), "in-use");
    let sysv_obj = objects
        .iter()
        .find(|o| o["kind"] == "sysv-shm" && o["creator"]["pid"] == sysv_pid)
        .expect("the killed process's System V segment is listed");
    assert_eq!(sysv_obj["verdict"], "stale", "{sysv_obj}");
    let sysv_id = format!("id:{}", sysv_obj["id"]);
    if let Some(f) = &foreign {
        assert_eq!(verdict(&objects, f), "stale");
    }

    // The table and the inspection (printed for the record; the README shows them).
    assert!(
        ipc(&["list", "--dir", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    assert!(ipc(&["inspect", &stale]).status.success());

    // `list --stale` shows exactly the stale ones.
    let out = ipc(&[
        "list",
        "--stale",
        "--kind",
        "shm",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&stale) && !text.contains(&live));

    // A dry run removes nothing.
    let out = ipc(&["clean", "--stale", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would remove") && text.contains(&stale),
        "{text}"
    );
    if let Some(f) = &foreign {
        assert!(text.contains("kept") && text.contains(f.as_str()), "{text}");
    }
    assert_eq!(verdict(&list(&dir), &stale), "stale");

    // With --yes: unnamed where every stale object is this run's, else by name.
    let d = dir.path().to_str().unwrap();
    let out = if private_ipc_namespace() {
        ipc(&["clean", "--stale", "--yes", "--dir", d])
    } else {
        // An id is one per System V kind: say which.
        ipc(&[
            "clean", "--stale", "--yes", "--dir", d, "--kind", "shm", "--kind", "sysv-shm", &stale,
            &sysv_id,
        ])
    };
    assert!(out.status.success());
    let objects = list(&dir);
    assert_eq!(verdict(&objects, &stale), "absent");
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "sysv-shm" && o["creator"]["pid"] == sysv_pid)
    );
    assert_eq!(verdict(&objects, &live), "in-use");
    if let Some(f) = &foreign {
        assert_eq!(
            verdict(&objects, f),
            "stale",
            "another user's object is kept"
        );
        // Root may remove it by name.
        let out = ipc(&["clean", "--stale", "--yes", "--dir", d, f]);
        assert!(out.status.success());
        assert_eq!(verdict(&list(&dir), f), "absent");
    }
}

/// A publish-subscribe and a many-to-one segment left by a SIGKILLed program are recognised,
/// listed as stale and cleaned; a live one of each is kept. (Unrecognised, they stayed
/// "unknown" for good, and `clean --stale` could never remove them.)
#[test]
fn stale_pattern_segments_are_recognised_and_cleaned() {
    let _one_at_a_time = STALE_OBJECTS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("cli-patterns");
    let d = dir.path().to_str().unwrap();
    let mut killed = Vec::new();
    for (role, tag) in [
        ("pubsub_then_park", "cli-pubsub"),
        ("mpsc_then_park", "cli-mpsc"),
    ] {
        let name = unique_posix_name(tag);
        // Removed however the test ends (quietly if `clean` removed it).
        let guard = ipc_core::RemoveGuard::new(ipc_core::Removable::Shm(name.parse().unwrap()));
        let mut child = spawn(role).arg(&name).start();
        child.wait_checkpoint("ready");
        assert!(child.kill_and_wait().killed());
        killed.push((name, guard));
    }
    let live_pubsub = unique_posix_name("cli-live-pubsub");
    let seg = Arc::new(
        ipc_shm::PubSubOptions::new()
            .slots(4)
            .max_message(64)
            .create_posix(live_pubsub.as_str())
            .unwrap()
            .remove_on_drop(),
    );
    let _publisher = ipc_shm::Publisher::open(seg).unwrap();
    let live_mpsc = unique_posix_name("cli-live-mpsc");
    let seg = Arc::new(
        ipc_shm::MpscOptions::new()
            .producers(2)
            .capacity(4096)
            .create_posix(live_mpsc.as_str())
            .unwrap()
            .remove_on_drop(),
    );
    let _consumer = ipc_shm::MpscConsumer::open(seg).unwrap();

    let objects = list(&dir);
    for ((name, _), what) in killed.iter().zip(["ipc-shm pub-sub", "ipc-shm mpsc"]) {
        let o = find(&objects, name).expect("listed");
        assert_eq!(o["recognised"]["what"], what, "{o}");
        assert_eq!(o["verdict"], "stale", "{o}");
        // Held in this PID namespace: no other namespace is named.
        for u in o["recognised"]["users"].as_array().unwrap() {
            assert!(u["pid_namespace"].is_null(), "{u}");
        }
    }
    assert_eq!(verdict(&objects, &live_pubsub), "in-use");
    assert_eq!(verdict(&objects, &live_mpsc), "in-use");
    let out = ipc(&["inspect", &killed[0].0]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("publisher") && text.contains("dead"),
        "{text}"
    );

    let mut args = vec!["clean", "--stale", "--yes", "--dir", d];
    args.extend(killed.iter().map(|(name, _)| name.as_str()));
    assert!(ipc(&args).status.success());
    let objects = list(&dir);
    for (name, _) in &killed {
        assert_eq!(verdict(&objects, name), "absent");
    }
    assert_eq!(verdict(&objects, &live_pubsub), "in-use");
    assert_eq!(verdict(&objects, &live_mpsc), "in-use");
}

#[test]
fn inspect_reports_a_scribbled_header_as_corrupted() {
    let name = unique_posix_name("cli-scribble");
    let seg = ChannelOptions::new()
        .capacity(4096)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    let out = ipc(&["inspect", &name]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ipc-shm channel"));
    // Keep the magic and layout version (the first 12 bytes), scribble the rest of the header.
    seg.write_at(12, &[0xAB; 600]).unwrap();
    let out = ipc(&["inspect", &name]);
    assert_eq!(out.status.code(), Some(6), "exit code 6: corrupted");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CORRUPTED") && text.contains("ipc-shm channel"),
        "{text}"
    );
    let out = ipc(&["list", "--kind", "shm", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = find(v["objects"].as_array().unwrap(), &name).unwrap();
    // This process maps it, so it is in use; the corruption is reported all the same.
    assert_eq!(o["verdict"], "in-use");
    assert!(
        o["recognised"]["corrupted"]
            .as_str()
            .unwrap()
            .contains("header size")
    );
    // Not a channel at all: unrecognised, listed all the same.
    seg.write_at(0, &[0; 12]).unwrap();
    let out = ipc(&["inspect", &name]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unrecognised"));
    assert_eq!(
        ipc(&["inspect", "/ipctest-no-such-object"]).status.code(),
        Some(3)
    );
}

/// Runs `ipc args` with `input` on stdin; returns its output.
fn ipc_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ ipc {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn drain(rx: &mut dyn MessageReceiver, n: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0; rx.max_message_size()];
    (0..n)
        .map(|_| {
            let len = rx.recv_timeout(&mut buf, ipc_testkit::watchdog()).unwrap();
            buf[..len].to_vec()
        })
        .collect()
}

#[test]
fn send_and_recv_with_a_shm_channel() {
    let name = unique_posix_name("cli-shm");
    let seg = ChannelOptions::new()
        .capacity(1 << 14)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    let mut rx = Receiver::open(seg).unwrap();
    let out = ipc_with_input(&["send", &name, "--timeout", "30"], b"hello\n\nworld\n");
    assert!(out.status.success());
    assert_eq!(drain(&mut rx, 3), [&b"hello"[..], b"", b"world"]);
    // Length-delimited: messages may hold newlines.
    let mut input = Vec::new();
    for m in [&b"two\nlines"[..], b"\x00binary\xff"] {
        ipc_core::frame::encode_frame(m, &mut input).unwrap();
    }
    let out = ipc_with_input(&["send", &name, "--length-delimited"], &input);
    assert!(out.status.success());
    assert_eq!(drain(&mut rx, 2), [&b"two\nlines"[..], b"\x00binary\xff"]);

    // The other way: this process sends, `ipc recv` receives (it attaches the receiving end,
    // so this one hands it over first).
    let seg = rx.detach();
    let mut tx = Sender::open(Segment::open(name.as_str()).unwrap()).unwrap();
    tx.send(b"first").unwrap();
    tx.send(b"second").unwrap();
    let out = ipc(&["recv", &name, "-n", "2", "--timeout", "30"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"first\nsecond\n");
    let out = ipc(&["recv", &name, "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(4), "nothing more: timed out");
    drop(seg);
}

#[test]
fn send_and_recv_with_a_fifo_and_a_queue() {
    let dir = TempDir::new("cli-fifo");
    let path = dir.join("fifo");
    let _fifo = ipc_fifo::Fifo::create(&path).unwrap();
    let p = path.to_str().unwrap().to_owned();
    let sender =
        std::thread::spawn(move || ipc_with_input(&["send", &p, "--timeout", "30"], b"a\nbc\n"));
    let mut rx = ipc_fifo::OpenOptions::new()
        .wait(Deadline::after(ipc_testkit::watchdog()))
        .open_read(&path)
        .unwrap()
        .into_receiver(1024)
        .unwrap();
    assert_eq!(drain(&mut rx, 2), [&b"a"[..], b"bc"]);
    assert!(sender.join().unwrap().status.success());
    // Found by its path wherever it is; this process holds it open.
    let out = ipc(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fifo") && text.contains("in-use"), "{text}");

    let name = unique_posix_name("cli-mq");
    let q = ipc_mq::posix::Queue::create(name.as_str(), 4, 128).unwrap();
    let _guard = q.remove_guard().unwrap();
    let out = ipc_with_input(
        &["send", &name, "--kind", "mq", "--timeout", "30"],
        b"queued\n",
    );
    assert!(out.status.success());
    assert_eq!(drain(&mut &q, 1), [b"queued"]);
    (&q).send(b"back").unwrap();
    let out = ipc(&["recv", &name, "-n", "1", "--timeout", "30"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"back\n");
    let out = ipc(&["inspect", &name]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("max messages"));
}

#[test]
fn inspect_recognises_an_ipc_sync_primitive_at_the_start_of_a_segment() {
    use ipc_sync::SharedObject;
    let name = unique_posix_name("cli-sem");
    let seg = Segment::create(name.as_str(), 4096)
        .unwrap()
        .remove_on_drop();
    // SAFETY: the mapping is page-aligned, 4096 bytes, ours alone until the semaphore is
    // made, and stays mapped while `seg` lives; it is only used through the semaphore.
    unsafe { ipc_sync::Semaphore::init_at(seg.as_ptr().cast(), 2) }.unwrap();
    let out = ipc(&["inspect", &name]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ipc-sync Semaphore at offset 0"), "{text}");
    assert!(text.contains("value") && text.contains('2'), "{text}");
}

#[test]
fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ipc(&["completions", shell]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("inspect"));
    }
    assert_eq!(
        ipc(&["completions", "tcsh"]).status.code(),
        Some(2),
        "usage error"
    );
}

#[test]
fn limits_name_every_knob_with_its_value_and_how_to_change_it() {
    let out = ipc(&["limits", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    for k in ipc_core::knob::ALL {
        let row = rows
            .iter()
            .find(|r| r["knob"] == k.label())
            .unwrap_or_else(|| panic!("{} missing", k.label()));
        assert_eq!(row["value"].as_u64(), k.read());
        assert!(row["change"].as_str().unwrap().contains(&k.sysctl()));
    }
    use rustix::process::{Resource, getrlimit};
    for (name, resource) in [
        ("RLIMIT_MSGQUEUE", Resource::Msgqueue),
        ("RLIMIT_NOFILE", Resource::Nofile),
        ("RLIMIT_AS", Resource::As),
        ("RLIMIT_FSIZE", Resource::Fsize),
        ("RLIMIT_NPROC", Resource::Nproc),
    ] {
        let row = rows
            .iter()
            .find(|r| r["knob"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(row["value"].as_u64(), getrlimit(resource).current, "{name}");
        assert!(row["change"].as_str().unwrap().contains("ulimit"), "{name}");
    }
    let msgmni = rows
        .iter()
        .find(|r| r["knob"] == ipc_core::knob::MSGMNI)
        .unwrap();
    assert_eq!(
        msgmni["in_use"].as_u64(),
        ipc_core::sysv::in_use(ipc_core::sysv::SysvKind::MessageQueue)
    );
}

/// A channel whose ends a process in another PID namespace holds (a container sharing
/// `/dev/shm`): `ipc` reads the pids in its header as naming nothing, yet shows both ends
/// attached and alive while that process runs (their presence marks), and dead, the channel
/// stale, once it is killed.
#[test]
fn a_channel_held_from_another_pid_namespace_is_alive_until_its_holder_dies() {
    let _one_at_a_time = STALE_OBJECTS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = TempDir::new("cli-foreign");
    let name = unique_posix_name("cli-foreign");
    // Removed however the test ends (quietly if `clean` removed it).
    let _guard = ipc_core::RemoveGuard::new(ipc_core::Removable::Shm(name.parse().unwrap()));
    let mut child = match spawn("foreign_channel_then_park")
        .arg(&name)
        .pid_namespace()
        .try_start()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipped: no PID namespace can be made here: {e}");
            return;
        }
    };
    child.wait_checkpoint("ready");
    let users = |name: &str| {
        let out = ipc(&["inspect", name, "--json"]);
        assert!(out.status.success(), "{out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["recognised"]["users"]
            .as_array()
            .unwrap_or_else(|| panic!("no users in {v}"))
            .iter()
            .map(|u| {
                (
                    u["role"].as_str().unwrap().to_owned(),
                    u["state"].as_str().unwrap().to_owned(),
                    u["can_use"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    for (role, state, can_use) in users(&name) {
        assert_eq!(
            (state.as_str(), can_use.as_str()),
            ("attached", "alive"),
            "{role}"
        );
    }
    // The pid it shows is said to be another namespace's (it names another process here).
    let out = ipc(&["inspect", &name, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").unwrap().ino()
    };
    for u in v[0]["recognised"]["users"].as_array().unwrap() {
        let ns = u["pid_namespace"]
            .as_u64()
            .unwrap_or_else(|| panic!("no namespace: {u}"));
        assert_ne!(ns, ours, "{u}");
    }
    let text = String::from_utf8_lossy(&ipc(&["inspect", &name]).stdout).into_owned();
    assert!(text.contains("pid 1 in pid:["), "{text}");
    assert_eq!(verdict(&list(&dir), &name), "in-use");
    assert!(child.kill_and_wait().killed());
    for (role, _, can_use) in users(&name) {
        assert_eq!(can_use, "dead", "{role}");
    }
    assert_eq!(verdict(&list(&dir), &name), "stale");
}
