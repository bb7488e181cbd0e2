//! Publish-subscribe and many-to-one ends in async code (feature `tokio`), across real
//! processes: tokio subscribers and a tokio consumer receiving every message in order, a
//! killed publisher, producer, subscriber or consumer seen without a hang, cancelled receives
//! and sends that took or sent nothing, and a blocking receive still woken after a cancelled
//! async one. Every wait runs under a watchdog.

#![cfg(feature = "tokio")]

mod common;
use common::{check, message};
use std::sync::Arc;
use std::time::Duration;

use ipc_core::{ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{
    AsyncEndpoint, AsyncInPlace, MpscConsumer, MpscOptions, MpscProducer, Policy, PubSubOptions,
    Publisher, Segment, Subscriber,
};
use ipc_testkit::{Ctx, roles, spawn, unique_posix_name, watchdog, within_watchdog};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs the future `make` returns on a fresh runtime under the watchdog: a lost wake-up is a
/// failure, not a hang. (The future is made on the watchdog's thread, which runs it.)
fn block_on<T: Send + 'static, F: std::future::Future<Output = T>>(
    what: &str,
    make: impl FnOnce() -> F + Send + 'static,
) -> T {
    within_watchdog(what, move || {
        runtime().block_on(async move {
            tokio::time::timeout(watchdog(), make())
                .await
                .expect("watchdog: an async wait never ended")
        })
    })
}

fn pubsub(policy: Policy) -> PubSubOptions {
    PubSubOptions::new()
        .slots(8)
        .max_message(256)
        .subscribers(8)
        .policy(policy)
}

fn mpsc() -> MpscOptions {
    MpscOptions::new()
        .producers(4)
        .capacity(1 << 10)
        .max_message(200)
}

// ---- roles -------------------------------------------------------------------------------

