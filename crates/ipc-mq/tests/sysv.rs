//! System V message queues through the public API: keys and ids, exact modes, status, the byte
//! limit, type selection against a model, bad input that loses nothing, deadlines, removal as
//! disconnection, request/reply by type, and a SIGKILLed peer, across real processes.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use ipc_core::{Blocked, Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_mq::Access;
use ipc_mq::RemoveGuard;
use ipc_mq::knobs::SYSV_MSGMAX;
use ipc_mq::sysv::{Key, MsgBuf, OpenOptions, Queue, Selector};
use ipc_testkit::script::{STAMP_LEN, check_message, message, parse_stamp};
use ipc_testkit::{Ctx, TempDir, roles, spawn};
use proptest::prelude::*;

/// Generous bound for the parent's own blocking calls: a failure, never a pass condition.
const PATIENCE: Duration = Duration::from_secs(60);

fn fresh() -> (Queue, RemoveGuard) {
    let q = Queue::private().unwrap();
    let g = q.remove_guard();
    (q, g)
}

fn assert_removed(id: i32) {
    let e = Queue::from_id(id).status().unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Disconnected,
        "queue {id} still exists: {e}"
    );
}

/// A key from a file in a private temporary directory.
fn file_key(dir: &TempDir, file: &str, project: u8) -> Key {
    let path = dir.join(file);
    std::fs::write(&path, b"").unwrap();
    Key::from_path(path, project).unwrap()
}

fn id_arg(ctx: &Ctx, i: usize) -> Queue {
    Queue::from_id(ctx.args()[i].parse().unwrap())
}

// ---- roles ----

/// `id`: sends two typed messages.
fn send_two(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    q.send_typed(2, b"first").unwrap();
    q.send_typed(1, b"second!").unwrap();
}

/// `id`: blocks in a receive until the queue is removed.
fn receive_until_removed(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    ctx.checkpoint("waiting");
    let e = q.recv_message(Selector::Any).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    // Everything after is disconnected too.
    assert_eq!(
        q.try_send_typed(1, b"x").unwrap_err().kind(),
        ErrorKind::Disconnected
    );
}

