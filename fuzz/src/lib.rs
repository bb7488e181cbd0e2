//! The bodies of the fuzz targets in `fuzz/targets/fuzz_targets`, one public function per target.
//!
//! Each body takes arbitrary bytes, drives one input-validating part of the workspace through
//! its **public** API only (so changes inside the crates do not break the targets), and panics
//! only when a promise is broken:
//!
//! - [`frame_decoder`]: `ipc_core::frame::FrameDecoder` fed arbitrary bytes in arbitrary
//!   chunkings, checked against a naive model of the length-prefix format (same frames, the
//!   same frames above the maximum dropped, same `Corrupted` point, nothing lost), with its
//!   buffer bounded by the configured maximum; and
//!   valid frames made with `encode_frame` round-trip whatever the chunking.
//! - [`shm_channel`]: an `ipc_shm` channel in a memfd segment whose bytes come from the input
//!   (raw, or a valid channel with bytes scribbled over it before or while its ends are open),
//!   then a bounded run of non-blocking operations. Every error must be a typed one (not
//!   [`ErrorKind::Io`]); as long as nothing was scribbled, messages arrive intact, in order,
//!   and none is lost.
//! - [`posix_name`]: `ipc_core::PosixName` on arbitrary strings: accepted names obey the
//!   rules, refused ones get [`ErrorKind::InvalidName`], plain names are accepted, and the
//!   conversions agree.
//! - [`typed_message`]: `ipc_socket`'s typed receiver (postcard) on arbitrary bytes, through an
//!   endpoint that delivers them as one message: above the limit is
//!   [`ErrorKind::MessageTooLarge`] before any decoding, malformed bytes are
//!   [`ErrorKind::Corrupted`], never a panic, and whatever decodes encodes back to a value that
//!   decodes the same.
//!
//! The same bodies run as ordinary tests (`tests/bodies.rs`: proptest-generated inputs and the
//! checked-in seed corpus in `fuzz/corpus/`), so the targets keep compiling and passing on a
//! stable-only CI; `cargo xtask fuzz` runs them under libFuzzer.

use std::collections::VecDeque;
use std::sync::Arc;

use ipc_core::frame::{
    FRAME_HEADER_LEN, FrameDecoder, MAX_ATOMIC_PAYLOAD, MAX_DROPPED_FRAME, encode_frame,
};
use ipc_core::{Error, ErrorKind, MessageReceiver, MessageSender, NAME_MAX, PosixName};
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};

/// The names of the fuzz targets, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 4] = [
    "frame_decoder",
    "shm_channel",
    "posix_name",
    "typed_message",
];

/// Runs the body of the target named `name` (one of [`TARGETS`]) on `data`.
///
/// # Panics
///
/// For an unknown name, and wherever the body finds a broken promise.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "frame_decoder" => frame_decoder(data),
        "shm_channel" => shm_channel(data),
        "posix_name" => posix_name(data),
        "typed_message" => typed_message(data),
        _ => panic!("no fuzz target named {name:?}"),
    }
}

/// Reads the fuzz input as a sequence of small numbers; zeros once it is used up.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Chunk sizes from a seed (xorshift): mostly small, sometimes large, never zero.
struct Chunks(u32);

impl Chunks {
    fn new(seed: u8) -> Chunks {
        Chunks(u32::from(seed).wrapping_mul(2_654_435_761) | 1)
    }

    fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        match x % 8 {
            0 => 1,
            1..=5 => 1 + (x >> 8) as usize % 16,
            6 => 1 + (x >> 8) as usize % 512,
            _ => 1 + (x >> 8) as usize % 70_000,
        }
    }
}

/// One frame as the decoder gives it: a payload, or the announced length of a frame above the
/// maximum (dropped).
#[derive(Debug, PartialEq)]
enum Frame {
    Payload(Vec<u8>),
    Dropped(usize),
}