/// Child: publish `count` messages on the pub-sub named in the argument once `subs`
/// subscribers joined (in bursts, pausing between them so the subscribers wait on their
/// doorbells), then close.
fn publish_by_name(ctx: &Ctx) {
    let args = ctx.args();
    let (count, subs): (u64, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let mut tx = Publisher::open(Segment::open(args[0]).unwrap()).unwrap();
    while tx.subscribers() < subs {
        std::thread::sleep(Duration::from_millis(1));
    }
    for seq in 0..count {
        tx.send_timeout(&message(0, seq), watchdog()).unwrap();
        if seq % 97 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Child: publish `count` messages on the inherited segment, then park (to be killed).
fn publish_then_park(ctx: &Ctx) {
    let mut tx = Publisher::open(Segment::inherited("seg").unwrap()).unwrap();
    for seq in 0..ctx.arg().parse().unwrap() {
        tx.send_timeout(&message(0, seq), watchdog()).unwrap();
    }
    ctx.park("published");
}

/// Child: as producer `who`, send `count` messages into the MPSC named in the argument (in
/// bursts), then close.
fn produce_by_name(ctx: &Ctx) {
    let args = ctx.args();
    let (who, count): (u32, u64) = (args[1].parse().unwrap(), args[2].parse().unwrap());
    let mut tx = MpscProducer::open(Segment::open(args[0]).unwrap()).unwrap();
    ctx.checkpoint("joined");
    for seq in 0..count {
        tx.send_timeout(&message(who, seq), watchdog()).unwrap();
        if seq % 89 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Child: send `count` messages into the inherited MPSC, then park (to be killed).
fn produce_then_park(ctx: &Ctx) {
    let mut tx = MpscProducer::open(Segment::inherited("seg").unwrap()).unwrap();
    for seq in 0..ctx.arg().parse().unwrap() {
        tx.send_timeout(&message(7, seq), watchdog()).unwrap();
    }
    ctx.park("sent");
}

/// Child: join the inherited pub-sub and park without reading (to be killed).
fn subscribe_and_park(ctx: &Ctx) {
    let _sub = Subscriber::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.park("joined");
}

/// Child: open the inherited MPSC's consumer and park (to be killed).
fn consume_and_park(ctx: &Ctx) {
    let _rx = MpscConsumer::open(Segment::inherited("seg").unwrap()).unwrap();
    ctx.park("open");
}

roles!(
    publish_by_name,
    publish_then_park,
    produce_by_name,
    produce_then_park,
    subscribe_and_park,
    consume_and_park
);

// ---- across processes --------------------------------------------------------------------

/// A blocking pub-sub segment at a fresh POSIX name (removed when the last handle drops),
/// for a publisher process to open by that name.
fn named_pubsub(prefix: &str) -> (String, Arc<Segment>) {
    let name = unique_posix_name(prefix);
    let seg = pubsub(Policy::Block)
        .create_posix(name.as_str())
        .unwrap()
        .remove_on_drop();
    (name, Arc::new(seg))
}

#[test]
fn tokio_subscribers_receive_everything_from_a_publisher_process() {
    const COUNT: u64 = 3_000;
    let (name, seg) = named_pubsub("aps-sub");
    let subs: Vec<_> = (0..3)
        .map(|_| Subscriber::open(seg.clone()).unwrap())
        .collect();
    let child = spawn("publish_by_name")
        .arg(format!("{name} {COUNT} 3"))
        .start();
    block_on("tokio subscribers", move || async move {
        let tasks = subs.into_iter().map(|s| async move {
            let mut s = AsyncEndpoint::new(s).unwrap();
            let mut buf = [0u8; 256];
            for seq in 0..COUNT {
                let n = s.recv(&mut buf).await.unwrap();
                assert_eq!(check(&buf[..n]), (0, seq));
            }
            let e = s.recv(&mut buf).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            assert_eq!(s.get_ref().missed(), 0);
        });
        futures_join_all(tasks).await;
    });
    child.wait_success();
}

#[test]
fn a_tokio_subscriber_reads_a_publisher_process_in_place() {
    const COUNT: u64 = 2_000;
    let (name, seg) = named_pubsub("aps-inplace");
    let sub = Subscriber::open(seg.clone()).unwrap();
    let child = spawn("publish_by_name")
        .arg(format!("{name} {COUNT} 1"))
        .start();
    block_on("tokio in-place subscriber", move || async move {
        let mut sub = AsyncEndpoint::new(sub).unwrap();
        for seq in 0..COUNT {
            let msg = sub.recv_in_place().await.unwrap();
            assert_eq!(check(&msg), (0, seq));
        }
        let e = sub.recv_in_place().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        assert_eq!(sub.get_ref().missed(), 0);
    });
    child.wait_success();
}

#[test]
fn a_tokio_consumer_receives_every_producer_process_in_order() {
    const COUNT: u64 = 2_000;
    let name = unique_posix_name("aps-mpsc");
    let seg = Arc::new(mpsc().create_posix(name.as_str()).unwrap().remove_on_drop());
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut children: Vec<_> = (0..3u32)
        .map(|who| {
            spawn("produce_by_name")
                .arg(format!("{name} {who} {COUNT}"))
                .start()
        })
        .collect();
    // Every producer joined before the consumer may see "none left" between two of them.
    for c in &mut children {
        c.wait_checkpoint("joined");
    }
    block_on("a tokio consumer", move || async move {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut next = [0u64; 3];
        let mut buf = [0u8; 200];
        for _ in 0..3 * COUNT {
            let n = rx.recv(&mut buf).await.unwrap();
            let (who, seq) = check(&buf[..n]);
            assert_eq!(seq, next[who as usize], "producer {who} out of order");
            next[who as usize] += 1;
        }
        let e = rx.recv(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
    for c in children {
        c.wait_success();
    }
}

/// The MPSC consumer's async in-place receive: every producer process's messages, each in
/// its order, read where they lie, the place told matching the producer; then `Disconnected`.
/// A receive cancelled while waiting took nothing.
#[test]
fn a_tokio_consumer_reads_every_producer_process_in_place() {
    const COUNT: u64 = 2_000;
    let seg = Arc::new(mpsc().create_memfd("aps-mpsc-cancel").unwrap());
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    block_on("a cancelled in-place MPSC receive", move || async move {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(20), rx.recv_in_place())
            .await
            .is_err();
        assert!(cut, "nothing sent: the receive waits");
        let mut tx = MpscProducer::open(seg).unwrap();
        tx.send(&message(9, 0)).unwrap();
        let place = tx.place();
        drop(tx);
        let msg = rx.recv_in_place().await.unwrap();
        assert_eq!(
            (check(&msg), msg.place()),
            ((9, 0), place),
            "the cancelled one took nothing"
        );
        drop(msg);
        let e = rx.recv_in_place().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
    let name = unique_posix_name("aps-mpsc-inplace");
    let seg = Arc::new(mpsc().create_posix(name.as_str()).unwrap().remove_on_drop());
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut children: Vec<_> = (0..3u32)
        .map(|who| {
            spawn("produce_by_name")
                .arg(format!("{name} {who} {COUNT}"))
                .start()
        })
        .collect();
    for c in &mut children {
        c.wait_checkpoint("joined");
    }
    block_on("a tokio in-place consumer", move || async move {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut next = [0u64; 3];
        let mut places = [usize::MAX; 3];
        for _ in 0..3 * COUNT {
            let msg = rx.recv_in_place().await.unwrap();
            let (who, seq) = check(&msg);
            let who = who as usize;
            assert_eq!(seq, next[who], "producer {who} out of order");
            if places[who] == usize::MAX {
                places[who] = msg.place();
            }
            assert_eq!(msg.place(), places[who], "producer {who}'s place");
            next[who] += 1;
        }
        let e = rx.recv_in_place().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
    });
    for c in children {
        c.wait_success();
    }
}

#[test]
fn a_killed_publisher_is_disconnected_in_async_code() {
    for policy in [Policy::Block, Policy::Lossy] {
        let seg = Arc::new(pubsub(policy).create_memfd("aps-kill-pub").unwrap());
        let sub = Subscriber::open(seg.clone()).unwrap();
        let mut child = spawn("publish_then_park")
            .fd("seg", seg.fd().unwrap())
            .arg("5")
            .start();
        child.wait_checkpoint("published");
        block_on(
            "an async subscriber of a publisher to be killed",
            move || async move {
                let mut sub = AsyncEndpoint::new(sub).unwrap();
                let mut buf = [0u8; 256];
                for seq in 0..5 {
                    let n = sub.recv(&mut buf).await.unwrap();
                    assert_eq!(check(&buf[..n]), (0, seq));
                }
                // Armed and waiting when the publisher dies: the death rings the doorbell.
                let killer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    assert!(child.kill_and_wait().killed());
                });
                let e = sub.recv(&mut buf).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
                killer.join().unwrap();
            },
        );
    }
}

#[test]
fn a_killed_producer_is_disconnected_in_async_code() {
    let seg = Arc::new(mpsc().create_memfd("aps-kill-prod").unwrap());
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut child = spawn("produce_then_park")
        .fd("seg", seg.fd().unwrap())
        .arg("5")
        .start();
    child.wait_checkpoint("sent");
    block_on(
        "an async consumer of a producer to be killed",
        move || async move {
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let mut buf = [0u8; 200];
            for seq in 0..5 {
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(check(&buf[..n]), (7, seq));
            }
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                assert!(child.kill_and_wait().killed());
            });
            let e = rx.recv(&mut buf).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            killer.join().unwrap();
            // The dead producer's place was given back: a new producer joins and is heard.
            let mut tx = MpscProducer::open(rx.get_ref().segment().clone()).unwrap();
            tx.send(&message(1, 0)).unwrap();
            let n = rx.recv(&mut buf).await.unwrap();
            assert_eq!(check(&buf[..n]), (1, 0));
        },
    );
}

#[test]
fn an_async_publish_blocked_by_a_killed_subscriber_goes_on() {
    let seg = Arc::new(pubsub(Policy::Block).create_memfd("aps-kill-sub").unwrap());
    let tx = Publisher::open(seg.clone()).unwrap();
    let mut child = spawn("subscribe_and_park")
        .fd("seg", seg.fd().unwrap())
        .start();
    child.wait_checkpoint("joined");
    block_on(
        "an async publisher held back by a subscriber",
        move || async move {
            let mut tx = AsyncEndpoint::new(tx).unwrap();
            for seq in 0..8 {
                tx.send(&message(0, seq)).await.unwrap();
            }
            // The ring is full for the parked subscriber: the next publish waits for it.
            let cut =
                tokio::time::timeout(Duration::from_millis(30), tx.send(&message(0, 8))).await;
            assert!(cut.is_err(), "a live subscriber holds the publisher back");
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                assert!(child.kill_and_wait().killed());
            });
            tx.send(&message(0, 8)).await.unwrap();
            killer.join().unwrap();
            assert_eq!(
                tx.get_ref().subscribers(),
                0,
                "the dead place was reclaimed"
            );
        },
    );
}

#[test]
fn an_async_producer_sees_a_killed_consumer() {
    let seg = Arc::new(mpsc().create_memfd("aps-kill-cons").unwrap());
    let mut child = spawn("consume_and_park")
        .fd("seg", seg.fd().unwrap())
        .start();
    child.wait_checkpoint("open");
    let tx = MpscProducer::open(seg).unwrap();
    block_on(
        "an async producer of a consumer to be killed",
        move || async move {
            let mut tx = AsyncEndpoint::new(tx).unwrap();
            let mut seq = 0;
            while tx.get_mut().try_send(&message(0, seq)).is_ok() {
                seq += 1;
            }
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                assert!(child.kill_and_wait().killed());
            });
            let e = tx.send(&message(0, seq)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
            killer.join().unwrap();
        },
    );
}

// ---- cancel safety -----------------------------------------------------------------------

#[test]
fn a_cancelled_receive_took_nothing_and_a_cancelled_publish_sent_nothing() {
    let seg = Arc::new(pubsub(Policy::Block).create_memfd("aps-cancel").unwrap());
    let tx = Publisher::open(seg.clone()).unwrap();
    let sub = Subscriber::open(seg.clone()).unwrap();
    let mut other = Subscriber::open(seg).unwrap();
    block_on("cancelled pub-sub calls", move || async move {
        let mut tx = AsyncEndpoint::new(tx).unwrap();
        let mut sub = AsyncEndpoint::new(sub).unwrap();
        let mut buf = [0u8; 256];
        let cut = tokio::time::timeout(Duration::from_millis(20), sub.recv(&mut buf)).await;
        assert!(cut.is_err(), "nothing published: the receive waits");
        for seq in 0..8 {
            tx.send(&message(0, seq)).await.unwrap();
        }
        let cut = tokio::time::timeout(Duration::from_millis(20), tx.send(&message(0, 99))).await;
        assert!(cut.is_err(), "the ring is full: the publish waits");
        for seq in 0..8 {
            let n = sub.recv(&mut buf).await.unwrap();
            assert_eq!(
                check(&buf[..n]),
                (0, seq),
                "the cancelled receive took nothing"
            );
            let n = other.try_recv(&mut buf).unwrap();
            assert_eq!(check(&buf[..n]), (0, seq));
        }
        assert_eq!(
            other.try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "the cancelled publish sent nothing"
        );
        assert_eq!(tx.get_ref().published(), 8);
        // Cancelled again, then a publish from another thread wakes the next receive.
        let cut = tokio::time::timeout(Duration::from_millis(20), sub.recv(&mut buf)).await;
        assert!(cut.is_err());
        let mut tx = tx.into_inner();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(&message(0, 8)).unwrap();
            tx
        });
        let n = sub.recv(&mut buf).await.unwrap();
        assert_eq!(check(&buf[..n]), (0, 8));
        drop(late.join().unwrap());
    });
}

