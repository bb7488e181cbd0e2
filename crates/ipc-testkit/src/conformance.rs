//! The conformance suite: one set of cross-process checks written against the core traits,
//! instantiated for every mechanism with [`conformance_suite!`](crate::conformance_suite).
//!
//! A mechanism is described once, as a [`Fixture`] (how to make a channel, how to hand either
//! end to a child process, how the child adopts it; the benchmark's library rows use the same
//! fixtures), then one line in a test file runs the suite over it:
//!
//! ```text
//! ipc_testkit::conformance_suite!(ipc_bench::fixtures::StreamPipe);
//! ```
//!
//! Every check runs across real processes: a child re-executed from the test binary holds one
//! end. The checks: every message arrives exactly once, intact, in order, with its boundaries
//! (proptest scripts, both directions); empty and maximum-size messages; `try_` on empty or full
//! gives would-block; timeouts give timed-out and do not return early; a dropped sender lets the
//! receiver drain and then see disconnected; a SIGKILLed peer is reported as disconnected, never
//! as a hang; an oversized message gets a typed error and nothing already queued is lost; a
//! receive buffer that is too small keeps the message queued.

use std::time::{Duration, Instant};

use ipc_core::{Blocked, Error, ErrorKind, MessageReceiver, MessageSender};
use proptest::prelude::*;

use crate::fixture::Fixture;
use crate::script::Script;
use crate::{Child, Ctx, spawn, watchdog};

/// A new channel with the mechanism's defaults; panics, naming the mechanism, if it cannot be
/// made.
fn channel<M: Fixture>() -> (M::Tx, M::Rx, M::Guard) {
    M::channel(None).unwrap_or_else(|e| panic!("{}: make a channel: {e}", M::NAME))
}

fn adopt_tx<M: Fixture>(ctx: &Ctx) -> M::Tx {
    M::adopt_tx(ctx).unwrap_or_else(|e| panic!("{}: adopt the sending end: {e}", M::NAME))
}

fn adopt_rx<M: Fixture>(ctx: &Ctx) -> M::Rx {
    M::adopt_rx(ctx).unwrap_or_else(|e| panic!("{}: adopt the receiving end: {e}", M::NAME))
}

/// How many proptest cases each cross-process property runs: `IPC_CONFORMANCE_CASES`, else
/// `PROPTEST_CASES`, else 16.
pub fn cases() -> u32 {
    ["IPC_CONFORMANCE_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(16)
}

fn recv_checked<R: MessageReceiver>(rx: &mut R, buf: &mut [u8]) -> Result<usize, Error> {
    rx.recv_timeout(buf, watchdog())
}

/// How long one wait lasts before the peer process is checked on.
const SLICE: Duration = Duration::from_millis(50);

/// Runs `op` (a send or receive taking a timeout) in short slices until it succeeds or fails
/// otherwise, the watchdog runs out, or `peer` (the process at the other end) fails. A peer that
/// fails is reported with its stderr at once: mechanisms that do not detect a dead peer would
/// otherwise wait for the whole watchdog.
fn while_peer_lives<T>(
    mut peer: Option<&mut Child>,
    mut op: impl FnMut(Duration) -> Result<T, Error>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match op(SLICE) {
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                if let Some(out) = peer
                    .as_deref_mut()
                    .and_then(|c| c.wait_timeout(Duration::ZERO))
                {
                    if !out.success() {
                        return Err(format!(
                            "the peer process failed ({}); its stderr:\n{}",
                            out.status, out.stderr
                        ));
                    }
                }
                if start.elapsed() > watchdog() {
                    return Err(format!(
                        "watchdog: still waiting after {:?}: {e}",
                        watchdog()
                    ));
                }
            }
            r => return r.map_err(|e| e.to_string()),
        }
    }
}

