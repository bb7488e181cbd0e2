//! Load on one POSIX queue: 8 sender processes and 8 receiver processes at once. Every message
//! carries its sender, a sequence number and a checksum over a length that varies; receivers
//! check each one whole (no torn message) and record it, and the union of what they received
//! must be exactly what was sent: nothing lost, nothing twice. (With 8 receivers no order is
//! promised to any one of them, so order is not checked.)
//!
//! Default: 8 x 300 messages. `IPC_SOAK=1`: 8 x 20,000.

use std::collections::HashSet;
use std::io::Write;

use ipc_core::{Deadline, ErrorKind};
use ipc_mq::Access;
use ipc_mq::posix::Queue;
use ipc_testkit::{Ctx, TempDir, roles, spawn, unique_posix_name, watchdog};

const SENDERS: u8 = 8;
const RECEIVERS: usize = 8;
const MSG_SIZE: usize = 128;
/// Header: sender (1), sequence (4), payload length (2); trailer: checksum (4).
const OVERHEAD: usize = 1 + 4 + 2 + 4;
const DATA_PRIORITY: u32 = 1;
/// Below every data message: taken only once the queue holds no data.
const STOP_PRIORITY: u32 = 0;

fn per_sender() -> u32 {
    if std::env::var_os("IPC_SOAK").is_some() {
        20_000
    } else {
        300
    }
}

fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn encode(sender: u8, seq: u32) -> Vec<u8> {
    let len = (seq as usize * 7 + sender as usize * 13) % (MSG_SIZE - OVERHEAD + 1);
    let mut m = Vec::with_capacity(OVERHEAD + len);
    m.push(sender);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&(len as u16).to_le_bytes());
    m.extend((0..len).map(|i| (i as u8) ^ (seq as u8).wrapping_mul(31) ^ sender));
    let c = checksum(&m);
    m.extend_from_slice(&c.to_le_bytes());
    m
}

/// Checks a received message whole; returns (sender, seq).
fn decode(m: &[u8]) -> (u8, u32) {
    assert!(m.len() >= OVERHEAD, "torn: {} bytes", m.len());
    let (body, sum) = m.split_at(m.len() - 4);
    assert_eq!(
        checksum(body).to_le_bytes(),
        sum,
        "torn or corrupted message"
    );
    let sender = body[0];
    let seq = u32::from_le_bytes(body[1..5].try_into().unwrap());
    let len = u16::from_le_bytes(body[5..7].try_into().unwrap()) as usize;
    assert_eq!(
        body.len(),
        7 + len,
        "length field disagrees with the message"
    );
    assert_eq!(m, encode(sender, seq), "content");
    (sender, seq)
}

/// `name sender count`
fn sender(ctx: &Ctx) {
    let a = ctx.args();
    let q = Queue::open(a[0], Access::WriteOnly).unwrap();
    let me: u8 = a[1].parse().unwrap();
    let n: u32 = a[2].parse().unwrap();
    for seq in 0..n {
        q.send_with_priority(&encode(me, seq), DATA_PRIORITY)
            .unwrap();
    }
}

/// `name outfile`: receives until a stop message, writes "sender seq" lines to `outfile`.
fn receiver(ctx: &Ctx) {
    let a = ctx.args();
    let q = Queue::open(a[0], Access::ReadOnly).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(a[1]).unwrap());
    let mut buf = [0u8; MSG_SIZE];
    let deadline = Deadline::after(watchdog());
    loop {
        let r = q.recv_deadline(&mut buf, deadline).unwrap();
        if r.priority == STOP_PRIORITY {
            assert_eq!(&buf[..r.len], b"stop");
            break;
        }
        assert_eq!(r.priority, DATA_PRIORITY);
        let (s, seq) = decode(&buf[..r.len]);
        writeln!(out, "{s} {seq}").unwrap();
    }
    out.flush().unwrap();
}

roles!(sender, receiver);

#[test]
fn eight_senders_and_eight_receivers_on_one_queue_lose_and_duplicate_nothing() {
    let name = unique_posix_name("load8x8");
    let q = Queue::create(&*name, 10, MSG_SIZE).unwrap();
    let _unlink = q.remove_guard().unwrap();
    let dir = TempDir::new("load8x8");
    let n = per_sender();
    let receivers: Vec<_> = (0..RECEIVERS)
        .map(|r| {
            let out = dir.join(&format!("r{r}"));
            spawn("receiver")
                .arg(format!("{name} {}", out.display()))
                .start()
        })
        .collect();
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| spawn("sender").arg(format!("{name} {s} {n}")).start())
        .collect();
    for s in senders {
        s.wait_success();
    }
    // Every data message is queued (or taken) now; the stops rank below all of them.
    for _ in 0..RECEIVERS {
        q.send_with_priority_timeout(b"stop", STOP_PRIORITY, watchdog())
            .unwrap();
    }
    for r in receivers {
        r.wait_success();
    }
    let e = q.try_recv(&mut [0; MSG_SIZE]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "the queue is drained: {e}");

    let mut seen = HashSet::new();
    let mut per_receiver = Vec::new();
    for r in 0..RECEIVERS {
        let text = std::fs::read_to_string(dir.join(&format!("r{r}"))).unwrap();
        let mut count = 0;
        for line in text.lines() {
            let (s, seq) = line.split_once(' ').unwrap();
            let key: (u8, u32) = (s.parse().unwrap(), seq.parse().unwrap());
            assert!(seen.insert(key), "{key:?} received twice");
            count += 1;
        }
        per_receiver.push(count);
    }
    for s in 0..SENDERS {
        for seq in 0..n {
            assert!(seen.contains(&(s, seq)), "({s}, {seq}) lost");
        }
    }
    assert_eq!(seen.len(), SENDERS as usize * n as usize);
    eprintln!("messages per receiver: {per_receiver:?}");
}