#[test]
fn a_cancelled_in_place_receive_took_nothing() {
    let seg = Arc::new(
        pubsub(Policy::Block)
            .create_memfd("aps-cancel-in-place")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let sub = Subscriber::open(seg).unwrap();
    block_on("cancelled in-place receive", move || async move {
        let mut sub = AsyncEndpoint::new(sub).unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(20), sub.recv_in_place())
            .await
            .is_err();
        assert!(cut, "nothing published: the receive waits");
        for seq in 0..3 {
            tx.send(&message(0, seq)).unwrap();
        }
        {
            let first = sub.recv_in_place().await.unwrap();
            assert_eq!(check(&first), (0, 0), "the cancelled receive took nothing");
        }
        for seq in 1..3 {
            let msg = sub.recv_in_place().await.unwrap();
            assert_eq!(
                check(&msg),
                (0, seq),
                "a dropped guard passes over its message only"
            );
        }
        let cut = tokio::time::timeout(Duration::from_millis(20), sub.recv_in_place())
            .await
            .is_err();
        assert!(cut, "all three taken: the receive waits again");
        tx.send(&message(0, 3)).unwrap();
        let msg = sub.recv_in_place().await.unwrap();
        assert_eq!(check(&msg), (0, 3));
    });
}

#[test]
fn a_cancelled_mpsc_receive_took_nothing_and_a_cancelled_send_sent_nothing() {
    let seg = Arc::new(mpsc().create_memfd("aps-cancel-mpsc").unwrap());
    let rx = MpscConsumer::open(seg.clone()).unwrap();
    let tx = MpscProducer::open(seg).unwrap();
    block_on("cancelled mpsc calls", move || async move {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut tx = AsyncEndpoint::new(tx).unwrap();
        let mut buf = [0u8; 200];
        let cut = tokio::time::timeout(Duration::from_millis(20), rx.recv(&mut buf)).await;
        assert!(cut.is_err(), "nothing sent: the receive waits");
        let mut sent = 0;
        while tx.get_mut().try_send(&message(0, sent)).is_ok() {
            sent += 1;
        }
        let cut = tokio::time::timeout(Duration::from_millis(20), tx.send(&message(0, sent))).await;
        assert!(cut.is_err(), "the ring is full: the send waits");
        for seq in 0..sent {
            let n = rx.recv(&mut buf).await.unwrap();
            assert_eq!(
                check(&buf[..n]),
                (0, seq),
                "the cancelled receive took nothing"
            );
        }
        assert_eq!(
            rx.get_mut().try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "the cancelled send sent nothing"
        );
        tx.send(&message(0, sent)).await.unwrap();
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(check(&buf[..n]), (0, sent));
    });
}

