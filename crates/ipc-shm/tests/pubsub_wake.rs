//! The pub-sub publisher's hand-over on a shared CPU: a blocking publish that is half a ring
//! ahead of its slowest subscriber, every subscriber pinned to its CPU and the ring at least
//! 2 MiB but its half less, yields the CPU to them (counted by `Publisher::handovers`, never timed); with a
//! subscriber on another CPU, a small ring, a non-blocking publish or the lossy policy it
//! does not. Every wait runs under a watchdog.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::pubsub_testing::{CURSOR, PLACES};
use ipc_shm::{Policy, PubSubOptions, Publisher, Subscriber};
use ipc_testkit::{watchdog, within_watchdog};

mod cpu;
use cpu::{first_cpu, pin};

/// 8 slots of 256 KiB messages: a ring of just over 2 MiB, half of it 4 slots.
fn big(policy: Policy) -> PubSubOptions {
    PubSubOptions::new()
        .slots(8)
        .max_message(256 << 10)
        .subscribers(4)
        .policy(policy)
}

fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// Receives message `seq` of `len` bytes without waiting and checks every byte.
fn take(sub: &mut Subscriber, seq: u64, len: usize) {
    let mut buf = vec![0u8; len];
    let n = sub.recv_deadline(&mut buf, Deadline::Now).unwrap();
    assert_eq!(&buf[..n], &message(seq, len)[..], "message {seq}");
}

/// The publisher and its subscriber in one thread pinned to one CPU (the subscriber reads
/// only when told): each blocking publish from half a ring ahead on yields once, exactly; one
/// that does not wait (`Deadline::Now`) never does; once the subscriber caught up, the next
/// half ring goes without.
#[test]
fn a_publisher_sharing_its_cpu_yields_to_its_subscribers_half_a_ring_ahead() {
    within_watchdog("publisher and subscriber on one CPU", || {
        pin(first_cpu());
        let seg = Arc::new(big(Policy::Block).create_memfd("ps-handover").unwrap());
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let mut sub = Subscriber::open(seg).unwrap();
        let len = 1000;
        for seq in 0..8 {
            tx.send_timeout(&message(seq, len), watchdog()).unwrap();
        }
        // Messages 4 to 7 were published 4 or more ahead of the subscriber.
        assert_eq!(tx.handovers(), 4);
        for seq in 0..8 {
            take(&mut sub, seq, len);
        }
        for seq in 8..12 {
            tx.send_timeout(&message(seq, len), watchdog()).unwrap();
        }
        assert_eq!(tx.handovers(), 4, "less than half a ring ahead");
        for seq in 12..16 {
            tx.send_deadline(&message(seq, len), Deadline::Now).unwrap();
        }
        assert_eq!(tx.handovers(), 4, "a publish that must not wait yielded");
        for seq in 8..16 {
            take(&mut sub, seq, len);
        }
    });
}

/// No hand-over where it cannot keep anything in the cache or must not wait: a ring under
/// 2 MiB or one whose half is not, the lossy policy, a subscriber pinned to another CPU (if there is one).
#[test]
fn no_hand_over_for_a_small_ring_the_lossy_policy_or_a_subscriber_elsewhere() {
    within_watchdog("hand-over exceptions", || {
        let mine = first_cpu();
        pin(mine);
        let small = PubSubOptions::new().slots(8).max_message(4096);
        // Half of it (2 MiB and 256 bytes) would not stay in the cache either.
        let huge = PubSubOptions::new().slots(4).max_message(1 << 20);
        for (what, opts) in [
            ("small ring", small),
            ("huge ring", huge),
            ("lossy", big(Policy::Lossy)),
        ] {
            let seg = Arc::new(opts.create_memfd("ps-no-handover").unwrap());
            let mut tx = Publisher::open(seg.clone()).unwrap();
            let mut sub = Subscriber::open(seg).unwrap();
            let n = if what == "huge ring" { 4 } else { 8 };
            for seq in 0..n {
                tx.send_timeout(&message(seq, 100), watchdog()).unwrap();
            }
            assert_eq!(tx.handovers(), 0, "{what}");
            for seq in 0..n {
                take(&mut sub, seq, 100);
            }
        }
        let Some(theirs) = other_cpu(mine) else {
            eprintln!("one CPU only: the subscriber elsewhere is not tried");
            return;
        };
        let seg = Arc::new(big(Policy::Block).create_memfd("ps-elsewhere").unwrap());
        let mut tx = Publisher::open(seg.clone()).unwrap();
        // Joined from a thread pinned to another CPU: its place names that CPU.
        let mut sub = std::thread::spawn(move || {
            pin(theirs);
            Subscriber::open(seg).unwrap()
        })
        .join()
        .unwrap();
        for seq in 0..8 {
            tx.send_timeout(&message(seq, 100), watchdog()).unwrap();
        }
        assert_eq!(tx.handovers(), 0, "a subscriber on another CPU");
        for seq in 0..8 {
            take(&mut sub, seq, 100);
        }
    });
}