/// What the length-prefix format says a stream holds, for a decoder of at most `max`: its
/// complete frames, or the length of each announcing more than `max` (dropped), and whether a
/// header ends it as corrupt (above `PIPE_BUF` when `max` is that of atomic records, or above
/// `MAX_DROPPED_FRAME`, after which nothing can be trusted); then the bytes left of an incomplete frame and the payload
/// bytes of a dropped frame still to come.
fn model_frames(stream: &[u8], max: usize) -> (Vec<Frame>, bool, usize, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while let Some(head) = stream.get(pos..pos + FRAME_HEADER_LEN) {
        let len = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
        let start = pos + FRAME_HEADER_LEN;
        if len > max {
            if (max <= MAX_ATOMIC_PAYLOAD && len > MAX_ATOMIC_PAYLOAD) || len > MAX_DROPPED_FRAME {
                return (frames, true, 0, 0);
            }
            frames.push(Frame::Dropped(len));
            if stream.len() - start < len {
                return (frames, false, 0, len - (stream.len() - start));
            }
        } else {
            match stream.get(start..start + len) {
                Some(payload) => frames.push(Frame::Payload(payload.to_vec())),
                None => break,
            }
        }
        pos = start + len;
    }
    (frames, false, stream.len() - pos, 0)
}

/// Feeds `stream` to `dec` in chunks and decodes what it can; returns the frames and the
/// `Corrupted` error if one came. Checks the buffer bound after every read.
fn feed_and_decode(
    dec: &mut FrameDecoder,
    stream: &[u8],
    chunks: &mut Chunks,
    small_out: usize,
) -> (Vec<Frame>, Option<Error>) {
    let max = dec.max_payload();
    let mut out = vec![0u8; max];
    let mut small = vec![0u8; small_out.min(max)];
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut use_push = true;
    loop {
        // Take every complete frame (sometimes first offering a buffer that may be too small,
        // which must leave the frame in place).
        loop {
            if !small.is_empty() && frames.len() % 3 == 1 {
                match dec.decode(&mut small) {
                    Ok(Some(n)) => {
                        assert!(n <= small.len(), "decode wrote past the buffer");
                        frames.push(Frame::Payload(small[..n].to_vec()));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == ErrorKind::MessageTooLarge => {
                        // Above the maximum: dropped; within it: kept for a larger buffer.
                        let (size, limit) = e.message_size().expect("sizes");
                        if size > max {
                            assert_eq!(limit, max, "{e}");
                            frames.push(Frame::Dropped(size));
                            continue;
                        }
                        assert_eq!(limit, small.len(), "{e}");
                    }
                    Err(e) if e.kind() == ErrorKind::Corrupted => return (frames, Some(e)),
                    Err(e) => panic!("decode: unexpected error {e}"),
                }
            }
            match dec.decode(&mut out) {
                Ok(Some(n)) => frames.push(Frame::Payload(out[..n].to_vec())),
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::MessageTooLarge => {
                    let (size, limit) = e.message_size().expect("sizes");
                    assert!(size > max && limit == max, "{e}");
                    frames.push(Frame::Dropped(size));
                }
                Err(e) if e.kind() == ErrorKind::Corrupted => {
                    let again = dec
                        .decode(&mut out)
                        .expect_err("a poisoned decoder stays so");
                    assert_eq!(again.kind(), ErrorKind::Corrupted);
                    return (frames, Some(e));
                }
                Err(e) => panic!("decode into a buffer of the maximum size: {e}"),
            }
        }
        if pos == stream.len() {
            return (frames, None);
        }
        let end = (pos + chunks.next()).min(stream.len());
        let chunk = &stream[pos..end];
        let taken = if use_push {
            dec.push(chunk)
        } else {
            let spare = dec.read_buf();
            let n = spare.len().min(chunk.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            dec.advance(n);
            n
        };
        use_push = !use_push;
        let spare = dec.read_buf().len();
        assert!(
            dec.buffered() + spare <= max + FRAME_HEADER_LEN,
            "decoder buffer {} + {spare} exceeds its maximum payload {max} + header",
            dec.buffered()
        );
        if taken == 0 {
            // Allowed only while a complete (or oversized) frame waits to be decoded.
            let waiting = dec
                .next_len()
                .is_some_and(|len| len > max || dec.buffered() >= FRAME_HEADER_LEN + len);
            assert!(
                waiting,
                "the decoder took no bytes but has no frame to give"
            );
        }
        pos += taken;
    }
}

/// Fuzz body: the length-prefix frame decoder. See the [crate] docs.
pub fn frame_decoder(data: &[u8]) {
    let mut input = Input { data };
    // Shifts of 16 and more make the maximum 0: frames must then be empty.
    let max = usize::from(input.u16()) >> (input.u8() % 20);
    let mut chunks = Chunks::new(input.u8());
    let small_out = usize::from(input.u8());
    let stream = input.rest();

    // Arbitrary bytes: the same frames as the model, the same corruption point.
    let mut dec = FrameDecoder::new(max);
    assert_eq!(dec.max_payload(), max);
    let (frames, corrupted) = feed_and_decode(&mut dec, stream, &mut chunks, small_out);
    let (expected, model_corrupted, rest, to_drop) = model_frames(stream, max);
    assert_eq!(frames, expected, "decoded frames differ from the format's");
    assert_eq!(
        corrupted.is_some(),
        model_corrupted,
        "decoder and model disagree about an oversized header ({corrupted:?})"
    );
    if !model_corrupted {
        assert_eq!(dec.buffered(), rest, "bytes lost or invented");
        assert_eq!(
            dec.skipping(),
            to_drop,
            "bytes of a dropped frame lost or invented"
        );
        assert_eq!(dec.partial().map(|p| p.0), (rest > 0).then_some(rest));
    }

    // Valid frames cut from the same bytes round-trip, whatever the chunking.
    let mut payloads = Vec::new();
    let mut wire = Vec::new();
    let mut lens = Chunks::new(stream.first().copied().unwrap_or(7));
    let mut at = 0;
    while at < stream.len() {
        let len = (lens.next() % (max + 1)).min(stream.len() - at);
        let payload = &stream[at..at + len];
        encode_frame(payload, &mut wire).expect("a payload under 4 GiB encodes");
        payloads.push(payload.to_vec());
        at += len.max(1);
    }
    let mut dec = FrameDecoder::new(max);
    let (frames, corrupted) = feed_and_decode(&mut dec, &wire, &mut chunks, small_out);
    assert!(
        corrupted.is_none(),
        "valid frames called corrupted: {corrupted:?}"
    );
    let payloads: Vec<_> = payloads.into_iter().map(Frame::Payload).collect();
    assert_eq!(frames, payloads, "valid frames did not round-trip");
    assert_eq!(dec.buffered(), 0);
    assert!(dec.partial().is_none());
}

/// Checks that an error from the shm channel is a typed one.
fn typed(e: &Error, op: &str) {
    assert_ne!(e.kind(), ErrorKind::Io, "{op}: untyped error {e}");
    assert!(!e.to_string().is_empty(), "{op}: empty error message");
}

/// Writes up to 16 input bytes at an input-chosen offset of the segment.
fn scribble(seg: &Segment, input: &mut Input<'_>) {
    let offset = usize::from(input.u16()) % seg.len();
    let len = usize::from(input.u8() % 17).min(seg.len() - offset);
    let bytes = input.bytes(len);
    seg.write_at(offset, bytes)
        .expect("a write inside a writable segment");
}

/// A message whose bytes say which one it is.
fn message(seq: u32, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = seq
        .to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect();
    if let Some(last) = m.last_mut() {
        *last ^= 0x5a;
    }
    m
}

/// Fuzz body: the shm channel's header and ring validation. See the [crate] docs.
pub fn shm_channel(data: &[u8]) {
    let mut input = Input { data };
    let capacity = 1usize << (6 + input.u8() % 9); // 64 B to 16 KiB
    let flags = input.u8();
    let opts = ChannelOptions::new().capacity(capacity);
    let mut scribbled = false;
    let seg = if flags & 1 == 1 {
        // Raw: a segment of input-chosen size holding the input's bytes.
        let size = 1 + usize::from(input.u16()) % (opts.segment_size() + 256);
        let seg = match Segment::memfd("ipc-fuzz", size) {
            Ok(s) => s,
            Err(e) => return typed(&e, "memfd"),
        };
        let bytes = input.bytes(size);
        seg.write_at(0, bytes).expect("input fits the segment");
        scribbled = true;
        seg
    } else {
        match opts.create_memfd("ipc-fuzz") {
            Ok(s) => s,
            Err(e) => return typed(&e, "create_memfd"),
        }
    };
    let seg = Arc::new(seg);
    let patches_first = usize::from(input.u8() % 8);
    for _ in 0..patches_first {
        scribble(&seg, &mut input);
        scribbled = true;
    }

    let mut tx = Sender::open(seg.clone())
        .map_err(|e| typed(&e, "Sender::open"))
        .ok();
    let mut rx = Receiver::open(seg.clone())
        .map_err(|e| typed(&e, "Receiver::open"))
        .ok();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut seq = 0u32;
    let mut buf = vec![0u8; capacity];
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        let op = input.u8();
        match op % 8 {
            0 | 1 => {
                let Some(tx) = tx.as_mut() else { continue };
                let len = usize::from(input.u8()) * (1 + usize::from(op >> 6));
                let m = message(seq, len);
                match tx.try_send(&m) {
                    Ok(()) => {
                        seq += 1;
                        model.push_back(m);
                    }
                    Err(e) => typed(&e, "try_send"),
                }
            }
            2 | 3 => {
                let Some(rx) = rx.as_mut() else { continue };
                match rx.try_recv(&mut buf) {
                    Ok(n) => {
                        assert!(n <= buf.len());
                        if !scribbled {
                            let want = model.pop_front().expect("a message was sent");
                            assert_eq!(&buf[..n], &want[..], "message changed in the ring");
                        }
                    }
                    Err(e) => {
                        typed(&e, "try_recv");
                        if !scribbled && e.kind() == ErrorKind::Disconnected {
                            assert!(model.is_empty(), "disconnected with messages queued");
                        }
                    }
                }
            }
            4 => {
                let Some(rx) = rx.as_mut() else { continue };
                match rx.try_recv_in_place() {
                    Ok(msg) => {
                        if !scribbled {
                            let want = model.pop_front().expect("a message was sent");
                            assert_eq!(&*msg, &want[..], "message changed in the ring");
                        }
                    }
                    Err(e) => typed(&e, "try_recv_in_place"),
                }
            }
            5 => {
                let Some(tx) = tx.as_mut() else { continue };
                let m = message(seq, usize::from(input.u8()));
                match tx.try_loan(m.len()) {
                    Ok(mut loan) => {
                        assert_eq!(loan.len(), m.len());
                        loan.copy_from_slice(&m);
                        loan.commit();
                        seq += 1;
                        model.push_back(m);
                    }
                    Err(e) => typed(&e, "try_loan"),
                }
                if let Err(e) = tx.is_drained() {
                    typed(&e, "is_drained");
                }
            }
            6 => {
                scribble(&seg, &mut input);
                scribbled = true;
            }
            _ => {
                // An end leaves, or a new one tries to attach.
                if op & 0x10 == 0 {
                    if tx.take().is_none() {
                        tx = Sender::open(seg.clone())
                            .map_err(|e| typed(&e, "reopen"))
                            .ok();
                    }
                } else if rx.take().is_none() {
                    rx = Receiver::open(seg.clone())
                        .map_err(|e| typed(&e, "reopen"))
                        .ok();
                    // A new receiver may start anywhere the old one left off.
                    scribbled = true;
                }
            }
        }
    }
}

/// Fuzz body: POSIX IPC name validation. See the [crate] docs.
pub fn posix_name(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;
    let rest = s.strip_prefix('/');
    let well_formed = rest.is_some_and(|r| {
        !r.is_empty() && !r.contains('/') && !r.contains('\0') && r != "." && r != ".."
    });
    match PosixName::new(s) {
        Ok(name) => {
            let r = rest.expect("an accepted name starts with '/'");
            assert!(well_formed, "accepted a malformed name {s:?}");
            assert!(r.len() <= NAME_MAX, "accepted {} bytes after '/'", r.len());
            assert_eq!(name.as_str(), s);
            assert_eq!(name.file_name(), r);
            assert_eq!(name.as_c_str().to_bytes(), s.as_bytes());
            assert_eq!(format!("{name}"), s);
            assert_eq!(PosixName::new(name.as_str()).ok().as_ref(), Some(&name));
            assert_eq!(PosixName::try_from(s).ok().as_ref(), Some(&name));
            assert_eq!(PosixName::try_from(s.to_owned()).ok().as_ref(), Some(&name));
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{s:?}: {e}");
            // Names well inside every object kind's length limit are never refused.
            let short = rest.is_some_and(|r| r.len() <= 200);
            assert!(!(well_formed && short), "refused a plain name {s:?}: {e}");
            assert!(PosixName::try_from(s).is_err());
        }
    }
}

/// A message shaped like what programs send: integers of several widths (postcard's varints),
/// strings (UTF-8 checked), byte and nested sequences (length prefixes), options and an enum.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub struct Sample {
    pub id: u64,
    pub delta: i32,
    pub text: String,
    pub bytes: Vec<u8>,
    pub nested: Vec<Vec<u32>>,
    pub shape: Option<Shape>,
    pub flag: bool,
}

