//! The conformance suite for the shared-memory channel: a ring in a sealed memfd segment
//! (1 MiB by default), each end handed to a child by inheriting the segment (the parent
//! detaches its end, the child opens it); the fixture ([`ipc_bench::fixtures::ShmChannel`]) is
//! the one the benchmark's `shm` row measures. Plus a checksummed stream between two processes: ~3 s, or 10 s under
//! `IPC_SOAK=1`, random sizes, every message checked (sequence number and checksum).

use std::time::{Duration, Instant};

use ipc_core::{Deadline, ErrorKind, MessageReceiver, MessageSender};
use ipc_shm::{ChannelOptions, Segment, Sender};
use ipc_testkit::script::{check_message, fill_message};
use ipc_testkit::{Ctx, spawn, watchdog};

ipc_testkit::conformance_suite!(ipc_bench::fixtures::ShmChannel; stream_send);

/// The stream's ring: small enough to wrap often and to fill up, so both ends wait.
fn stream_options() -> ChannelOptions {
    ChannelOptions::new().capacity(1 << 16).max_message(20_000)
}

/// The length of message `seq` of the stream seeded `seed`: mostly small, sometimes up to the
/// maximum, sometimes empty (a deterministic function both processes compute).
fn stream_len(seed: u64, seq: u32) -> usize {
    let mut z = seed ^ u64::from(seq).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 29;
    let max = stream_options().max_message_size() as u64;
    (match z % 4 {
        0 => z % 17,
        1 => z % 300,
        2 => z % 5000,
        _ => z % (max + 1),
    }) as usize
}

/// Child: send the stream for the given seconds (copying sends, loans, shortened loans in
/// turn), then close the sender and print the count.
fn stream_send(ctx: &Ctx) {
    let args = ctx.args();
    let (secs, seed): (u64, u64) = (args[0].parse().unwrap(), args[1].parse().unwrap());
    let mut tx = Sender::open(Segment::inherited("seg").unwrap()).unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut msg = Vec::new();
    let mut seq = 0u32;
    while Instant::now() < until {
        for _ in 0..64 {
            let len = stream_len(seed, seq);
            fill_message(5, seq, len, &mut msg);
            let deadline = Deadline::after(watchdog());
            match seq % 3 {
                0 => tx.send_deadline(&msg, deadline).unwrap(),
                1 => {
                    let mut loan = tx.loan_deadline(len, deadline).unwrap();
                    loan.copy_from_slice(&msg);
                    loan.commit();
                }
                _ => {
                    let room = (len + 7).min(tx.max_message_size());
                    let mut loan = tx.loan_deadline(room, deadline).unwrap();
                    loan[..len].copy_from_slice(&msg);
                    loan.commit_len(len);
                }
            }
            seq += 1;
        }
    }
    drop(tx);
    eprintln!("sent {seq}");
}

#[test]
fn checksummed_stream_across_two_processes() {
    let secs = if std::env::var_os("IPC_SOAK").is_some() {
        10
    } else {
        3
    };
    let seed = u64::from(std::process::id()) << 20 ^ 0x5EED;
    let (tx, mut rx) = stream_options().pair().unwrap();
    let child = spawn("stream_send")
        .fd("seg", tx.detach().fd().unwrap())
        .arg(format!("{secs} {seed}"))
        .start();
    let mut buf = vec![0u8; rx.max_message_size()];
    let mut seq = 0u32;
    loop {
        // Copying receives and in-place reads in turn; each wait is bounded by the watchdog.
        let deadline = Deadline::after(watchdog());
        let r = if seq % 2 == 0 {
            rx.recv_deadline(&mut buf, deadline)
                .map(|n| check_message(5, seq, stream_len(seed, seq), &buf[..n]))
        } else {
            rx.recv_in_place_deadline(deadline)
                .map(|m| check_message(5, seq, stream_len(seed, seq), &m))
        };
        match r {
            Ok(check) => check.unwrap_or_else(|e| panic!("seed {seed}: {e}")),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::Disconnected,
                    "seed {seed}, message {seq}: {e}"
                );
                break;
            }
        }
        seq += 1;
    }
    let out = child.wait_success();
    assert!(
        out.stderr.contains(&format!("sent {seq}\n")),
        "received {seq}, the sender says: {}",
        out.stderr
    );
    assert!(seq > 0);
    eprintln!("{seq} messages checked in {secs} s");
}