/// Receives every message of `script` in order and checks each byte for byte.
fn receive_script<R: MessageReceiver>(
    rx: &mut R,
    script: &Script,
    mut peer: Option<&mut Child>,
) -> Result<(), String> {
    // A buffer of the endpoint's maximum always suffices (some mechanisms require it).
    let mut buf = vec![0u8; rx.max_message_size().max(script.max_size()).max(1)];
    for seq in 0..script.sizes.len() {
        let n = while_peer_lives(peer.as_deref_mut(), |t| rx.recv_timeout(&mut buf, t))
            .map_err(|e| format!("receiving message {seq} of {}: {e}", script.sizes.len()))?;
        script.check(seq, &buf[..n])?;
    }
    Ok(())
}

/// After the sender is gone: the next receive must say disconnected (or, for mechanisms without
/// peers, that nothing more is queued).
fn expect_end<M: Fixture>(rx: &mut M::Rx) -> Result<(), String> {
    let mut buf = vec![0u8; rx.max_message_size()];
    let r = if M::DETECTS_DISCONNECT {
        recv_checked(rx, &mut buf)
    } else {
        rx.try_recv(&mut buf)
    };
    match r {
        Err(e) if M::DETECTS_DISCONNECT && e.kind() == ErrorKind::Disconnected => Ok(()),
        Err(e) if !M::DETECTS_DISCONNECT && e.kind() == ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(format!(
            "after the last message: expected the end, got error {e}"
        )),
        Ok(n) => Err(format!(
            "after the last message: an extra {n}-byte message arrived"
        )),
    }
}

fn send_script<T: MessageSender>(
    tx: &mut T,
    script: &Script,
    mut peer: Option<&mut Child>,
) -> Result<(), String> {
    let mut msg = Vec::new();
    for seq in 0..script.sizes.len() {
        script.fill(seq, &mut msg);
        // `Incomplete`: a byte-stream sender started the message and finishes it first thing
        // on the next send (or on drop): sent, not to be sent again.
        while_peer_lives(peer.as_deref_mut(), |t| match tx.send_timeout(&msg, t) {
            Err(e) if e.kind() == ErrorKind::Incomplete => Ok(()),
            r => r,
        })
        .map_err(|e| format!("sending message {seq}: {e}"))?;
    }
    Ok(())
}

/// Child role: adopt the sending end, send the script in the argument (`mode|script`), then
/// exit (`mode` = `exit`) or report `sent` and wait to be killed (`mode` = `park`).
pub fn role_send<M: Fixture>(ctx: &Ctx) {
    let (mode, script) = ctx.arg().split_once('|').expect("mode|script");
    let script = Script::decode(script).expect("script");
    let mut tx = adopt_tx::<M>(ctx);
    send_script(&mut tx, &script, None).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    match mode {
        "park" => ctx.park("sent"),
        _ => drop(tx),
    }
}

/// Child role: adopt the receiving end, receive and check the script in the argument, then
/// check the end of the stream (`mode` = `end`) or just exit (`mode` = `exit`).
pub fn role_recv<M: Fixture>(ctx: &Ctx) {
    let (mode, script) = ctx.arg().split_once('|').expect("mode|script");
    let script = Script::decode(script).expect("script");
    let mut rx = adopt_rx::<M>(ctx);
    receive_script(&mut rx, &script, None).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    if mode == "end" {
        expect_end::<M>(&mut rx).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    }
}

/// Child role: adopt the receiving end, report `holding` and wait to be killed.
pub fn role_hold_rx<M: Fixture>(ctx: &Ctx) {
    let _rx = adopt_rx::<M>(ctx);
    ctx.park("holding");
}

/// Child role: adopt the sending end, report `holding` and wait to be killed.
pub fn role_hold_tx<M: Fixture>(ctx: &Ctx) {
    let _tx = adopt_tx::<M>(ctx);
    ctx.park("holding");
}

fn send_arg(mode: &str, script: &Script) -> String {
    format!("{mode}|{}", script.encode())
}

