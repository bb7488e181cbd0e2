//! Messages the pattern tests (MPSC, async pub-sub and MPSC) send: each names its sender and
//! sequence number, and every byte of it can be checked; and a guard that fails a test whose
//! call hangs while its thread keeps owning the children.

/// Message `seq` of sender `who`: both numbers, then bytes derived from them.
#[allow(dead_code)] // Not every test binary sharing this module needs it.
pub(crate) fn message(who: u32, seq: u64) -> Vec<u8> {
    let len = 12 + (seq as usize * 7 + who as usize) % 150;
    let mut v = who.to_le_bytes().to_vec();
    v.extend(seq.to_le_bytes());
    v.extend((12..len).map(|i| (seq as usize ^ i ^ who as usize) as u8));
    v
}

/// (sender, seq) at the start of a [`message`] or a [`large`] one (at least 12 bytes).
#[allow(dead_code)]
fn sender_and_seq(got: &[u8]) -> (u32, u64) {
    assert!(got.len() >= 12, "a message of {} bytes", got.len());
    let who = u32::from_le_bytes(got[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(got[4..12].try_into().unwrap());
    (who, seq)
}

/// (sender, seq) of a message, after checking all of it.
#[allow(dead_code)]
pub(crate) fn check(got: &[u8]) -> (u32, u64) {
    let (who, seq) = sender_and_seq(got);
    assert_eq!(
        got,
        &message(who, seq)[..],
        "message {seq} of {who} damaged"
    );
    (who, seq)
}

/// Message `seq` of sender `who`, `len` bytes (at least 12): both numbers, then bytes derived
/// from them (the large messages of the MPSC's jump-back tests).
#[allow(dead_code)] // Not every test binary sharing this module needs it.
pub(crate) fn large(who: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut v = who.to_le_bytes().to_vec();
    v.extend(seq.to_le_bytes());
    v.extend((12..len).map(|i| (seq as usize ^ (i * 31) ^ who as usize) as u8));
    v
}

/// (sender, seq) of a [`large`] message, after checking every byte of it.
#[allow(dead_code)]
pub(crate) fn check_large(got: &[u8]) -> (u32, u64) {
    let (who, seq) = sender_and_seq(got);
    assert!(
        got == &large(who, seq, got.len())[..],
        "message {seq} of {who} ({} bytes) torn or damaged",
        got.len()
    );
    (who, seq)
}

/// Checks a [`large`] message whole and next in its sender's order (`next`: each sender's
/// next sequence number).
#[allow(dead_code)]
pub(crate) fn large_in_order(got: &[u8], next: &mut std::collections::BTreeMap<u32, u64>) {
    let (who, seq) = check_large(got);
    let want = next.entry(who).or_insert(0);
    assert_eq!(seq, *want, "producer {who} out of order");
    *want += 1;
}

/// Runs `f` on a thread of its own; [`Guarded::join`] fails the test if it has not finished
/// within the watchdog. The caller's thread keeps owning the children, so a failure (or a
/// hang) still kills and reaps them as the test unwinds.
#[allow(dead_code)]
pub(crate) struct Guarded<T> {
    what: &'static str,
    rx: std::sync::mpsc::Receiver<std::thread::Result<T>>,
}

#[allow(dead_code)]
impl<T: Send + 'static> Guarded<T> {
    pub(crate) fn start(what: &'static str, f: impl FnOnce() -> T + Send + 'static) -> Guarded<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        Guarded { what, rx }
    }

    pub(crate) fn join(self) -> T {
        match self.rx.recv_timeout(ipc_testkit::watchdog()) {
            Ok(Ok(v)) => v,
            Ok(Err(p)) => std::panic::resume_unwind(p),
            Err(_) => panic!("watchdog: {} did not finish (a hang)", self.what),
        }
    }
}

/// Waits (watchdog-bounded) until `up` says the waiter `what` is asleep.
#[allow(dead_code)]
pub(crate) fn until(what: &str, up: impl Fn() -> bool) {
    let end = std::time::Instant::now() + ipc_testkit::watchdog();
    while !up() {
        assert!(
            std::time::Instant::now() < end,
            "{what} never went to sleep"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A fresh memfd MPSC segment: `producers` places, rings of `capacity` bytes.
#[allow(dead_code)]
pub(crate) fn mpsc_segment(
    what: &str,
    producers: usize,
    capacity: usize,
) -> std::sync::Arc<ipc_shm::Segment> {
    std::sync::Arc::new(
        ipc_shm::MpscOptions::new()
            .producers(producers)
            .capacity(capacity)
            .create_memfd(what)
            .unwrap(),
    )
}