/// The enum inside a [`Sample`].
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum Shape {
    Unit,
    Pair(u8, i64),
    Named { name: String, tags: Vec<u16> },
}

/// An endpoint that delivers one message (the fuzz input), then reports the peer gone.
struct OneMessage(Option<Vec<u8>>);

impl MessageReceiver for OneMessage {
    fn recv_deadline(&mut self, buf: &mut [u8], _: ipc_core::Deadline) -> ipc_core::Result<usize> {
        let Some(msg) = self.0.take() else {
            return Err(Error::disconnected());
        };
        if msg.len() > buf.len() {
            let e = Error::message_too_large(msg.len(), buf.len(), "receive buffer");
            self.0 = Some(msg); // stays queued, as every endpoint keeps it
            return Err(e);
        }
        buf[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    fn max_message_size(&self) -> usize {
        usize::MAX
    }
}

/// Fuzz body: typed messages decoded from hostile bytes. See the [crate] docs.
pub fn typed_message(data: &[u8]) {
    use ipc_socket::typed::{TypedReceiver, decode, encode};
    const LIMIT: usize = 512;
    let mut rx = TypedReceiver::<Sample, _>::with_limit(OneMessage(Some(data.to_vec())), LIMIT);
    match rx.recv() {
        Ok(v) => {
            assert!(
                data.len() <= LIMIT,
                "decoded {} bytes over the limit",
                data.len()
            );
            let again = encode(&v).expect("a decoded value encodes");
            assert_eq!(decode::<Sample>(&again).expect("its encoding decodes"), v);
        }
        Err(e) if data.len() > LIMIT => {
            assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
            // Refused before decoding, and still there to be taken another way.
            assert!(
                rx.get_mut().0.is_some(),
                "the oversized message was consumed"
            );
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}"),
    }
}
