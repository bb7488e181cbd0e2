//! The direct doorbell across processes (feature `tokio`): a waker that may fetch the async
//! waiter's eventfd with `pidfd_getfd` rings it directly; one that is refused (the waiter is
//! not dumpable, and the waker is another user) falls back to the futex wake and the bell
//! thread, and nothing is lost either way; a scribbled publication is not believed; a killed
//! peer is `Disconnected` for an async receiver whose peer rang it directly.

#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_shm::testing::{RX_BELL, RX_SLEEPING};
use ipc_shm::{
    AsyncEndpoint, ChannelOptions, ErrorKind, MessageReceiver, MessageSender, Receiver, Segment,
    Sender,
};
use ipc_testkit::script::{check_message, message};
use ipc_testkit::{Ctx, roles, spawn, within_watchdog};

/// Round trips per test: the waker sends each request once the waiter is armed.
const ROUNDS: u32 = 20;

fn channel(tag: &str) -> Arc<Segment> {
    Arc::new(
        ChannelOptions::new()
            .capacity(1 << 12)
            .max_message(256)
            .create_memfd(tag)
            .unwrap(),
    )
}

/// Child: the async end. Receives requests on `req` and echoes them on `rep`, both through
/// `AsyncEndpoint`, until an empty request. Argument `undumpable`: first makes itself not
/// dumpable, so that no other user's process, nor an unprivileged one, may fetch its
/// descriptors.
fn async_echo(ctx: &Ctx) {
    if ctx.arg() == "undumpable" {
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .unwrap();
    }
    let rx = Receiver::open(Segment::inherited("req").unwrap()).unwrap();
    let tx = Sender::open(Segment::inherited("rep").unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    rt.unwrap().block_on(async {
        let (mut rx, mut tx) = (
            AsyncEndpoint::new(rx).unwrap(),
            AsyncEndpoint::new(tx).unwrap(),
        );
        let mut buf = [0u8; 256];
        loop {
            let n = rx.recv(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            tx.send(&buf[..n]).await.unwrap();
        }
    });
}

/// The waker's side of the conversation: `ROUNDS` requests, each once the async end is armed
/// (and, given its process `waiter`, asleep: see [`until_asleep`]) and each answered, then
/// the empty request. Returns what the request sender found before the empty one: whether it
/// fetched the waiter's doorbell, and its direct rings.
fn converse(req: &mut Sender, rep: &mut Receiver, waiter: Option<u32>) -> (Option<bool>, u32) {
    let mut buf = [0u8; 256];
    for seq in 0..ROUNDS {
        match waiter {
            Some(pid) => until_asleep(req.segment(), pid),
            None => until_armed(req.segment()),
        }
        req.send(&message(1, seq, 40)).unwrap();
        let n = rep.recv_timeout(&mut buf, ipc_testkit::watchdog()).unwrap();
        check_message(1, seq, 40, &buf[..n]).unwrap();
    }
    let state = req.direct_doorbell();
    req.send(&[]).unwrap();
    state
}

/// Child: the refused waker. Drops to user `nobody` if it runs as root (so it holds no
/// CAP_SYS_PTRACE and is not the waiter's user), then converses with the undumpable async
/// end: the fetch is refused, every request still reaches it.
fn refused_waker(_ctx: &Ctx) {
    let req = Segment::inherited("req").unwrap();
    let rep = Segment::inherited("rep").unwrap();
    if rustix::process::geteuid().is_root() {
        // `nobody`: the segments are open already, and the waiter is root.
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::from_raw(65534),
            rustix::process::Uid::from_raw(65534),
            rustix::process::Uid::from_raw(65534),
        )
        .unwrap();
    }
    let (mut req, mut rep) = (Sender::open(req).unwrap(), Receiver::open(rep).unwrap());
    let (fetched, direct) = converse(&mut req, &mut rep, None);
    assert_eq!(
        fetched,
        Some(false),
        "the fetch must have been tried and refused"
    );
    assert_eq!(direct, 0);
}

/// Child: sends `ROUNDS` messages on `seg`, each after a pause, then after one more pause
/// (the receiver is waiting for more by then) SIGKILLs itself.
fn paced_sender(_ctx: &Ctx) {
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    for seq in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(2));
        tx.send(&message(2, seq, 40)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
    unreachable!("SIGKILL cannot be caught");
}

roles!(async_echo, refused_waker, paced_sender);

/// Whether this process may fetch a descriptor of a dumpable child of the same user: Yama's
/// scope 0 and 1 allow it towards descendants, 2 only with CAP_SYS_PTRACE (root here), 3
/// never.
fn may_fetch_from_child() -> bool {
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Err(_) => true,
        Ok(s) => match s.trim() {
            "0" | "1" => true,
            "2" => rustix::process::geteuid().is_root(),
            _ => false,
        },
    }
}