#[test]
fn blocking_receives_after_cancelled_async_ones_are_still_woken() {
    // A cancelled wait leaves the bell thread asleep on the word; the wake-up must still
    // reach the blocking receive that follows.
    let seg = Arc::new(
        pubsub(Policy::Block)
            .create_memfd("aps-cancel-block")
            .unwrap(),
    );
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let sub = Subscriber::open(seg).unwrap();
    let mseg = Arc::new(mpsc().create_memfd("aps-cancel-block-mpsc").unwrap());
    let rx = MpscConsumer::open(mseg.clone()).unwrap();
    let mut ptx = MpscProducer::open(mseg).unwrap();
    let (mut sub, mut rx) = block_on("cancelled async receives", move || async move {
        let mut sub = AsyncEndpoint::new(sub).unwrap();
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut buf = [0u8; 256];
        let cut = tokio::time::timeout(Duration::from_millis(20), sub.recv(&mut buf)).await;
        assert!(cut.is_err());
        let cut = tokio::time::timeout(Duration::from_millis(20), rx.recv(&mut buf)).await;
        assert!(cut.is_err());
        (sub.into_inner(), rx.into_inner())
    });
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        tx.send(&message(0, 0)).unwrap();
        ptx.send(&message(1, 0)).unwrap();
        (tx, ptx)
    });
    // Blocking without a deadline: a lost wake-up is a hang, which the watchdog reports.
    within_watchdog("blocking receives after cancelled async ones", move || {
        let mut buf = [0u8; 256];
        let n = sub.recv(&mut buf).unwrap();
        assert_eq!(check(&buf[..n]), (0, 0));
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(check(&buf[..n]), (1, 0));
        drop(late.join().unwrap());
    });
}