/// `id`: a deadline receive on an empty queue times out.
fn receive_times_out(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    let e = q
        .recv_typed_timeout(Selector::Any, &mut [0; 16], Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
}

/// `id`: waits (deadline far away) for a type-5 message, leaving others queued.
fn receive_type_five(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    ctx.checkpoint("waiting");
    let m = q
        .recv_message_deadline(Selector::Type(5), Deadline::after(PATIENCE))
        .unwrap();
    assert_eq!((m.mtype, &m.data[..]), (5, &b"five"[..]));
    assert_eq!(q.status().unwrap().messages, 1, "the type-3 message stays");
}

/// `id`: serves requests (type 1, "pid payload") with replies typed by the client's pid,
/// until a request "0 stop".
fn server(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    loop {
        let req = q.recv_message(Selector::Type(1)).unwrap();
        let text = String::from_utf8(req.data).unwrap();
        let (pid, payload) = text.split_once(' ').unwrap();
        if payload == "stop" {
            return;
        }
        let reply = payload.to_uppercase();
        q.send_typed(pid.parse().unwrap(), reply.as_bytes())
            .unwrap();
    }
}

/// `id`: sends 20 requests and checks each reply, addressed to this process by type.
fn client(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    let me = i64::from(std::process::id());
    for i in 0..20 {
        q.send_typed(1, format!("{me} request-{me}-{i}").as_bytes())
            .unwrap();
        let reply = q
            .recv_message_deadline(Selector::Type(me), Deadline::after(PATIENCE))
            .unwrap();
        assert_eq!(reply.data, format!("REQUEST-{me}-{i}").as_bytes());
    }
}

/// `id`: sends stamped messages (type `seq % 3 + 1`) until killed.
fn send_forever(ctx: &Ctx) {
    let q = id_arg(ctx, 0);
    for seq in 0.. {
        if seq == 5 {
            ctx.checkpoint("sending");
        }
        let len = STAMP_LEN + (seq as usize * 13) % 100;
        q.send_typed(i64::from(seq % 3 + 1), &message(3, seq, len))
            .unwrap();
    }
}

roles!(
    send_two,
    receive_until_removed,
    receive_times_out,
    receive_type_five,
    server,
    client,
    send_forever,
);

// ---- keys, ids, creation ----

#[test]
fn keys_from_paths_find_one_queue_and_creation_is_exclusive() {
    let dir = TempDir::new("sysv-key");
    let key = file_key(&dir, "k", b'Q');
    let q = Queue::create(key).unwrap();
    let _g = q.remove_guard();
    assert!(q.was_created());
    assert_eq!(q.key(), key);
    let again = Queue::open(key, Access::ReadWrite).unwrap();
    assert_eq!(again.id(), q.id());
    assert!(!again.was_created());
    let e = Queue::create(key).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let ooc = Queue::open_or_create(key).unwrap();
    assert_eq!((ooc.id(), ooc.was_created()), (q.id(), false));
    assert_eq!(q.status().unwrap().key, key);
    // Another project number is another key.
    let other = Key::from_path(dir.join("k"), b'R').unwrap();
    assert_ne!(other, key);
    let e = Queue::open(other, Access::ReadOnly).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    drop(_g);
    assert_removed(q.id());
}

#[test]
fn private_queues_are_reached_by_id_and_cannot_be_opened_by_key() {
    let (q, _g) = fresh();
    assert!(q.key().is_private());
    Queue::from_id(q.id()).send_typed(4, b"by id").unwrap();
    assert_eq!(q.recv_message(Selector::Any).unwrap().data, b"by id");
    let e = Queue::open(Key::PRIVATE, Access::ReadWrite).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let two = Queue::private().unwrap();
    let _g2 = two.remove_guard();
    assert_ne!(two.id(), q.id());
}

#[test]
fn modes_are_exact_and_can_be_changed() {
    let q = OpenOptions::new()
        .create_new(true)
        .mode(0o640)
        .open(Key::PRIVATE)
        .unwrap();
    let _g = q.remove_guard();
    assert_eq!(q.status().unwrap().mode, 0o640);
    q.set_mode(0o600).unwrap();
    assert_eq!(q.status().unwrap().mode, 0o600);
    assert_eq!(
        q.set_mode(0o1600).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let e = OpenOptions::new()
        .create_new(true)
        .mode(0o2600)
        .open(Key::PRIVATE)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let me = rustix::process::geteuid().as_raw();
    let st = q.status().unwrap();
    assert_eq!((st.uid, st.creator_uid), (me, me));
}

#[test]
fn removal_is_reported_and_the_guard_tolerates_it() {
    let q = Queue::private().unwrap();
    let g = q.remove_guard();
    q.remove().unwrap();
    for e in [
        q.remove().unwrap_err(),
        q.status().unwrap_err(),
        q.try_send_typed(1, b"x").unwrap_err(),
        q.try_recv_typed(Selector::Any, &mut [0; 4]).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    }
    drop(g); // Already gone: not an error.
    assert_removed(q.id());
}

// ---- status and the byte limit ----

#[test]
fn status_reports_counts_bytes_pids_and_times() {
    let (q, _g) = fresh();
    let st = q.status().unwrap();
    assert_eq!((st.messages, st.bytes), (0, 0));
    assert_eq!((st.last_send_pid, st.last_receive_pid), (None, None));
    assert!(st.last_send.is_none() && st.last_change.is_some());
    let child = spawn("send_two").arg(q.id().to_string()).start();
    let child_pid = child.pid();
    child.wait_success();
    let st = q.status().unwrap();
    assert_eq!((st.messages, st.bytes), (2, 5 + 7));
    assert_eq!(st.last_send_pid, Some(child_pid));
    assert!(st.last_send.is_some());
    assert_eq!(st.last_receive_pid, None);
    assert_eq!(q.recv_message(Selector::Type(1)).unwrap().data, b"second!");
    let st = q.status().unwrap();
    assert_eq!((st.messages, st.bytes), (1, 5));
    assert_eq!(st.last_receive_pid, Some(std::process::id()));
    assert!(st.last_receive.is_some());
}

#[test]
fn the_byte_limit_bounds_the_queue_and_refuses_what_can_never_fit() {
    let (q, _g) = fresh();
    q.set_max_bytes(100).unwrap();
    assert_eq!(q.status().unwrap().max_bytes, 100);
    q.send_typed(1, &[1; 60]).unwrap();
    let e = q.try_send_typed(1, &[2; 60]).unwrap_err();
    assert_eq!(
        (e.kind(), e.blocked()),
        (ErrorKind::WouldBlock, Some(Blocked::Full))
    );
    let e = q
        .send_typed_timeout(1, &[2; 60], Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    // Larger than the whole queue: an error, not an endless wait.
    let e = q.send_typed(1, &[3; 101]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((101, 100)));
    assert!(e.to_string().contains("msg_qbytes"), "{e}");
    assert_eq!(
        q.set_max_bytes(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let st = q.status().unwrap();
    assert_eq!((st.messages, st.bytes), (1, 60));
}

// ---- bad input ----

#[test]
fn bad_input_fails_before_the_kernel_and_loses_nothing() {
    let (q, _g) = fresh();
    q.send_typed(1, b"queued").unwrap();
    let msgmax = q.max_message_size();
    let e = q.send_typed(1, &vec![0; msgmax + 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((msgmax + 1, msgmax)));
    assert!(e.to_string().contains(SYSV_MSGMAX), "{e}");
    for t in [0, -1] {
        let e = q.send_typed(t, b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    for sel in [Selector::Type(0), Selector::AtMost(0), Selector::Except(-2)] {
        let e = q.try_recv_typed(sel, &mut [0; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{sel:?}: {e}");
    }
    let mut buf = MsgBuf::with_capacity(4);
    buf.set_mtype(0);
    assert_eq!(
        q.send_buf(&buf, Deadline::Now).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(q.status().unwrap().messages, 1);
    assert_eq!(q.recv_message(Selector::Any).unwrap().data, b"queued");
}

#[test]
fn a_short_receive_buffer_leaves_the_message_queued() {
    let (q, _g) = fresh();
    q.send_typed(3, b"ten bytes!").unwrap();
    let e = q.try_recv_typed(Selector::Any, &mut [0; 9]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((q.max_message_size(), 9)));
    assert_eq!(q.status().unwrap().messages, 1);
    let mut buf = [0; 10];
    let got = q.try_recv_typed(Selector::Any, &mut buf).unwrap();
    assert_eq!((&buf[..got.len], got.mtype), (&b"ten bytes!"[..], 3));
}

// ---- selection against a model ----

/// The oracle: `msgrcv`'s selection rules over a FIFO list of typed messages.
#[derive(Default)]
struct TypeModel {
    queued: VecDeque<(i64, Vec<u8>)>,
}

impl TypeModel {
    fn select(&self, sel: Selector) -> Option<usize> {
        let q = &self.queued;
        match sel {
            Selector::Any => (!q.is_empty()).then_some(0),
            Selector::Type(t) => q.iter().position(|m| m.0 == t),
            Selector::Except(t) => q.iter().position(|m| m.0 != t),
            Selector::AtMost(t) => (0..q.len())
                .filter(|&i| q[i].0 <= t)
                .min_by_key(|&i| (q[i].0, i)),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send { mtype: i64, len: usize },
    Recv(Selector),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let selector = prop_oneof![
        Just(Selector::Any),
        (1i64..=5).prop_map(Selector::Type),
        (1i64..=5).prop_map(Selector::AtMost),
        (1i64..=5).prop_map(Selector::Except),
    ];
    let op = prop_oneof![
        3 => (1i64..=5, ipc_testkit::script::size(64)).prop_map(|(mtype, len)| Op::Send { mtype, len }),
        2 => selector.prop_map(Op::Recv),
    ];
    prop::collection::vec(op, 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn type_selection_matches_the_model(ops in ops()) {
        let (q, _g) = fresh();
        let mut model = TypeModel::default();
        let mut buf = [0; 64];
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Send { mtype, len } => {
                    let msg = message(mtype as u32, n as u32, len);
                    q.try_send_typed(mtype, &msg).unwrap();
                    model.queued.push_back((mtype, msg));
                }
                Op::Recv(sel) => match model.select(sel) {
                    None => {
                        let e = q.try_recv_typed(sel, &mut buf).unwrap_err();
                        prop_assert_eq!(e.kind(), ErrorKind::WouldBlock);
                        prop_assert_eq!(e.blocked(), Some(Blocked::Empty));
                    }
                    Some(i) => {
                        let (mtype, want) = model.queued.remove(i).unwrap();
                        let got = q.try_recv_typed(sel, &mut buf).unwrap();
                        prop_assert_eq!(got.mtype, mtype, "{:?}", sel);
                        prop_assert_eq!(&buf[..got.len], &want[..]);
                    }
                },
            }
            let st = q.status().unwrap();
            prop_assert_eq!(st.messages as usize, model.queued.len());
            prop_assert_eq!(st.bytes as usize, model.queued.iter().map(|m| m.1.len()).sum::<usize>());
        }
    }
}

// ---- waiting and the core traits ----

#[test]
fn try_and_deadline_forms() {
    let (q, _g) = fresh();
    let mut buf = [0; 16];
    let e = q.try_recv_typed(Selector::Any, &mut buf).unwrap_err();
    assert_eq!(
        (e.kind(), e.blocked()),
        (ErrorKind::WouldBlock, Some(Blocked::Empty))
    );
    let e = q
        .recv_typed_timeout(Selector::Any, &mut buf, Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    q.send_typed(1, b"one").unwrap();
    // Nothing of type 2: the type-1 message does not count.
    let e = q.try_recv_typed(Selector::Type(2), &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    let got = q
        .recv_typed_timeout(Selector::Type(1), &mut buf, Duration::from_millis(20))
        .unwrap();
    assert_eq!(&buf[..got.len], b"one");
}

#[test]
fn the_core_traits_use_the_send_type_and_the_selector() {
    let (q, _g) = fresh();
    let mut tx = q.clone();
    tx.set_send_type(3).unwrap();
    assert_eq!(
        tx.set_send_type(0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    MessageSender::send(&mut tx, b"three").unwrap();
    q.send_typed(1, b"one").unwrap();
    let mut rx = q.clone();
    rx.set_recv_selector(Selector::Type(3)).unwrap();
    assert_eq!(
        rx.set_recv_selector(Selector::Type(-3)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut buf = [0; 16];
    let n = rx.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"three");
    assert_eq!(
        rx.try_recv(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(MessageReceiver::max_message_size(&rx), q.max_message_size());
}

// ---- across processes ----

#[test]
fn removal_wakes_a_receiver_in_another_process_as_disconnected() {
    let q = Queue::private().unwrap();
    let _g = q.remove_guard();
    let mut child = spawn("receive_until_removed")
        .arg(q.id().to_string())
        .start();
    child.wait_checkpoint("waiting");
    // Let it block (if it has not yet, it sees the removed id: disconnected all the same).
    std::thread::sleep(Duration::from_millis(50));
    q.remove().unwrap();
    let out = child.wait();
    assert!(out.success(), "{}", out.stderr);
}

#[test]
fn a_deadline_receive_in_another_process_times_out() {
    let (q, _g) = fresh();
    spawn("receive_times_out")
        .arg(q.id().to_string())
        .start()
        .wait_success();
}

#[test]
fn a_deadline_receive_in_another_process_gets_its_type_when_it_arrives() {
    let (q, _g) = fresh();
    let mut child = spawn("receive_type_five").arg(q.id().to_string()).start();
    child.wait_checkpoint("waiting");
    q.send_typed(3, b"three").unwrap();
    q.send_typed(5, b"five").unwrap();
    let out = child.wait();
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(q.recv_message(Selector::Any).unwrap().mtype, 3);
}

#[test]
fn request_reply_by_message_type_between_processes() {
    let dir = TempDir::new("sysv-rr");
    let q = Queue::create(file_key(&dir, "service", b'S')).unwrap();
    let _g = q.remove_guard();
    let id = q.id().to_string();
    let server = spawn("server").arg(&id).start();
    let clients: Vec<_> = (0..3).map(|_| spawn("client").arg(&id).start()).collect();
    for c in clients {
        c.wait_success();
    }
    q.send_typed(1, b"0 stop").unwrap();
    server.wait_success();
    assert_eq!(q.status().unwrap().messages, 0);
}

#[test]
fn a_sigkilled_sender_leaves_the_queue_intact_and_usable() {
    let (q, _g) = fresh();
    q.set_max_bytes(1000).unwrap(); // Small, so the sender blocks often.
    let mut child = spawn("send_forever").arg(q.id().to_string()).start();
    child.wait_checkpoint("sending");
    let mut seen = HashSet::new();
    let mut last: BTreeMap<i64, u32> = BTreeMap::new();
    let mut buf = [0; 256];
    let mut check = |got: ipc_mq::sysv::Received, buf: &[u8]| {
        let m = &buf[..got.len];
        let (sender, seq) = parse_stamp(m).expect("an intact, stamped message");
        check_message(sender, seq, got.len, m).unwrap();
        assert_eq!(got.mtype, i64::from(seq % 3 + 1));
        assert!(seen.insert(seq), "message {seq} twice");
        if let Some(prev) = last.insert(got.mtype, seq) {
            assert!(prev < seq, "type {}: {seq} after {prev}", got.mtype);
        }
    };
    for i in 0..60 {
        // Every other receive picks type 2 if one is queued (without waiting: a full queue
        // may hold none while the sender waits for room), else any; the rest stay in order.
        let picked = if i % 2 == 1 {
            match q.try_recv_typed(Selector::Type(2), &mut buf) {
                Ok(got) => Some(got),
                Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                Err(e) => panic!("{e}"),
            }
        } else {
            None
        };
        let got = match picked {
            Some(got) => got,
            None => q
                .recv_typed_timeout(Selector::Any, &mut buf, PATIENCE)
                .unwrap(),
        };
        check(got, &buf);
    }
    assert!(child.kill_and_wait().killed());
    let left = q.status().unwrap().messages;
    for _ in 0..left {
        let got = q.try_recv_typed(Selector::Any, &mut buf).unwrap();
        check(got, &buf);
    }
    let st = q.status().unwrap();
    assert_eq!((st.messages, st.bytes), (0, 0));
    q.send_typed(9, b"after the crash").unwrap();
    assert_eq!(
        q.recv_message(Selector::Type(9)).unwrap().data,
        b"after the crash"
    );
}

/// "Deadlines ... in the far future": a receive with a deadline as far as an `Instant`
/// reaches polls (System V has no timed call) and gets what another process sends. Passed
/// at once (no test used such a deadline before).
#[test]
fn the_farthest_deadline_receives_what_another_process_sends() {
    let mut secs = i64::MAX as u64;
    let far = loop {
        if let Some(t) = std::time::Instant::now().checked_add(Duration::from_secs(secs)) {
            break Deadline::At(t);
        }
        secs /= 2;
    };
    let (q, _g) = fresh();
    let child = spawn("send_two").arg(q.id().to_string()).start();
    let got = ipc_testkit::within_watchdog("far receive", move || {
        q.recv_message_deadline(Selector::Type(1), far).unwrap()
    });
    assert_eq!((got.mtype, &got.data[..]), (1, &b"second!"[..]));
    child.wait_success();
}
