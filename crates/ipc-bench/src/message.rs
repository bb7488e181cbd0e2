//! The benchmark's messages and their checks, so no row is fast by not delivering.
//!
//! Every message is a fixed pseudo-random pattern with stamps written over it:
//!
//! ```text
//! 0       8     12     16      24          k*4096 (k >= 1)         len-8
//! | seq   | len | kind | check | pattern... | page stamp | ...      | tail stamp |
//! ```
//!
//! - `check` covers the header fields, so a corrupt header is reported as such;
//! - every receiver checks the sequence number (nothing lost, duplicated or reordered), the
//!   length, the kind and the stamps at the tail and at each 4 KiB page, which are functions
//!   of the sequence number: a stale buffer, a short or partly written message, or a page
//!   from another message fails;
//! - [`Verifier::check`] with `full` also compares every byte with what was sent.
//!
//! Stamping a message costs a few stores per 4 KiB, checking it a few loads, so the checks
//! barely show in the numbers (raw and library rows pay the same).

use std::fmt;

/// Bytes of the header.
pub const HEADER_LEN: usize = 24;
/// The smallest message the format allows (header and tail stamp).
pub const MIN_SIZE: usize = HEADER_LEN + 8;
/// Page stamps are written at every multiple of this offset.
const PAGE: usize = 4096;
const TAIL_SALT: u64 = 0x7a11_5a17_0000_0000;

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A measured message.
    Data = 1,
    /// The last message of a throughput run: the receiver answers with [`Kind::Ack`].
    EndRun = 2,
    /// The receiver's answer to [`Kind::EndRun`]; its sequence number is the count of messages
    /// the receiver got in the run.
    Ack = 3,
    /// The measurement is over: the child exits.
    Done = 4,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Data,
            2 => Kind::EndRun,
            3 => Kind::Ack,
            4 => Kind::Done,
            _ => return None,
        })
    }
}

/// A message that is not the one expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn header_check(seq: u64, len: u32, kind: u32) -> u64 {
    mix(seq ^ (u64::from(len) << 32) ^ u64::from(kind) ^ 0x5eed_0000_0000_0001)
}

fn page_stamp(seq: u64, page: usize) -> u64 {
    mix(seq ^ ((page as u64) << 44) ^ 0x9a9e)
}

/// Offsets of the page stamps in a message of `len` bytes (pages that end before the tail).
fn pages(len: usize) -> impl Iterator<Item = (usize, usize)> {
    (1..)
        .map(|k| (k, k * PAGE))
        .take_while(move |&(_, off)| off + 16 <= len)
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A buffer holding the pattern for messages of `len` bytes (at least [`MIN_SIZE`]).
pub fn pattern(len: usize) -> Vec<u8> {
    assert!(len >= MIN_SIZE, "messages have at least {MIN_SIZE} bytes");
    let mut state = 0x1234_5678_9abc_def0_u64;
    let mut out = vec![0; len];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&mix(state).to_le_bytes()[..chunk.len()]);
    }
    out
}

/// Writes the stamps of message `seq` of `kind` into `buf` (a [`pattern`] buffer whose length
/// is the message length).
pub fn stamp(buf: &mut [u8], seq: u64, kind: Kind) {
    let len = buf.len();
    let len32 = u32::try_from(len).expect("messages are smaller than 4 GiB");
    buf[0..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&len32.to_le_bytes());
    buf[12..16].copy_from_slice(&(kind as u32).to_le_bytes());
    buf[16..24].copy_from_slice(&header_check(seq, len32, kind as u32).to_le_bytes());
    for (k, off) in pages(len) {
        buf[off..off + 8].copy_from_slice(&page_stamp(seq, k).to_le_bytes());
    }
    buf[len - 8..].copy_from_slice(&mix(seq ^ TAIL_SALT).to_le_bytes());
}

/// Checks received messages against what the sender must have sent.
#[derive(Debug)]
pub struct Verifier {
    len: usize,
    /// The pattern, stamped for the last fully compared message.
    expected: Vec<u8>,
}

impl Verifier {
    /// A verifier for messages of `len` bytes.
    pub fn new(len: usize) -> Verifier {
        Verifier {
            len,
            expected: pattern(len),
        }
    }

    /// Checks that `got` is message `seq`; with `full`, byte for byte. Returns its kind.
    pub fn check(&mut self, got: &[u8], seq: u64, full: bool) -> Result<Kind, Mismatch> {
        let fail = |what: String| Err(Mismatch(what));
        if got.len() != self.len {
            return fail(format!(
                "message {seq}: received {} bytes, expected {}",
                got.len(),
                self.len
            ));
        }
        let (got_seq, got_len, got_kind) = (get_u64(got, 0), get_u32(got, 8), get_u32(got, 12));
        if get_u64(got, 16) != header_check(got_seq, got_len, got_kind) {
            return fail(format!(
                "message {seq}: corrupt header (checksum mismatch): {:02x?}",
                &got[..HEADER_LEN]
            ));
        }
        if got_seq != seq {
            let what = if got_seq > seq {
                format!(
                    "message lost: expected message {seq}, received message {got_seq} \
                     ({} missing)",
                    got_seq - seq
                )
            } else {
                format!(
                    "message duplicated or reordered: expected message {seq}, received message \
                     {got_seq} again"
                )
            };
            return fail(what);
        }
        if got_len as usize != self.len {
            return fail(format!(
                "message {seq}: header says {got_len} bytes, expected {}",
                self.len
            ));
        }
        let Some(kind) = Kind::from_u32(got_kind) else {
            return fail(format!("message {seq}: unknown kind {got_kind}"));
        };
        if get_u64(got, self.len - 8) != mix(seq ^ TAIL_SALT) {
            return fail(format!(
                "message {seq}: the last 8 bytes are not this message's (truncated, stale or \
                 corrupt)"
            ));
        }
        for (k, off) in pages(self.len) {
            if get_u64(got, off) != page_stamp(seq, k) {
                return fail(format!(
                    "message {seq}: bytes at offset {off} are not this message's (stale or \
                     corrupt page)"
                ));
            }
        }
        if full {
            stamp(&mut self.expected, seq, kind);
            if got != self.expected {
                let at = got
                    .iter()
                    .zip(&self.expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return fail(format!(
                    "message {seq}: byte {at} differs from what was sent (got {:#04x}, sent \
                     {:#04x})",
                    got[at], self.expected[at]
                ));
            }
        }
        Ok(kind)
    }
}
