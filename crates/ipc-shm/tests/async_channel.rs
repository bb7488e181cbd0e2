//! The channel's async ends (feature `tokio`): a cancelled send sent nothing, a cancelled
//! receive took nothing, zero-copy loans and in-place receives across threads, no doorbell
//! ring per message while the receiver keeps up, and no doorbell drain per async wait.

#![cfg(feature = "tokio")]

use std::time::Duration;

use ipc_shm::{
    AsyncEndpoint, AsyncInPlace, AsyncLoan, ChannelOptions, ErrorKind, MessageReceiver,
    MessageSender, Readiness, Sender,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn a_cancelled_send_sent_nothing_and_a_cancelled_receive_took_nothing() {
    let (tx, mut rx) = ChannelOptions::new().capacity(1 << 10).pair().unwrap();
    runtime().block_on(async {
        let mut tx = AsyncEndpoint::new(tx).unwrap();
        let mut sent = 0u32;
        while tx.get_mut().try_send(&sent.to_le_bytes()).is_ok() {
            sent += 1;
        }
        let cut = tokio::time::timeout(Duration::from_millis(20), tx.send(b"cancelled")).await;
        assert!(cut.is_err(), "the ring is full: the send waits");
        let mut buf = [0u8; 64];
        for expected in 0..sent {
            let n = rx.try_recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], expected.to_le_bytes());
        }
        assert_eq!(
            rx.try_recv(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "the cancelled send sent nothing"
        );

        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(20), rx.recv(&mut buf)).await;
        assert!(cut.is_err(), "the ring is empty: the receive waits");
        tx.send(b"after").await.unwrap();
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"after", "the cancelled receive took nothing");
    });
}

#[test]
fn loans_and_in_place_receives_across_threads_through_a_small_ring() {
    const N: u32 = 5_000;
    let (tx, rx) = ChannelOptions::new().capacity(1 << 10).pair().unwrap();
    let sender = std::thread::spawn(move || {
        runtime().block_on(async {
            let mut tx = AsyncEndpoint::new(tx).unwrap();
            for i in 0..N {
                let len = 4 + (i as usize % 200);
                let mut loan = tx.loan(len).await.unwrap();
                loan[..4].copy_from_slice(&i.to_le_bytes());
                loan[4..].fill(i as u8);
                loan.commit();
            }
        })
    });
    runtime().block_on(async {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        for i in 0..N {
            let m = rx.recv_in_place().await.unwrap();
            assert_eq!(m.len(), 4 + (i as usize % 200));
            assert_eq!(&m[..4], i.to_le_bytes());
            assert!(m[4..].iter().all(|&b| b == i as u8));
        }
        sender.join().unwrap();
        let e = rx.recv_in_place().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
    });
}

/// Whether `fd` is readable now (`poll` with a zero timeout).
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).unwrap() == 1
}

/// Sends `msg` from another thread after 50 ms (long after the receiver armed its doorbell).
fn send_later(mut tx: Sender, msg: &'static [u8]) -> std::thread::JoinHandle<Sender> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx.send(msg).unwrap();
        tx
    })
}

#[test]
fn an_async_wait_leaves_the_doorbell_undrained_and_disarm_drains_it() {
    // The adapter's reactor is edge-triggered: it ends its waits with
    // `disarm_edge_triggered`, which saves the eventfd `read`; a level-triggered poll loop
    // calls `disarm`, which drains.
    let (tx, rx) = ChannelOptions::new().pair().unwrap();
    runtime().block_on(async {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut buf = [0u8; 8];
        let late = send_later(tx, b"late");
        assert_eq!(rx.recv(&mut buf).await.unwrap(), 4);
        let tx = late.join().unwrap();
        // The wait was rung (by the sender, or by the bell thread's slice: either writes the
        // eventfd) and the adapter left the count.
        let rung = |rx: &mut AsyncEndpoint<ipc_shm::Receiver>| {
            readable(rx.get_mut().readiness_fd().unwrap())
        };
        assert!(rung(&mut rx), "rung, not drained");
        // The undrained doorbell does not keep the next wait from being woken.
        let again = send_later(tx, b"again");
        assert_eq!(rx.recv(&mut buf).await.unwrap(), 5);
        let _tx = again.join().unwrap();
        assert!(rung(&mut rx), "rung, not drained");
        let end = rx.get_mut();
        end.disarm();
        assert!(!readable(end.readiness_fd().unwrap()), "drained by disarm");
    });
}