/// Child sends `script`, parent receives it: every message once, intact, in order, then the end.
pub fn child_to_parent<M: Fixture>(script: &Script) -> Result<(), String> {
    let (tx, mut rx, _guard) = channel::<M>();
    let mut child = M::pass_tx(tx, spawn("conf_send").arg(send_arg("exit", script))).start();
    receive_script(&mut rx, script, Some(&mut child))?;
    child.wait_success();
    expect_end::<M>(&mut rx)
}

/// Parent sends `script`, child receives and checks it, then sees the end when the parent
/// drops its sender.
pub fn parent_to_child<M: Fixture>(script: &Script) -> Result<(), String> {
    let (mut tx, rx, _guard) = channel::<M>();
    let mut child = M::pass_rx(rx, spawn("conf_recv").arg(send_arg("end", script))).start();
    send_script(&mut tx, script, Some(&mut child))?;
    drop(tx);
    child.wait_success();
    Ok(())
}

/// The proptest config the suite's properties use.
pub fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Each case spawns processes: shrinking hundreds of times would take minutes.
        max_shrink_iters: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs the script properties in both directions.
pub fn prop_scripts<M: Fixture>(to_child: bool) {
    let max = M::script_max();
    let mut runner = proptest::test_runner::TestRunner::new(proptest_config());
    runner
        .run(&crate::script::script(max, 48), |script| {
            let r = if to_child {
                parent_to_child::<M>(&script)
            } else {
                child_to_parent::<M>(&script)
            };
            r.map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
}

/// Empty messages and messages of exactly the endpoint's maximum size cross intact; a buffer of
/// exactly the maximum suffices.
pub fn empty_and_max_size<M: Fixture>() {
    let (tx, mut rx, _guard) = channel::<M>();
    let max = tx.max_message_size();
    assert!(
        rx.max_message_size() >= max,
        "{}: receiver maximum {} below sender maximum {max}",
        M::NAME,
        rx.max_message_size()
    );
    let script = Script {
        sender: 7,
        sizes: vec![0, max, 0, 1, max, max.saturating_sub(1)],
    };
    let child = M::pass_tx(tx, spawn("conf_send").arg(send_arg("exit", &script))).start();
    let mut buf = vec![0u8; max];
    for seq in 0..script.sizes.len() {
        let n = recv_checked(&mut rx, &mut buf)
            .unwrap_or_else(|e| panic!("{}: message {seq}: {e}", M::NAME));
        script
            .check(seq, &buf[..n])
            .unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    }
    child.wait_success();
}

/// `try_recv` on an empty channel is would-block (empty); `recv_timeout` is timed-out, not
/// before its timeout.
pub fn empty_would_block_and_times_out<M: Fixture>() {
    let (tx, mut rx, _guard) = channel::<M>();
    let mut child = M::pass_tx(tx, spawn("conf_hold_tx")).start();
    child.wait_checkpoint("holding");
    let mut buf = vec![0u8; rx.max_message_size().min(1 << 20)];
    let e = rx
        .try_recv(&mut buf)
        .expect_err("try_recv on an empty channel");
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{}: {e}", M::NAME);
    assert_eq!(e.blocked(), Some(Blocked::Empty), "{}: {e}", M::NAME);
    let timeout = Duration::from_millis(30);
    let start = Instant::now();
    let e = rx
        .recv_timeout(&mut buf, timeout)
        .expect_err("recv on an empty channel");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{}: {e}", M::NAME);
    assert!(start.elapsed() >= timeout, "{}: timed out early", M::NAME);
    child.kill_and_wait();
}

/// Fills the channel with `try_send` until would-block (full); `send_timeout` then times out;
/// everything accepted before is delivered intact once a receiver drains it.
pub fn full_would_block_and_times_out<M: Fixture>() {
    let (mut tx, rx, _guard) = channel::<M>();
    let mut holder = M::pass_rx(rx, spawn("conf_hold_rx")).start();
    holder.wait_checkpoint("holding");
    let size = tx.max_message_size().min(1000);
    let mut sent = 0usize;
    let mut msg = Vec::new();
    loop {
        assert!(sent < 10_000_000, "{}: never became full", M::NAME);
        crate::script::fill_message(9, sent as u32, size, &mut msg);
        match tx.try_send(&msg) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "{}: {e}", M::NAME);
                assert_eq!(e.blocked(), Some(Blocked::Full), "{}: {e}", M::NAME);
                break;
            }
        }
    }
    let timeout = Duration::from_millis(30);
    let start = Instant::now();
    let e = tx
        .send_timeout(&msg, timeout)
        .expect_err("send on a full channel");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{}: {e}", M::NAME);
    assert!(start.elapsed() >= timeout, "{}: timed out early", M::NAME);
    assert!(sent > 0, "{}: full before the first message", M::NAME);
    holder.kill_and_wait();
    if M::DETECTS_DISCONNECT {
        // The holder died: the sender learns it instead of blocking on a full channel forever.
        let e = tx
            .send_timeout(&msg, watchdog())
            .expect_err("send after the receiver died");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{}: {e}", M::NAME);
    }
}