#[test]
fn the_publisher_and_producers_ring_only_ends_that_wait() {
    let seg = Arc::new(pubsub(Policy::Block).create_memfd("aps-rings").unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let sub = Subscriber::open(seg).unwrap();
    let mseg = Arc::new(mpsc().create_memfd("aps-rings-mpsc").unwrap());
    let rx = MpscConsumer::open(mseg.clone()).unwrap();
    let mut ptx = MpscProducer::open(mseg).unwrap();
    let (sub, rx, tx, ptx) = block_on("rings only for waiters", move || async move {
        let mut sub = AsyncEndpoint::new(sub).unwrap();
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut buf = [0u8; 256];
        // Nobody waits: messages committed now ring nothing, and receiving them needs no wait.
        for round in 0..3u64 {
            for seq in 0..6 {
                tx.send(&message(0, round * 6 + seq)).unwrap();
                ptx.send(&message(1, round * 6 + seq)).unwrap();
            }
            for seq in 0..6 {
                let n = sub.recv(&mut buf).await.unwrap();
                assert_eq!(check(&buf[..n]), (0, round * 6 + seq));
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(check(&buf[..n]), (1, round * 6 + seq));
            }
        }
        assert_eq!(sub.get_ref().doorbell_rings(), 0);
        assert_eq!(rx.get_ref().doorbell_rings(), 0);
        // Waiting: a message from another thread rings, then the wait is over.
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(&message(0, 18)).unwrap();
            tx
        });
        let n = sub.recv(&mut buf).await.unwrap();
        assert_eq!(check(&buf[..n]), (0, 18));
        let tx = late.join().unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            ptx.send(&message(1, 18)).unwrap();
            ptx
        });
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(check(&buf[..n]), (1, 18));
        let ptx = late.join().unwrap();
        (sub.into_inner(), rx.into_inner(), tx, ptx)
    });
    let (mut sub, mut rx, mut tx, mut ptx) = (sub, rx, tx, ptx);
    let (rang, rang_mpsc) = (sub.doorbell_rings(), rx.doorbell_rings());
    assert!(rang >= 1 && rang_mpsc >= 1, "{rang} {rang_mpsc}");
    // The waits were disarmed (the sleepers count and the flag are down again): more
    // messages ring nothing.
    let mut buf = [0u8; 256];
    for seq in 19..25 {
        tx.send(&message(0, seq)).unwrap();
        ptx.send(&message(1, seq)).unwrap();
        let n = sub.try_recv(&mut buf).unwrap();
        assert_eq!(check(&buf[..n]), (0, seq));
        let n = rx.try_recv(&mut buf).unwrap();
        assert_eq!(check(&buf[..n]), (1, seq));
    }
    assert_eq!(sub.doorbell_rings(), rang);
    assert_eq!(rx.doorbell_rings(), rang_mpsc);
}

/// Polls every future in `futs` to completion on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let mut futs: Vec<_> = futs.map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
