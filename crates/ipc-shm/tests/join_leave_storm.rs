//! Join/leave kill storms on ipc-testkit checkpoints: a process that joins and leaves a
//! pub-sub (as a subscriber) or an MPSC segment (as a producer) in a tight loop is `SIGKILL`ed
//! at a random moment after its checkpoint, again and again, so kills land at any step of
//! joining and leaving (the deterministic stops after each step are in `pubsub.rs` and
//! `mpsc.rs`). After every kill the publisher or consumer goes on without a hang, every message
//! a live peer gets is intact and in order, and every place can be joined again. Seeded by
//! `IPC_TEST_SEED`; the soak profile (`IPC_SOAK`) raises the rounds from 12 to 200.

use std::sync::Arc;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{
    MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions, Publisher, Segment, Subscriber,
};
use ipc_testkit::{
    Ctx, Rng, by_profile, kill_at_random, roles, unique_posix_name, watchdog, within_watchdog,
};

const PLACES: usize = 4;

/// Message `seq`: its number, then bytes derived from it.
fn message(seq: u64) -> Vec<u8> {
    let len = 8 + (seq as usize * 13) % 100;
    let mut v = seq.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (seq as usize + i) as u8));
    v
}

fn check(got: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(got[..8].try_into().unwrap());
    assert_eq!(got, &message(seq)[..], "message {seq} damaged");
    seq
}

/// Child: join the pub-sub named in the argument, read what is there, leave; forever.
fn subscribe_loop(ctx: &Ctx) {
    let seg = Arc::new(Segment::open(ctx.arg()).unwrap());
    ctx.checkpoint("looping");
    let mut buf = [0u8; 128];
    loop {
        // Every place may be held by a peer that is being killed: then try again.
        if let Ok(mut s) = Subscriber::open(seg.clone()) {
            while let Ok(n) = s.try_recv(&mut buf) {
                check(&buf[..n]);
            }
        }
    }
}

/// Child: join the MPSC named in the argument, send one message, leave; forever.
fn produce_loop(ctx: &Ctx) {
    let seg = Arc::new(Segment::open(ctx.arg()).unwrap());
    ctx.checkpoint("looping");
    for seq in 0u64.. {
        if let Ok(mut p) = MpscProducer::open(seg.clone()) {
            // Room or not, the place is left at once.
            let _ = p.try_send(&message(seq));
        }
    }
}

roles!(subscribe_loop, produce_loop);

#[test]
fn subscribers_killed_while_joining_and_leaving_never_stall_the_publisher() {
    let mut rng = Rng::new("pub-sub join/leave storm");
    let name = unique_posix_name("storm-ps");
    let seg = Arc::new(
        PubSubOptions::new()
            .slots(8)
            .max_message(128)
            .subscribers(PLACES)
            .policy(Policy::Block)
            .create_posix(name.as_str())
            .unwrap()
            .remove_on_drop(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut live = Subscriber::open(seg.clone()).unwrap();
    let mut seq = 0u64;
    for _ in 0..by_profile(12, 200) {
        kill_at_random(
            "subscribe_loop",
            &name,
            "looping",
            Duration::from_millis(20),
            &mut rng,
        );
        // Two laps of the ring past whatever the killed process left: its place is reclaimed
        // when it would hold the publisher back; the live subscriber sees every message.
        (tx, live, seq) = within_watchdog("publisher after a join/leave kill", move || {
            let mut buf = [0u8; 128];
            for _ in 0..16 {
                tx.send_deadline(&message(seq), Deadline::after(watchdog()))
                    .unwrap();
                let n = live.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(check(&buf[..n]), seq);
                seq += 1;
            }
            (tx, live, seq)
        });
        // Every other place can be joined (dead ones are taken over).
        let others: Vec<_> = (1..PLACES)
            .map(|_| Subscriber::open(seg.clone()).unwrap())
            .collect();
        drop(others);
    }
    drop(tx);
    let e = live.recv(&mut [0u8; 128]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
}

#[test]
fn producers_killed_while_joining_and_leaving_never_stall_the_consumer() {
    let mut rng = Rng::new("mpsc join/leave storm");
    let name = unique_posix_name("storm-mpsc");
    let seg = Arc::new(
        MpscOptions::new()
            .producers(PLACES)
            .capacity(1 << 10)
            .max_message(128)
            .create_posix(name.as_str())
            .unwrap()
            .remove_on_drop(),
    );
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut live = MpscProducer::open(seg.clone()).unwrap();
    let mut seq = 0u64;
    for _ in 0..by_profile(12, 200) {
        kill_at_random(
            "produce_loop",
            &name,
            "looping",
            Duration::from_millis(20),
            &mut rng,
        );
        // The live producer's messages come through in order, between whatever the killed
        // one committed (each checked whole), and its place is drained and given back.
        (rx, live, seq) = within_watchdog("consumer after a join/leave kill", move || {
            let mut buf = [0u8; 128];
            for _ in 0..16 {
                live.send_timeout(&message(1 << 40 | seq), watchdog())
                    .unwrap();
                loop {
                    let n = rx.recv_timeout(&mut buf, watchdog()).unwrap();
                    let got = check(&buf[..n]);
                    if got >> 40 == 1 {
                        assert_eq!(got, 1 << 40 | seq);
                        break;
                    }
                }
                seq += 1;
            }
            // Every other place can be joined: the consumer drains what the killed producer
            // left and gives its place back (its next receives check the processes).
            let others: Vec<_> = (1..PLACES)
                .map(|_| {
                    loop {
                        match MpscProducer::open(rx.segment().clone()) {
                            Ok(p) => break p,
                            Err(e) => {
                                assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
                                if let Ok(n) = rx.recv_timeout(&mut buf, Duration::from_millis(5)) {
                                    check(&buf[..n]);
                                }
                            }
                        }
                    }
                })
                .collect();
            drop(others);
            (rx, live, seq)
        });
    }
}