/// The sender exits normally after sending: the receiver drains every message, then sees the
/// end.
pub fn dropped_sender_drains_then_disconnects<M: Fixture>() {
    let (tx, mut rx, _guard) = channel::<M>();
    let script = Script {
        sender: 3,
        sizes: vec![10, 0, 300, 17],
    };
    let child = M::pass_tx(tx, spawn("conf_send").arg(send_arg("exit", &script))).start();
    // Wait for the child to be gone first: everything is queued, no sender is left.
    child.wait_success();
    receive_script(&mut rx, &script, None).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    expect_end::<M>(&mut rx).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
}

/// A sender SIGKILLed after sending: what it sent arrives intact, then disconnected, not a hang.
pub fn killed_sender_is_disconnected<M: Fixture>() {
    let (tx, mut rx, _guard) = channel::<M>();
    let script = Script {
        sender: 5,
        sizes: vec![1, 2, 200, 0, 64],
    };
    let mut child = M::pass_tx(tx, spawn("conf_send").arg(send_arg("park", &script))).start();
    child.wait_checkpoint("sent");
    let out = child.kill_and_wait();
    assert!(out.killed(), "{}: {:?}", M::NAME, out.status);
    receive_script(&mut rx, &script, None).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    expect_end::<M>(&mut rx).unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
}

/// A receiver SIGKILLed: the sender's next send reports disconnected.
pub fn killed_receiver_is_disconnected<M: Fixture>() {
    let (mut tx, rx, _guard) = channel::<M>();
    let mut child = M::pass_rx(rx, spawn("conf_hold_rx")).start();
    child.wait_checkpoint("holding");
    child.kill_and_wait();
    let r = tx.send_timeout(b"anyone there?", watchdog());
    if M::DETECTS_DISCONNECT {
        let e = r.expect_err("send after the receiver died");
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{}: {e}", M::NAME);
    } else {
        r.unwrap_or_else(|e| panic!("{}: a queue keeps messages without a reader: {e}", M::NAME));
    }
}

/// An oversized message is refused with both sizes, and the messages around it arrive intact.
pub fn oversized_is_refused_and_nothing_lost<M: Fixture>() {
    let (mut tx, rx, _guard) = channel::<M>();
    let max = tx.max_message_size();
    let script = Script {
        sender: 11,
        sizes: vec![5, max.min(100), 33],
    };
    let child = M::pass_rx(rx, spawn("conf_recv").arg(send_arg("end", &script))).start();
    let send = |tx: &mut M::Tx, seq: usize| {
        tx.send_timeout(&script.message(seq), watchdog())
            .unwrap_or_else(|e| panic!("{}: message {seq}: {e}", M::NAME))
    };
    send(&mut tx, 0);
    send(&mut tx, 1);
    let big = vec![0xEE; max + 1];
    let e = tx.send(&big).expect_err("oversized send");
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{}: {e}", M::NAME);
    assert_eq!(e.message_size(), Some((max + 1, max)), "{}: {e}", M::NAME);
    let e = tx.try_send(&big).expect_err("oversized try_send");
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{}: {e}", M::NAME);
    send(&mut tx, 2);
    drop(tx);
    child.wait_success();
}

