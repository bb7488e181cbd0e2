//! Hostile tests of ipc-mq: kernel knobs changed under open handles, a System V queue squatted
//! and given away to its victim, a write-only queue changed by its owner, queues removed under
//! a receiver waiting with a deadline, and POSIX queues filled to exactly their limits.

use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver};
use ipc_mq::knobs::{SYSV_MSGMAX, SYSV_MSGMNB};
use ipc_mq::posix;
use ipc_mq::sysv::{self, Selector};
use ipc_testkit::users::{self, SQUATTER, VICTIM, become_euid};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name};

/// Generous bound for a blocking call: a hang guard, never a pass condition.
const PATIENCE: Duration = Duration::from_secs(60);

// ---- roles ----

/// In a private IPC namespace (the knobs it changes touch nothing else): a handle opened while
/// `msgmax` is 8192, then `msgmax` raised to 16384 by the administrator. The library's own send
/// re-reads the knob and accepts a 12,000-byte message; every receive through the old handle
/// must be able to take it, `recv_message` ("into a new buffer of the right size") included.
fn msgmax_raised_under_a_handle(_: &Ctx) {
    if let Err(skip) = users::private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let set = |path: &str, v: u64| std::fs::write(path, v.to_string()).unwrap();
    set(SYSV_MSGMAX, 8192);
    set(SYSV_MSGMNB, 65536);
    let q = sysv::Queue::private().unwrap();
    let _g = q.remove_guard();
    assert_eq!(q.max_message_size(), 8192);
    set(SYSV_MSGMAX, 16384);

    let big: Vec<u8> = (0..12_000u32).map(|i| (i * 7) as u8).collect();
    // A peer's handle, opened after the raise, and this one: both send it.
    let peer = sysv::Queue::from_id(q.id());
    peer.send_typed(3, &big).unwrap();
    q.send_typed(4, &big).unwrap();

    // Into a new buffer: was MessageTooLarge "8192 bytes, buffer 8192", forever.
    let m = q
        .recv_message_deadline(Selector::Any, ipc_core::Deadline::after(PATIENCE))
        .unwrap();
    assert_eq!((m.mtype, m.data.len()), (3, big.len()));
    assert_eq!(m.data, big);
    let m = q.recv_message(Selector::Any).unwrap();
    assert_eq!((m.mtype, &m.data), (4, &big));

    // Into a caller's buffer large enough: taken whole too.
    q.send_typed(5, &big).unwrap();
    let mut buf = vec![0u8; 16384];
    let got = q.recv_typed(Selector::Any, &mut buf).unwrap();
    assert_eq!((got.mtype, &buf[..got.len]), (5, &big[..]));

    // A caller's buffer too small: refused, and the message stays.
    q.send_typed(6, &big).unwrap();
    let e = q
        .try_recv_typed(Selector::Any, &mut [0u8; 100])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    let m = q.recv_message(Selector::Any).unwrap();
    assert_eq!((m.mtype, &m.data), (6, &big));
    eprintln!("checked");
}