#[test]
fn the_doorbell_rings_at_most_once_per_wait() {
    // A burst committed while the receiver waits wakes it once, not once per message.
    let (mut tx, rx) = ChannelOptions::new().pair().unwrap();
    runtime().block_on(async {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let before = rx.get_ref().doorbell_rings();
        let burst = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for i in 0..100u32 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
            tx
        });
        let mut buf = [0u8; 8];
        rx.recv(&mut buf).await.unwrap();
        let _tx = burst.join().unwrap();
        for _ in 1..100 {
            rx.recv(&mut buf).await.unwrap();
        }
        let rings = rx.get_ref().doorbell_rings().wrapping_sub(before);
        assert!(rings <= 2, "{rings} rings for one wait");
    });
}

#[test]
fn a_blocking_receive_after_a_cancelled_async_one_is_still_woken() {
    // The cancelled wait leaves the bell thread asleep on the sender's word; the sender's
    // wake-up must still reach the blocking receive.
    let (tx, rx) = ChannelOptions::new().pair().unwrap();
    let mut rx = runtime().block_on(async {
        let mut rx = AsyncEndpoint::new(rx).unwrap();
        let mut buf = [0u8; 8];
        let cut = tokio::time::timeout(Duration::from_millis(20), rx.recv(&mut buf)).await;
        assert!(cut.is_err());
        rx.into_inner()
    });
    let sender = std::thread::spawn(move || {
        let mut tx = tx;
        std::thread::sleep(Duration::from_millis(100));
        tx.send(b"late").unwrap();
        tx
    });
    // Blocking without a deadline: a lost wake-up is a hang, which the watchdog reports.
    ipc_testkit::within_watchdog("blocking receive after a cancelled async one", move || {
        let mut buf = [0u8; 8];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late");
        drop(sender.join().unwrap());
    });
}

/// The async ends' futures are `Send` (the ends are `Send`, not `Sync`), so tasks that own the
/// channel's and the pub-sub's ends can be spawned on a multi-thread runtime and moved between
/// its worker threads at every `.await`.
#[test]
fn async_ends_run_as_tasks_on_a_multi_thread_runtime() {
    const COUNT: u32 = 2_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    let (tx, rx) = ChannelOptions::new().capacity(1 << 10).pair().unwrap();
    let seg = std::sync::Arc::new(
        ipc_shm::PubSubOptions::new()
            .slots(8)
            .max_message(64)
            .subscribers(2)
            .create_memfd("async-mt")
            .unwrap(),
    );
    let publisher = ipc_shm::Publisher::open(seg.clone()).unwrap();
    let subscriber = ipc_shm::Subscriber::open(seg).unwrap();
    rt.block_on(async {
        let send = tokio::spawn(async move {
            let mut tx = AsyncEndpoint::new(tx).unwrap();
            let mut publisher = AsyncEndpoint::new(publisher).unwrap();
            for i in 0..COUNT {
                tx.send(&i.to_le_bytes()).await.unwrap();
                publisher.send(&i.to_le_bytes()).await.unwrap();
                if i % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let recv = tokio::spawn(async move {
            let mut rx = AsyncEndpoint::new(rx).unwrap();
            let mut sub = AsyncEndpoint::new(subscriber).unwrap();
            let mut buf = [0u8; 64];
            for i in 0..COUNT {
                let n = rx.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], i.to_le_bytes());
                let n = sub.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], i.to_le_bytes());
            }
            let e = rx.recv(&mut buf).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Disconnected, "{e}");
        });
        tokio::time::timeout(Duration::from_secs(60), async {
            send.await.unwrap();
            recv.await.unwrap();
        })
        .await
        .expect("watchdog: the tasks never finished");
    });
}