#[test]
fn a_waker_allowed_to_fetch_the_doorbell_rings_it_directly() {
    let (req_seg, rep_seg) = (channel("bell-req"), channel("bell-rep"));
    let child = spawn("async_echo")
        .fd("req", req_seg.fd().unwrap())
        .fd("rep", rep_seg.fd().unwrap())
        .arg("dumpable")
        .start();
    let (mut req, mut rep) = (
        Sender::open(req_seg).unwrap(),
        Receiver::open(rep_seg).unwrap(),
    );
    let (fetched, direct) = converse(&mut req, &mut rep, Some(child.pid()));
    child.wait_success();
    if may_fetch_from_child() {
        assert_eq!(fetched, Some(true));
        assert_eq!(direct, ROUNDS, "every request found the waiter armed");
    } else {
        assert_eq!(fetched, Some(false));
    }
}

#[test]
fn a_waker_refused_the_doorbell_falls_back_to_the_bell_thread() {
    let (req_seg, rep_seg) = (channel("bell-req-r"), channel("bell-rep-r"));
    let echo = spawn("async_echo")
        .fd("req", req_seg.fd().unwrap())
        .fd("rep", rep_seg.fd().unwrap())
        .arg("undumpable")
        .start();
    let waker = spawn("refused_waker")
        .fd("req", req_seg.fd().unwrap())
        .fd("rep", rep_seg.fd().unwrap())
        .start();
    waker.wait_success();
    echo.wait_success();
}

#[tokio::test]
async fn a_killed_peer_that_rang_directly_is_disconnected_for_the_async_receiver() {
    let seg = channel("bell-kill");
    let mut child = spawn("paced_sender").fd("seg", seg.fd().unwrap()).start();
    let mut rx = AsyncEndpoint::new(Receiver::open(seg).unwrap()).unwrap();
    let mut buf = [0u8; 256];
    for seq in 0..ROUNDS {
        let n = rx.recv(&mut buf).await.unwrap();
        check_message(2, seq, 40, &buf[..n]).unwrap();
    }
    // The sender kills itself while the receiver is armed and asleep in the reactor.
    let r = tokio::time::timeout(ipc_testkit::watchdog(), rx.recv(&mut buf)).await;
    let e = r.expect("the kill ends the wait").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    assert!(child.wait().killed());
}

/// Waits until the receiver of `seg` is armed on its doorbell (its sleeping flag says so).
fn until_armed(seg: &Segment) {
    let flag = seg.atomic_u32(RX_SLEEPING).unwrap();
    let deadline = std::time::Instant::now() + ipc_testkit::watchdog();
    while flag.load(Ordering::SeqCst) != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver never armed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`until_armed`], and the thread of process `pid` that runs its role asleep (state `S`:
/// in the runtime's `epoll_wait`). The flag goes up before the waiter's last look, and a
/// request sent while that look is still to run (a loaded machine preempts it there) is found
/// by the look, which takes the flag down again: no ring is needed, and the count of direct
/// rings would miss one. Asleep with the flag up, the waiter needs the ring.
fn until_asleep(seg: &Segment, pid: u32) {
    let flag = seg.atomic_u32(RX_SLEEPING).unwrap();
    let deadline = std::time::Instant::now() + ipc_testkit::watchdog();
    loop {
        if role_thread_sleeps(pid) && flag.load(Ordering::SeqCst) == 2 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver never armed and slept"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether the thread of process `pid` that runs the role (libtest's thread named after the
/// entry test, its name cut to 15 bytes) is asleep (`S`).
fn role_thread_sleeps(pid: u32) -> bool {
    let name = &ipc_testkit::ENTRY_TEST[..15];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state follows the command name's closing parenthesis.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        comm.trim_end() == name && state == Some('S')
    })
}

/// A publication scribbled by a hostile receiver: another `eventfd-id` (the fetched
/// descriptor is refused), then another key (not believed at all). Each time the sender falls
/// back to the futex wake, the bell thread rings, and the message arrives.
#[test]
fn a_scribbled_doorbell_publication_falls_back_and_loses_nothing() {
    let seg = channel("bell-scribble");
    let mut tx = Sender::open(seg.clone()).unwrap();
    let rx = Receiver::open(seg.clone()).unwrap();
    let receiver = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build();
        rt.unwrap().block_on(async {
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let mut buf = [0u8; 256];
            for seq in 0..3 {
                let n = rx.recv(&mut buf).await.unwrap();
                check_message(3, seq, 40, &buf[..n]).unwrap();
            }
        })
    });
    until_armed(&seg);
    tx.send(&message(3, 0, 40)).unwrap();
    assert_eq!(
        tx.direct_doorbell(),
        (Some(true), 1),
        "a genuine publication"
    );
    until_armed(&seg);
    let id = seg.atomic_u32(RX_BELL + 12).unwrap();
    id.store(
        id.load(Ordering::Relaxed).wrapping_add(1000),
        Ordering::SeqCst,
    );
    tx.send(&message(3, 1, 40)).unwrap();
    assert_eq!(tx.direct_doorbell(), (Some(false), 1), "another eventfd-id");
    until_armed(&seg);
    seg.atomic_u64(RX_BELL)
        .unwrap()
        .store(12345, Ordering::SeqCst);
    tx.send(&message(3, 2, 40)).unwrap();
    assert_eq!(tx.direct_doorbell(), (Some(false), 1), "another key");
    within_watchdog("receiver", move || receiver.join().unwrap());
}