/// A CPU this process may run on other than `mine`.
fn other_cpu(mine: usize) -> Option<usize> {
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    (0..rustix::thread::CpuSet::MAX_CPU).find(|&c| c != mine && allowed.is_set(c))
}

/// A stream through a hand-over ring, publisher and subscriber threads on one CPU: every
/// message arrives, in order and intact, whatever the yields interleave.
#[test]
fn a_stream_on_one_cpu_with_hand_overs_arrives_whole_and_in_order() {
    within_watchdog("a stream on one CPU", || {
        let cpu = first_cpu();
        pin(cpu);
        let seg = Arc::new(
            big(Policy::Block)
                .create_memfd("ps-handover-stream")
                .unwrap(),
        );
        let mut tx = Publisher::open(seg.clone()).unwrap();
        let count = 200u64;
        let len = 64 << 10;
        let (joined, ready) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            pin(cpu);
            let mut sub = Subscriber::open(seg).unwrap();
            joined.send(()).unwrap();
            let mut buf = vec![0u8; len];
            for seq in 0..count {
                let n = sub.recv_timeout(&mut buf, watchdog()).unwrap();
                assert_eq!(&buf[..n], &message(seq, len)[..], "message {seq}");
            }
        });
        ready.recv().unwrap();
        for seq in 0..count {
            tx.send_timeout(&message(seq, len), watchdog()).unwrap();
        }
        reader.join().unwrap();
    });
}

/// A subscriber's cursor scribbled while the hand-over is on (a hostile peer): the publishes
/// the last good scan left room for go through, then the publisher reports `Corrupted`; never
/// a hang, a panic or a yield per call on bad state.
#[test]
fn a_scribbled_cursor_under_the_hand_over_is_corrupted_never_a_hang() {
    within_watchdog("hand-over on a scribbled cursor", || {
        pin(first_cpu());
        for val in [1u64 << 40, u64::MAX] {
            let seg = Arc::new(
                big(Policy::Block)
                    .create_memfd("ps-handover-scribble")
                    .unwrap(),
            );
            let mut tx = Publisher::open(seg.clone()).unwrap();
            let _sub = Subscriber::open(seg.clone()).unwrap();
            for seq in 0..4 {
                tx.send_timeout(&message(seq, 1000), watchdog()).unwrap();
            }
            seg.atomic_u64(PLACES + CURSOR)
                .unwrap()
                .store(val, Ordering::SeqCst);
            let mut corrupted = false;
            for seq in 4..16 {
                match tx.send_timeout(&message(seq, 1000), Duration::from_millis(5)) {
                    Ok(()) => assert!(!corrupted, "a send after Corrupted went through"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Corrupted, "cursor {val:#x}: {e}");
                        corrupted = true;
                    }
                }
            }
            assert!(corrupted, "cursor {val:#x}: never reported");
            assert_eq!(tx.handovers(), 0, "cursor {val:#x}: yielded on bad state");
        }
    });
}
