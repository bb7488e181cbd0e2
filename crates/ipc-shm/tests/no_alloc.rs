//! The expected paths of the shared-memory channel allocate nothing: `try_send` on a full ring,
//! `try_recv`/`try_recv_in_place` on an empty one, `try_loan` without room, and the timed-out
//! sends and receives, while the error still names the segment when displayed.

use std::time::Duration;

use ipc_shm::prelude::*;
use ipc_shm::{ChannelOptions, Receiver, Sender};
use ipc_testkit::alloc::{Counting, allocations};

#[global_allocator]
static ALLOC: Counting = Counting;

/// A channel with room for a few small messages, filled to the brim.
fn full_and_empty() -> ((Sender, Receiver), (Sender, Receiver)) {
    let opts = ChannelOptions::new().capacity(256).max_message(64);
    let (mut tx, rx) = opts.pair().unwrap();
    while tx.try_send(&[7; 40]).is_ok() {}
    (opts.pair().unwrap(), (tx, rx))
}

#[test]
fn would_block_and_timed_out_allocate_nothing() {
    let ((_tx_e, mut rx_empty), (mut tx_full, _rx_f)) = full_and_empty();
    let mut buf = [0u8; 64];
    let short = Duration::from_micros(200);
    // Warm up: the first waits open the peer's pidfd and register it with the watcher thread
    // (once per peer), and tracing call sites register themselves.
    for _ in 0..2 {
        let _ = rx_empty.try_recv(&mut buf);
        let _ = rx_empty.recv_timeout(&mut buf, short);
        let _ = tx_full.try_send(&[1; 40]);
        let _ = tx_full.send_timeout(&[1; 40], short);
        let _ = tx_full.try_loan(40).map(drop);
        let _ = rx_empty.try_recv_in_place().map(drop);
    }
    let n = allocations(|| {
        // More than 64 polls: the liveness check every 64th empty poll is covered too.
        for _ in 0..200 {
            let e = rx_empty.try_recv(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = tx_full.try_send(&[1; 40]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = tx_full.try_loan(40).map(drop).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            let e = rx_empty.try_recv_in_place().map(drop).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
        }
        for _ in 0..3 {
            let e = rx_empty.recv_timeout(&mut buf, short).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            let e = tx_full.send_timeout(&[1; 40], short).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
        }
    });
    assert_eq!(n, 0, "the expected paths allocated {n} times");
    // The context is all there when the error is reported.
    let e = rx_empty.try_recv(&mut buf).unwrap_err();
    assert_eq!(
        e.to_string(),
        "recv memfd \"ipc-shm channel\": operation would block (empty)"
    );
    let e = tx_full.send_timeout(&[1; 40], short).unwrap_err();
    assert_eq!(e.to_string(), "send memfd \"ipc-shm channel\": timed out");
}
