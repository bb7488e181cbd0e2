//! Message scripts for property tests: messages whose every byte is a function of
//! `(sender, seq, len)`, so a receiver in another process can check each one exactly; proptest
//! strategies that generate scripts; and [`Model`], the naive queue that is the oracle.

use std::collections::VecDeque;
use std::fmt;

use proptest::prelude::*;

/// Bytes of the stamp (sender, seq, checksum) at the front of messages of at least this size.
pub const STAMP_LEN: usize = 16;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bit: the checksum inside stamped messages.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn fill_body(sender: u32, seq: u32, out: &mut [u8]) {
    let mut state = (u64::from(sender) << 32 | u64::from(seq)) ^ 0xA5A5_5A5A_0F0F_F0F0;
    for chunk in out.chunks_mut(8) {
        let r = splitmix(&mut state).to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

/// Writes message `seq` of `sender`, `len` bytes long, into `out` (cleared first).
///
/// Messages of at least [`STAMP_LEN`] bytes start with the sender (u32 LE), the sequence number
/// (u32 LE) and an FNV-1a checksum (u64 LE) of the rest, so [`parse_stamp`] can identify and
/// verify them without knowing what to expect; every byte after is pseudo-random from
/// `(sender, seq)`.
pub fn fill_message(sender: u32, seq: u32, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(len, 0);
    if len >= STAMP_LEN {
        let (head, body) = out.split_at_mut(STAMP_LEN);
        fill_body(sender, seq, body);
        head[..4].copy_from_slice(&sender.to_le_bytes());
        head[4..8].copy_from_slice(&seq.to_le_bytes());
        head[8..16].copy_from_slice(&checksum(body).to_le_bytes());
    } else {
        fill_body(sender, seq, out);
    }
}

/// Message `seq` of `sender`, `len` bytes long (see [`fill_message`]).
pub fn message(sender: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    fill_message(sender, seq, len, &mut v);
    v
}

/// Checks that `got` is exactly message `seq` of `sender` with length `len`.
pub fn check_message(sender: u32, seq: u32, len: usize, got: &[u8]) -> Result<(), String> {
    if got.len() != len {
        return Err(format!(
            "message {seq} of sender {sender}: {} bytes, expected {len}",
            got.len()
        ));
    }
    let want = message(sender, seq, len);
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        return Err(format!(
            "message {seq} of sender {sender} ({len} bytes) differs at byte {i}: got {:#04x}, \
             expected {:#04x}{}",
            got[i],
            want[i],
            parse_stamp(got)
                .map(|(s, q)| format!(" (it is message {q} of sender {s})"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}

/// Identifies a stamped message (at least [`STAMP_LEN`] bytes) and verifies its checksum:
/// `Some((sender, seq))`, or `None` if it is too short or corrupt.
pub fn parse_stamp(got: &[u8]) -> Option<(u32, u32)> {
    if got.len() < STAMP_LEN {
        return None;
    }
    let sender = u32::from_le_bytes(got[..4].try_into().ok()?);
    let seq = u32::from_le_bytes(got[4..8].try_into().ok()?);
    let sum = u64::from_le_bytes(got[8..16].try_into().ok()?);
    (checksum(&got[STAMP_LEN..]) == sum).then_some((sender, seq))
}

/// A sequence of messages one sender sends: their sizes, and the sender id that (with each
/// message's index) determines their bytes. Small enough to hand to a child as an argument
/// ([`Script::encode`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Script {
    /// The sender id.
    pub sender: u32,
    /// The size of each message, in order.
    pub sizes: Vec<usize>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.sizes.iter().sum();
        write!(
            f,
            "Script {{ sender: {}, {} messages, {total} bytes, sizes: {:?} }}",
            self.sender,
            self.sizes.len(),
            self.sizes
        )
    }
}

impl Script {
    /// Message `seq` of the script.
    pub fn message(&self, seq: usize) -> Vec<u8> {
        message(self.sender, seq as u32, self.sizes[seq])
    }

    /// Writes message `seq` into `out`.
    pub fn fill(&self, seq: usize, out: &mut Vec<u8>) {
        fill_message(self.sender, seq as u32, self.sizes[seq], out);
    }

    /// Checks that `got` is exactly message `seq`.
    pub fn check(&self, seq: usize, got: &[u8]) -> Result<(), String> {
        let Some(&len) = self.sizes.get(seq) else {
            return Err(format!(
                "message {seq} received, but the script has only {}",
                self.sizes.len()
            ));
        };
        check_message(self.sender, seq as u32, len, got)
    }

    /// The largest message.
    pub fn max_size(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(0)
    }

    /// A compact text form (`sender:s1,s2,…`) for a child's argument.
    pub fn encode(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        format!("{}:{}", self.sender, sizes.join(","))
    }

    /// Parses [`Script::encode`]'s form.
    pub fn decode(s: &str) -> Result<Script, String> {
        let (sender, sizes) = s.split_once(':').ok_or("script: missing ':'")?;
        let sender = sender.parse().map_err(|e| format!("script sender: {e}"))?;
        let sizes = if sizes.is_empty() {
            Vec::new()
        } else {
            sizes
                .split(',')
                .map(|n| n.parse().map_err(|e| format!("script size {n:?}: {e}")))
                .collect::<Result<_, _>>()?
        };
        Ok(Script { sender, sizes })
    }
}

/// Message sizes from 0 to `max`, with the edges (0, 1, `max`) and small sizes common.
pub fn size(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        1 => Just(max),
        1 => Just(max.min(1)),
        3 => 0..=max.min(64),
        4 => 0..=max,
    ]
}

/// Scripts of up to `max_count` messages of 0 to `max_len` bytes.
pub fn script(max_len: usize, max_count: usize) -> impl Strategy<Value = Script> {
    (
        any::<u32>(),
        prop::collection::vec(size(max_len), 0..=max_count),
    )
        .prop_map(|(sender, sizes)| Script { sender, sizes })
}

/// The oracle for any channel: a naive FIFO queue of owned messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    queue: VecDeque<Vec<u8>>,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// A message was sent.
    pub fn send(&mut self, msg: &[u8]) {
        self.queue.push_back(msg.to_vec());
    }

    /// A message was received: checks it is the one the model expects next.
    pub fn recv(&mut self, got: &[u8]) -> Result<(), String> {
        match self.queue.pop_front() {
            None => Err(format!(
                "received a {}-byte message, none was queued",
                got.len()
            )),
            Some(want) if want == got => Ok(()),
            Some(want) => Err(format!(
                "received a {}-byte message, expected the {}-byte message sent next ({} still queued)",
                got.len(),
                want.len(),
                self.queue.len()
            )),
        }
    }

    /// Messages queued and not received.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_messages_identify_themselves_and_detect_damage() {
        let mut m = message(7, 42, 100);
        assert_eq!(parse_stamp(&m), Some((7, 42)));
        check_message(7, 42, 100, &m).unwrap();
        m[50] ^= 1;
        assert_eq!(parse_stamp(&m), None);
        assert!(check_message(7, 42, 100, &m).is_err());
        assert!(check_message(7, 43, 100, &message(7, 42, 100)).is_err());
    }

    #[test]
    fn short_messages_differ_by_seq() {
        assert_ne!(message(1, 1, 8), message(1, 2, 8));
        assert!(message(1, 1, 0).is_empty());
    }

    proptest! {
        #[test]
        fn script_text_round_trips(s in script(70_000, 50)) {
            prop_assert_eq!(Script::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn model_accepts_exactly_fifo_order(msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 1..20)) {
            let mut m = Model::new();
            for x in &msgs { m.send(x); }
            for x in &msgs { prop_assert!(m.recv(x).is_ok()); }
            prop_assert!(m.recv(b"extra").is_err());
        }
    }
}