/// A receive buffer too small for the next message: message-too-large naming the size needed,
/// and the message stays queued for a retry with a large enough buffer.
pub fn small_buffer_keeps_the_message<M: Fixture>() {
    let (tx, mut rx, _guard) = channel::<M>();
    let size = tx.max_message_size().min(200);
    let script = Script {
        sender: 13,
        sizes: vec![size, 4],
    };
    let child = M::pass_tx(tx, spawn("conf_send").arg(send_arg("exit", &script))).start();
    child.wait_success();
    let mut small = vec![0u8; size - 1];
    let e = rx
        .recv_timeout(&mut small, watchdog())
        .expect_err("receive into a buffer one byte short");
    assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{}: {e}", M::NAME);
    let (need, have) = e.message_size().expect("sizes in the error");
    assert!(need >= size && have == size - 1, "{}: {e}", M::NAME);
    let mut buf = vec![0u8; need];
    let n = recv_checked(&mut rx, &mut buf).unwrap_or_else(|e| panic!("{}: retry: {e}", M::NAME));
    script
        .check(0, &buf[..n])
        .unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
    let n = recv_checked(&mut rx, &mut buf).unwrap_or_else(|e| panic!("{}: next: {e}", M::NAME));
    script
        .check(1, &buf[..n])
        .unwrap_or_else(|e| panic!("{}: {e}", M::NAME));
}

/// Instantiates the conformance suite for a [`Fixture`] in a test binary: registers the
/// suite's child roles (plus any extra roles listed after a `;`) and one `#[test]` per check.
#[macro_export]
macro_rules! conformance_suite {
    ($mech:ty $(; $($extra:ident),* $(,)?)?) => {
        fn conf_send(ctx: &$crate::Ctx) {
            $crate::conformance::role_send::<$mech>(ctx)
        }
        fn conf_recv(ctx: &$crate::Ctx) {
            $crate::conformance::role_recv::<$mech>(ctx)
        }
        fn conf_hold_rx(ctx: &$crate::Ctx) {
            $crate::conformance::role_hold_rx::<$mech>(ctx)
        }
        fn conf_hold_tx(ctx: &$crate::Ctx) {
            $crate::conformance::role_hold_tx::<$mech>(ctx)
        }
        $crate::roles!(conf_send, conf_recv, conf_hold_rx, conf_hold_tx $($(, $extra)*)?);

        #[test]
        fn conformance_scripts_child_to_parent() {
            $crate::conformance::prop_scripts::<$mech>(false);
        }
        #[test]
        fn conformance_scripts_parent_to_child() {
            $crate::conformance::prop_scripts::<$mech>(true);
        }
        #[test]
        fn conformance_empty_and_max_size() {
            $crate::conformance::empty_and_max_size::<$mech>();
        }
        #[test]
        fn conformance_empty_would_block_and_times_out() {
            $crate::conformance::empty_would_block_and_times_out::<$mech>();
        }
        #[test]
        fn conformance_full_would_block_and_times_out() {
            $crate::conformance::full_would_block_and_times_out::<$mech>();
        }
        #[test]
        fn conformance_dropped_sender_drains_then_disconnects() {
            $crate::conformance::dropped_sender_drains_then_disconnects::<$mech>();
        }
        #[test]
        fn conformance_killed_sender_is_disconnected() {
            $crate::conformance::killed_sender_is_disconnected::<$mech>();
        }
        #[test]
        fn conformance_killed_receiver_is_disconnected() {
            $crate::conformance::killed_receiver_is_disconnected::<$mech>();
        }
        #[test]
        fn conformance_oversized_is_refused_and_nothing_lost() {
            $crate::conformance::oversized_is_refused_and_nothing_lost::<$mech>();
        }
        #[test]
        fn conformance_small_buffer_keeps_the_message() {
            $crate::conformance::small_buffer_keeps_the_message::<$mech>();
        }
    };
}