/// In a private IPC namespace: a handle opened while `msgmax` is 8192, then `msgmax` lowered
/// to 100. A send of 200 bytes through it (every form, and the blocking stream path a
/// blocking send takes once a fit check passed) is refused by the kernel with `EINVAL`, which
/// also means "no such queue": it must be `MessageTooLarge` naming the knob, not
/// `Disconnected`, and the queue must stay usable.
fn msgmax_lowered_under_a_handle(_: &Ctx) {
    if let Err(skip) = users::private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    let set = |path: &str, v: u64| std::fs::write(path, v.to_string()).unwrap();
    set(SYSV_MSGMAX, 8192);
    let mut q = sysv::Queue::private().unwrap();
    let _g = q.remove_guard();
    // A blocking send first: its fit check lets later blocking sends go straight to msgsnd.
    q.send_typed(1, &[1; 50]).unwrap();
    set(SYSV_MSGMAX, 100);
    let big = [2u8; 200];
    type Send<'a> = Box<dyn Fn(&mut sysv::Queue) -> ipc_core::Result<()> + 'a>;
    let sends: [(&str, Send<'_>); 4] = [
        ("send_typed", Box::new(|q| q.send_typed(1, &big))),
        ("try_send_typed", Box::new(|q| q.try_send_typed(1, &big))),
        (
            "send_typed_timeout",
            Box::new(|q| q.send_typed_timeout(1, &big, Duration::from_secs(5))),
        ),
        (
            "MessageSender::send",
            Box::new(|q| ipc_core::MessageSender::send(q, &big)),
        ),
    ];
    for (what, send) in sends {
        let e = send(&mut q).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{what}: {e}");
        assert_eq!(e.message_size(), Some((200, 100)), "{what}: {e}");
        assert!(e.to_string().contains(SYSV_MSGMAX), "{what}: {e}");
    }
    // The queue is there and works: what was queued comes out, a fitting message goes in.
    assert_eq!(q.status().unwrap().messages, 1);
    q.send_typed(1, &[3; 100]).unwrap();
    let mut buf = [0u8; 8192];
    assert_eq!(q.recv_typed(Selector::Any, &mut buf).unwrap().len, 50);
    assert_eq!(q.recv_typed(Selector::Any, &mut buf).unwrap().len, 100);
    eprintln!("checked");
}

/// In a private IPC namespace, as root: a squatter (uid 65534) creates a queue under the
/// victim's key before the victim does, mode 0o666, and gives it away (`IPC_SET` of the
/// owner uid to the victim's, which the kernel allows a creator). It keeps the owner's rights
/// (its uid is the creator's). The victim (uid 54321) then opens the key with the default
/// policy, `Owner::Me`: it must be refused, as a queue the squatter owns is.
fn squatted_and_given_away(_: &Ctx) {
    if let Err(skip) = users::two_users_in_a_private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    // Mode 0o666, and 0o222: write-only, so the victim cannot IPC_STAT it and the owner is
    // read with MSG_STAT_ANY instead.
    let keys = [(0x5157_0001, 0o666), (0x5157_0003, 0o222)];
    become_euid(SQUATTER);
    for (key, mode) in keys {
        let q = sysv::Queue::create(sysv::Key::from_raw(key)).unwrap();
        // SAFETY: `msqid_ds` is a plain C struct of integers: all-zero is a valid value, and
        // `msgctl` reads (IPC_STAT) and then writes (IPC_SET) only this local.
        let rc = unsafe {
            let mut ds: libc::msqid_ds = std::mem::zeroed();
            let stat = libc::msgctl(q.id(), libc::IPC_STAT, &mut ds);
            ds.msg_perm.uid = VICTIM;
            ds.msg_perm.mode = mode;
            stat | libc::msgctl(q.id(), libc::IPC_SET, &mut ds)
        };
        assert_eq!(rc, 0, "give away: {}", std::io::Error::last_os_error());
        if mode == 0o666 {
            // The creator still has the owner's rights: it can change the mode at will.
            q.set_mode(0o666).unwrap();
        }
    }

    become_euid(VICTIM);
    for (key, mode) in keys {
        let key = sysv::Key::from_raw(key);
        for how in ["open", "open_or_create"] {
            let r = match how {
                "open" => sysv::Queue::open(key, ipc_mq::Access::WriteOnly),
                _ => sysv::Queue::open_or_create(key),
            };
            let e = r.map(|q| q.id()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{how} {mode:o}: {e}");
            // (Read-write on the write-only queue is refused by msgget itself, before any
            // owner check.)
            assert!(
                (how == "open_or_create" && mode == 0o222)
                    || e.to_string()
                        .contains(&format!("created by uid {SQUATTER}")),
                "{how} {mode:o}: names the creator: {e}"
            );
        }
    }
    // A queue the victim made itself opens as before.
    let mine = sysv::Queue::create(sysv::Key::from_raw(0x5157_0002)).unwrap();
    assert_eq!(
        sysv::Queue::open(mine.key(), ipc_mq::Access::ReadWrite)
            .unwrap()
            .id(),
        mine.id()
    );
    eprintln!("checked");
}

/// In a private IPC namespace, as an ordinary user (root's `CAP_IPC_OWNER` would hide it): the
/// owner makes its queue write-only (a drop box), then changes its mode and byte limit again.
/// The kernel lets the owner `IPC_SET` whatever the mode; the crate read the queue with
/// `IPC_STAT` first, which needs read permission, and refused its own owner.
fn owner_of_a_write_only_queue(_: &Ctx) {
    if let Err(skip) = users::two_users_in_a_private_ipc_namespace() {
        eprintln!("{skip}");
        return;
    }
    become_euid(VICTIM);
    let q = sysv::Queue::private().unwrap();
    let _g = q.remove_guard();
    q.set_mode(0o200).unwrap();
    q.send_typed(1, b"dropped").unwrap();
    q.set_max_bytes(4096).unwrap();
    q.set_mode(0o600).unwrap();
    let s = q.status().unwrap();
    assert_eq!((s.max_bytes, s.messages), (4096, 1));

    // Its owner opens a write-only queue by key: the owner check reads the queue without
    // the read permission (MSG_STAT_ANY), and sees the real owner.
    let key = sysv::Key::from_raw(0x5157_0004);
    let drop_box = sysv::OpenOptions::new()
        .create_new(true)
        .mode(0o200)
        .open(key)
        .unwrap();
    let _g = drop_box.remove_guard();
    let again = sysv::Queue::open(key, ipc_mq::Access::WriteOnly).unwrap();
    assert_eq!(again.id(), drop_box.id());
    let e = sysv::OpenOptions::new()
        .access(ipc_mq::Access::WriteOnly)
        .owner(ipc_mq::Owner::Uid(SQUATTER))
        .open(key)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains(&format!("uid {VICTIM}")), "{e}");
    eprintln!("checked");
}

/// `id`: waits with a deadline (the polling path: `IPC_NOWAIT` and sleeps) until the queue is
/// removed; must see `Disconnected`, not sleep on to `TimedOut`.
fn deadline_receive_until_removed(ctx: &Ctx) {
    let q = sysv::Queue::from_id(ctx.arg().parse().unwrap());
    let mut buf = [0u8; 64];
    ctx.checkpoint("waiting");
    let e = q
        .recv_typed_timeout(Selector::Any, &mut buf, PATIENCE)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    let e = q
        .send_typed_timeout(1, b"x", Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    eprintln!("disconnected");
}

/// `id`: sends with a deadline into a full queue (the polling path) until the queue is removed.
fn deadline_send_until_removed(ctx: &Ctx) {
    let q = sysv::Queue::from_id(ctx.arg().parse().unwrap());
    ctx.checkpoint("waiting");
    let e = q.send_typed_timeout(1, &[1; 1000], PATIENCE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    eprintln!("disconnected");
}

roles!(
    owner_of_a_write_only_queue,
    squatted_and_given_away,
    msgmax_raised_under_a_handle,
    msgmax_lowered_under_a_handle,
    deadline_receive_until_removed,
    deadline_send_until_removed,
);

// ---- tests ----

/// `msgmax` raised while a handle is open: the library's send re-reads the knob and accepts
/// a message larger than the handle's `max_message_size`; `recv_message` on that handle used
/// a buffer of the stale size and refused the message for good (`MessageTooLarge`, "8192 of
/// 8192"), though it promises a buffer of the right size. Fails without the fix.
#[test]
fn a_message_above_the_msgmax_a_handle_opened_with_is_received_after_the_knob_was_raised() {
    let out = spawn("msgmax_raised_under_a_handle").start().wait_success();
    if users::skipped(&out.stderr) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

/// `msgmax` lowered while a handle is open: the handle's size check (against the value it
/// read at open) lets a 200-byte message through, and the kernel refuses it with `EINVAL`,
/// which the crate read as "the queue was removed" and reported as `Disconnected`, so a
/// sender would give up on a queue that is there and working. It must be `MessageTooLarge`
/// naming `/proc/sys/kernel/msgmax` and its value. Fails without the fix.
#[test]
fn a_message_above_a_lowered_msgmax_is_too_large_not_a_removed_queue() {
    let out = spawn("msgmax_lowered_under_a_handle")
        .start()
        .wait_success();
    if users::skipped(&out.stderr) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

/// A System V queue squatted under another user's key and then given away (its owner uid set
/// to the victim's, which the kernel lets a creator do) while its creator keeps the owner's
/// rights (`IPC_SET`, `IPC_RMID`: the kernel grants them to the creator uid as well): the owner
/// check looked at the owner uid alone and opened it for the victim, whose messages the
/// squatter could then read, forge or drop. It must be refused naming the creator. Fails
/// without the fix.
#[test]
fn a_squatted_queue_given_away_to_the_victim_is_refused() {
    let out = spawn("squatted_and_given_away").start().wait_success();
    if users::skipped(&out.stderr) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

/// The owner of a System V queue it made write-only changes its mode and byte limit again:
/// `set_mode` and `set_max_bytes` promise `PermissionDenied` only to a caller that neither owns
/// nor created the queue, but they read the queue with `IPC_STAT` first, which a write-only mode
/// refuses even its owner, so the owner could never make its queue readable again through the
/// crate. Fails without the fix.
#[test]
fn the_owner_of_a_write_only_queue_can_change_its_mode_and_limit() {
    let out = spawn("owner_of_a_write_only_queue").start().wait_success();
    if users::skipped(&out.stderr) {
        eprintln!("{}", out.stderr.trim());
        return;
    }
    assert!(out.stderr.contains("checked"), "{}", out.stderr);
}

/// A queue removed while another process waits on it with a deadline (the polling path, not
/// the blocking `msgrcv` the existing test covers) is `Disconnected` at once, for a receiver
/// and a sender blocked on a full queue alike. Passed on the unchanged code; nothing attacked
/// the polling path's removal before. It fails if the polling loop treated `EIDRM`/`EINVAL`
/// as "nothing yet" (the child then reports `TimedOut` after a minute).
#[test]
fn a_queue_removed_under_deadline_waits_in_another_process_is_disconnected() {
    // Receiver on an empty queue.
    let q = sysv::Queue::private().unwrap();
    let g = q.remove_guard();
    let mut child = spawn("deadline_receive_until_removed")
        .arg(q.id().to_string())
        .start();
    child.wait_checkpoint("waiting");
    std::thread::sleep(Duration::from_millis(50));
    q.remove().unwrap();
    drop(g);
    let out = child.wait();
    assert!(
        out.success() && out.stderr.contains("disconnected"),
        "{}",
        out.stderr
    );

    // Sender on a full queue.
    let q = sysv::Queue::private().unwrap();
    let g = q.remove_guard();
    q.set_max_bytes(1000).unwrap();
    q.send_typed(1, &[0; 1000]).unwrap();
    let mut child = spawn("deadline_send_until_removed")
        .arg(q.id().to_string())
        .start();
    child.wait_checkpoint("waiting");
    std::thread::sleep(Duration::from_millis(50));
    q.remove().unwrap();
    drop(g);
    let out = child.wait();
    assert!(
        out.success() && out.stderr.contains("disconnected"),
        "{}",
        out.stderr
    );
}

/// A POSIX queue filled to exactly `mq_maxmsg` with messages of exactly `mq_msgsize`, mixed
/// priorities: the next send is `WouldBlock` / `TimedOut`, a message of `mq_msgsize + 1` is
/// `MessageTooLarge` naming `mq_msgsize` with both sizes, and then every queued message comes
/// out whole, highest priority first, FIFO within one. Passed on the unchanged code; it
/// fails if a refusal at the limit took or dropped a queued message, or the sizes were off by
/// one.
#[test]
fn a_posix_queue_at_exactly_its_limits_refuses_and_loses_nothing() {
    let name = unique_posix_name("attack-full");
    let (maxmsg, msgsize) = (4, 300);
    let q = posix::Queue::create(&*name, maxmsg, msgsize).unwrap();
    let _g = q.remove_guard().unwrap();
    let msg = |i: u8| vec![i; msgsize];
    let prios = [1u32, 7, 1, 7];
    for (i, &p) in prios.iter().enumerate() {
        q.try_send_with_priority(&msg(i as u8), p).unwrap();
    }
    let e = q.try_send_with_priority(&msg(9), 9).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
    let e = q
        .send_with_priority_timeout(&msg(9), 9, Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    let e = q
        .try_send_with_priority(&vec![0; msgsize + 1], 0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(e.message_size(), Some((msgsize + 1, msgsize)), "{e}");
    assert!(e.to_string().contains("mq_msgsize"), "{e}");
    // A buffer one short of mq_msgsize: refused before the kernel, nothing taken.
    let e = q.try_recv(&mut vec![0; msgsize - 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
    assert_eq!(q.attributes().unwrap().messages, maxmsg);

    let mut buf = vec![0; msgsize];
    for (i, p) in [(1u8, 7u32), (3, 7), (0, 1), (2, 1)] {
        let got = q.try_recv(&mut buf).unwrap();
        assert_eq!((got.len, got.priority), (msgsize, p));
        assert_eq!(buf, msg(i));
    }
    let mut trait_q = &q;
    let e = MessageReceiver::try_recv(&mut trait_q, &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
}

/// A System V queue removed and made again under its key, over and over, while this thread
/// opens the key (with the default owner check): an open finds the queue (`msgget`), then
/// reads its owner (`IPC_STAT`), and when the queue went away in between, the crate reported
/// `Disconnected` ("no queue has this id", or "removed") for an open, which promises
/// `NotFound` when no queue has the key, and `open_or_create` gave up on that instead of
/// trying again as it does when the key vanishes between its create and its open. Each open
/// must find the queue or `NotFound`; `open_or_create` may give up only as documented (`Io`,
/// after its rounds). Before the fix about 1 open in 400 hit the window here.
#[test]
fn a_queue_removed_while_it_is_being_opened_is_not_found_not_disconnected() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const OPENS: usize = 20_000;
    let dir = ipc_testkit::TempDir::new("attack-churn");
    std::fs::write(dir.join("key"), b"").unwrap();
    let key = sysv::Key::from_path(dir.join("key"), b'C').unwrap();
    let stop = AtomicBool::new(false);
    let mut unexpected = Vec::new();
    std::thread::scope(|s| {
        let churn = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(q) = sysv::Queue::create(key) {
                    q.remove_guard().remove().unwrap();
                }
            }
        });
        for i in 0..OPENS {
            let r = if i % 2 == 0 {
                sysv::Queue::open(key, ipc_mq::Access::ReadWrite).map(|q| (q, false))
            } else {
                sysv::Queue::open_or_create(key).map(|q| {
                    let created = q.was_created();
                    (q, created)
                })
            };
            match r {
                Ok((q, created)) => {
                    if created {
                        let _ = q.remove();
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound && i % 2 == 0 => {}
                Err(e) if e.kind() == ErrorKind::Io && e.to_string().contains("kept") => {}
                Err(e) => unexpected.push(e.to_string()),
            }
        }
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
    });
    if let Ok(q) = sysv::Queue::open(key, ipc_mq::Access::ReadWrite) {
        q.remove().unwrap();
    }
    assert!(
        unexpected.is_empty(),
        "{} of {OPENS} opens failed: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(3)]
    );
}
