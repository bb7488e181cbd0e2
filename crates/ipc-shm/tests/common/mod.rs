//! Messages the pattern tests (MPSC, async pub-sub and MPSC) send: each names its sender and
//! sequence number, and every byte of it can be checked.

/// Message `seq` of sender `who`: both numbers, then bytes derived from them.
pub(crate) fn message(who: u32, seq: u64) -> Vec<u8> {
    let len = 12 + (seq as usize * 7 + who as usize) % 150;
    let mut v = who.to_le_bytes().to_vec();
    v.extend(seq.to_le_bytes());
    v.extend((12..len).map(|i| (seq as usize ^ i ^ who as usize) as u8));
    v
}

/// (sender, seq) of a message, after checking all of it.
pub(crate) fn check(got: &[u8]) -> (u32, u64) {
    assert!(got.len() >= 12, "a message of {} bytes", got.len());
    let who = u32::from_le_bytes(got[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(got[4..12].try_into().unwrap());
    assert_eq!(
        got,
        &message(who, seq)[..],
        "message {seq} of {who} damaged"
    );
    (who, seq)
}
