//! The expected paths of publish-subscribe and MPSC allocate nothing: `try_send` of a publisher held
//! back by a subscriber (Block), `try_recv`/`try_recv_in_place` with nothing new, and the
//! timed-out sends and receives, while the error still names the segment when displayed.

use std::sync::Arc;
use std::time::Duration;

use ipc_shm::prelude::*;
use ipc_shm::{Policy, PubSubOptions, Publisher, Subscriber};
use ipc_testkit::alloc::{Counting, allocations};

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn would_block_and_timed_out_allocate_nothing() {
    let opts = PubSubOptions::new()
        .slots(4)
        .max_message(64)
        .subscribers(2)
        .policy(Policy::Block);
    let seg = Arc::new(opts.create_memfd("ps-no-alloc").unwrap());
    let mut tx = Publisher::open(seg.clone()).unwrap();
    let mut slow = Subscriber::open(seg.clone()).unwrap();
    while tx.try_send(&[7; 40]).is_ok() {}
    let mut buf = [0u8; 64];
    while slow.try_recv(&mut buf).is_ok() {}
    // Hold the publisher back with a second subscriber that read nothing.
    let seg2 = Arc::new(opts.create_memfd("ps-no-alloc-2").unwrap());
    let mut tx2 = Publisher::open(seg2.clone()).unwrap();
    let _stuck = Subscriber::open(seg2).unwrap();
    while tx2.try_send(&[7; 40]).is_ok() {}
    let short = Duration::from_micros(200);
    // Warm up: the first checks open the publisher's pidfd; tracing call sites register.
    for _ in 0..2 {
        let _ = slow.try_recv(&mut buf);
        let _ = slow.recv_timeout(&mut buf, short);
        let _ = tx2.try_send(&[1; 40]);
        let _ = tx2.send_timeout(&[1; 40], short);
        let _ = slow.try_recv_in_place().map(drop);
    }
    let n = allocations(|| {
        for _ in 0..200 {
            let e = slow.try_recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = tx2.try_send(&[1; 40]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = slow.try_recv_in_place().map(drop).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
        }
        for _ in 0..3 {
            let e = slow.recv_timeout(&mut buf, short).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            let e = tx2.send_timeout(&[1; 40], short).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
        }
    });
    assert_eq!(n, 0, "the expected paths allocated {n} times");
    let e = slow.try_recv(&mut buf).unwrap_err();
    assert!(e.to_string().contains("ps-no-alloc"), "{e}");
    let e = tx2.try_send(&[1; 40]).unwrap_err();
    assert!(e.to_string().contains("ps-no-alloc-2"), "{e}");
    drop(tx);
}

#[test]
fn mpsc_would_block_and_timed_out_allocate_nothing() {
    use ipc_shm::{MpscConsumer, MpscOptions, MpscProducer};
    let opts = MpscOptions::new()
        .producers(2)
        .capacity(256)
        .max_message(64);
    let seg = Arc::new(opts.create_memfd("mpsc-no-alloc").unwrap());
    let mut rx = MpscConsumer::open(seg.clone()).unwrap();
    let mut tx = MpscProducer::open(seg.clone()).unwrap();
    let seg2 = Arc::new(opts.create_memfd("mpsc-no-alloc-2").unwrap());
    let _rx2 = MpscConsumer::open(seg2.clone()).unwrap();
    let mut full = MpscProducer::open(seg2).unwrap();
    while full.try_send(&[7; 40]).is_ok() {}
    let mut buf = [0u8; 64];
    let short = Duration::from_micros(200);
    for _ in 0..2 {
        let _ = rx.try_recv(&mut buf);
        let _ = rx.recv_timeout(&mut buf, short);
        let _ = full.try_send(&[1; 40]);
        let _ = full.send_timeout(&[1; 40], short);
    }
    let n = allocations(|| {
        for _ in 0..200 {
            let e = rx.try_recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = full.try_send(&[1; 40]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
        }
        for _ in 0..3 {
            let e = rx.recv_timeout(&mut buf, short).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            let e = full.send_timeout(&[1; 40], short).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
        }
    });
    assert_eq!(n, 0, "the expected paths allocated {n} times");
    let e = rx.try_recv(&mut buf).unwrap_err();
    assert!(e.to_string().contains("mpsc-no-alloc"), "{e}");
    drop(tx.try_send(b"x"));
}
