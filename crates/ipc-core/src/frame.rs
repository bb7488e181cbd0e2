//! The length-prefix framing codec that carries message boundaries over byte streams (pipes,
//! FIFOs): a 4-byte little-endian payload length, then the payload.
//!
//! The decoder is pure (bytes in, frames out) so it can be tested exhaustively and run under Miri;
//! [`crate::stream`] drives it over a file descriptor.

use crate::{Error, ErrorKind, Result};

/// Bytes a pipe or FIFO write is atomic up to on Linux (`PIPE_BUF`).
pub const PIPE_BUF: usize = 4096;

/// Bytes of the length prefix in front of every frame.
pub const FRAME_HEADER_LEN: usize = 4;

/// The largest payload whose frame fits in one atomic write: `PIPE_BUF - 4` = 4092 bytes.
pub const MAX_ATOMIC_PAYLOAD: usize = PIPE_BUF - FRAME_HEADER_LEN;

/// The largest payload the frame format can express.
pub const MAX_FRAME_PAYLOAD: usize = u32::MAX as usize;

/// The largest frame above its maximum that a decoder drops and reads on after; a header
/// announcing more is taken for bytes that are not this framing (`Corrupted`). Four bytes of
/// text read as a length of at least 512 MiB (a printable fourth byte is at least `0x20`), so
/// a writer of text (`echo hello > fifo`, an HTTP client) is caught at its first bytes, where
/// dropping would swallow up to 4 GiB of what follows and report nothing more.
pub const MAX_DROPPED_FRAME: usize = 256 << 20;

/// The buffer the decoder starts with (it grows, up to its maximum, only for larger frames).
const INITIAL_BUFFER: usize = 64 * 1024;

/// The length prefix for a payload of `len` bytes.
///
/// Fails with [`ErrorKind::MessageTooLarge`] above [`MAX_FRAME_PAYLOAD`].
#[inline]
pub fn encode_header(len: usize) -> Result<[u8; FRAME_HEADER_LEN]> {
    let len32 = u32::try_from(len)
        .map_err(|_| Error::message_too_large(len, MAX_FRAME_PAYLOAD, "frame length prefix"))?;
    Ok(len32.to_le_bytes())
}

/// Encodes `payload` as one frame appended to `out` (for tests and for callers that batch).
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&encode_header(payload.len())?);
    out.extend_from_slice(payload);
    Ok(())
}

/// Splits a byte stream back into frames.
///
/// Feed it with [`read_buf`](FrameDecoder::read_buf) + [`advance`](FrameDecoder::advance) (read
/// straight into its buffer) or [`push`](FrameDecoder::push); take frames out with
/// [`decode`](FrameDecoder::decode).
///
/// Memory is bounded by the configured maximum payload: the buffer starts at
/// `min(max_payload + 4, 64 KiB)` and grows only to hold one announced frame, which is at most
/// `max_payload` bytes, or to the size a caller asks with [`reserve`](FrameDecoder::reserve).
/// A length prefix above the maximum is never a reason to allocate: the frame is dropped as its
/// bytes arrive (see [`decode`](FrameDecoder::decode)), or, where that cannot be done safely,
/// the stream is corrupt.
///
/// ```
/// use ipc_core::frame::{encode_frame, FrameDecoder};
///
/// let mut wire = Vec::new();
/// encode_frame(b"hello", &mut wire)?;
/// encode_frame(b"", &mut wire)?;
///
/// let mut dec = FrameDecoder::new(1024);
/// let mut out = [0u8; 1024];
/// dec.push(&wire[..3]); // a frame split anywhere
/// assert_eq!(dec.decode(&mut out)?, None);
/// dec.push(&wire[3..]);
/// assert_eq!(dec.decode(&mut out)?, Some(5));
/// assert_eq!(&out[..5], b"hello");
/// assert_eq!(dec.decode(&mut out)?, Some(0));
/// assert_eq!(dec.decode(&mut out)?, None);
/// # Ok::<(), ipc_core::Error>(())
/// ```
pub struct FrameDecoder {
    /// Storage; `buf.len()` is the allocated size. Bytes `start..end` are received, not decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_payload: usize,
    /// Set once a malformed header was seen: every later decode fails the same way.
    poisoned: Option<usize>,
    /// Whether several writers' frames may share the stream (a maximum of atomic records, until
    /// [`set_one_writer`](Self::set_one_writer)): a frame above `PIPE_BUF` is then corruption.
    interleaved: bool,
    /// Payload bytes of a frame above the maximum still to arrive, dropped as they do; while
    /// not zero, nothing is buffered (`advance` drops them at once).
    skip: usize,
}

impl std::fmt::Debug for FrameDecoder {
    /// Lengths only: the buffer can be as large as the largest message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered", &(self.end - self.start))
            .field("capacity", &self.buf.len())
            .field("max_payload", &self.max_payload)
            .field("poisoned", &self.poisoned)
            .field("interleaved", &self.interleaved)
            .field("skip", &self.skip)
            .finish()
    }
}

/// The buffer a decoder of payloads up to `max_payload` starts with (it grows for a larger
/// frame).
fn first_size(max_payload: usize) -> usize {
    (max_payload + FRAME_HEADER_LEN).min(INITIAL_BUFFER)
}

impl FrameDecoder {
    /// A decoder that accepts payloads of at most `max_payload` bytes.
    pub fn new(max_payload: usize) -> FrameDecoder {
        let max_payload = max_payload.min(MAX_FRAME_PAYLOAD);
        FrameDecoder {
            buf: vec![0; first_size(max_payload)],
            start: 0,
            end: 0,
            max_payload,
            poisoned: None,
            interleaved: max_payload <= MAX_ATOMIC_PAYLOAD,
            skip: 0,
        }
    }

    /// Says that one writer alone writes this stream (a connected socket), so no frame is
    /// interleaved with another's: a frame above the maximum is then dropped whatever its
    /// size (see [`decode`](Self::decode)), also by a decoder whose maximum is that of atomic
    /// records.
    pub fn set_one_writer(&mut self) {
        self.interleaved = false;
    }

    /// The largest payload this decoder accepts.
    #[inline]
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes received and not yet returned as frames.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The 4 header bytes at `at` (`at + 4 <= end <= buf.len()`, checked by the caller; the
    /// slice index still bounds it).
    #[inline]
    fn header_at(&self, at: usize) -> [u8; FRAME_HEADER_LEN] {
        let mut bytes = [0; FRAME_HEADER_LEN];
        bytes.copy_from_slice(&self.buf[at..at + FRAME_HEADER_LEN]);
        bytes
    }

    /// The payload length of the frame at the head of the buffer, once its header is complete.
    #[inline]
    pub fn next_len(&self) -> Option<usize> {
        if self.buffered() < FRAME_HEADER_LEN {
            return None;
        }
        Some(u32::from_le_bytes(self.header_at(self.start)) as usize)
    }

    /// Space to read more stream bytes into. Call [`advance`](Self::advance) with the number of
    /// bytes written into it.
    ///
    /// It makes room for the whole frame at the head of the buffer (up to the maximum), so one
    /// read can complete it. It is never empty after [`decode`](Self::decode) returned
    /// `Ok(None)`; it can be empty while complete frames wait to be decoded.
    #[inline]
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.start == self.end {
            // Nothing buffered (the message path between frames): the whole buffer, which
            // holds at least a header.
            self.start = 0;
            self.end = 0;
            return &mut self.buf[..];
        }
        self.read_buf_slow()
    }

    /// [`read_buf`](Self::read_buf) with bytes buffered: makes room for the rest of the frame
    /// at the head.
    #[inline(never)]
    fn read_buf_slow(&mut self) -> &mut [u8] {
        let need = match self.next_len() {
            Some(len) if len <= self.max_payload => FRAME_HEADER_LEN + len,
            _ => FRAME_HEADER_LEN,
        };
        // Not empty here (see `read_buf`).
        if self.start > 0 && (self.buf.len() - self.start < need || self.end == self.buf.len()) {
            // Move the partial frame to the front so it can complete in place.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < need {
            // Bounded: `need <= max_payload + FRAME_HEADER_LEN`.
            self.buf.resize(need, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Grows the buffer to at least `size` bytes, so that a read can take that much at once
    /// (the caller bounds it; a receiver reading ahead asks for 64 KiB). Buffered bytes are
    /// kept; never shrinks.
    pub fn reserve(&mut self, size: usize) {
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
    }

    /// Records that `n` bytes were written at the start of [`read_buf`](Self::read_buf).
    ///
    /// # Panics
    ///
    /// If `n` is larger than the slice `read_buf` returned.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.buf.len() - self.end, "advance past read_buf");
        self.end += n;
        if self.skip != 0 {
            self.drop_skipped();
        }
    }

    /// Drops the buffered bytes that belong to a frame above the maximum (see
    /// [`decode`](Self::decode)).
    #[cold]
    fn drop_skipped(&mut self) {
        let n = self.skip.min(self.buffered());
        self.start += n;
        self.skip -= n;
    }

    /// Forgets every byte received and any frame being dropped or found corrupt, to start on a
    /// frame boundary again (a FIFO's next writer, after the last one closed mid-frame). Keeps
    /// the maximum and [`set_one_writer`](Self::set_one_writer); a buffer grown for a large
    /// frame goes back to its first size (a writer that died in the middle of a 16 MiB message
    /// leaves no 16 MiB behind).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.skip = 0;
        self.poisoned = None;
        let first = first_size(self.max_payload);
        if self.buf.len() > first {
            self.buf = vec![0; first];
        }
    }

    /// Payload bytes of a dropped frame (one above the maximum) that are still to arrive and
    /// will be dropped as they do: 0 unless such a frame is being skipped.
    #[inline]
    pub fn skipping(&self) -> usize {
        self.skip
    }

    /// Appends as many of `bytes` as fit now and returns how many that was (a convenience over
    /// `read_buf` + `advance`). Fewer than all are taken only while complete frames wait to be
    /// decoded.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let mut taken = 0;
        while taken < bytes.len() {
            let spare = self.read_buf();
            let n = spare.len().min(bytes.len() - taken);
            if n == 0 {
                break;
            }
            spare[..n].copy_from_slice(&bytes[taken..taken + n]);
            self.advance(n);
            taken += n;
        }
        taken
    }

    /// Takes the next complete frame into `out` and returns its payload length, or `None` if
    /// more bytes are needed.
    ///
    /// Errors:
    /// - [`ErrorKind::MessageTooLarge`] when the frame does not fit in `out`; the frame stays
    ///   buffered and a retry with a large enough buffer returns it.
    /// - [`ErrorKind::MessageTooLarge`] when a header announces more than the maximum payload
    ///   (a sender allowed larger messages than this receiver): that frame is dropped, its bytes
    ///   as they arrive, never buffered, and the next call goes on with the frame after it.
    ///   [`Error::message_size`] gives its length and the maximum.
    /// - [`ErrorKind::Corrupted`] instead, when the header announces more than
    ///   [`MAX_DROPPED_FRAME`] (bytes that are not this framing, such as text), or when this
    ///   decoder takes atomic records (a maximum of at most [`MAX_ATOMIC_PAYLOAD`], unless
    ///   [`set_one_writer`](Self::set_one_writer) said otherwise) and the header announces more
    ///   than that: such a frame took more than one write, which other writers' frames can
    ///   interleave, so where it ends cannot be told. The stream cannot be trusted after that
    ///   and every later call fails the same way.
    #[inline]
    pub fn decode(&mut self, out: &mut [u8]) -> Result<Option<usize>> {
        // The message path: a whole, acceptable frame that fits `out` is at the head. Every
        // other case (nothing or part of a frame yet, a header over the maximum, a poisoned
        // stream, `out` too small) goes through `decode_slow`, which checks each in turn.
        let payload = self.start + FRAME_HEADER_LEN;
        if self.poisoned.is_none() && self.end >= payload {
            let len = u32::from_le_bytes(self.header_at(self.start)) as usize;
            if len <= self.max_payload && len <= out.len() && self.end - payload >= len {
                out[..len].copy_from_slice(&self.buf[payload..payload + len]);
                self.start = payload + len;
                return Ok(Some(len));
            }
        }
        self.decode_slow(out)
    }

    /// [`decode`](Self::decode) for every case but a complete frame that fits: more bytes
    /// needed, a header over the maximum (poisons the decoder), `out` too small.
    #[cold]
    #[inline(never)]
    fn decode_slow(&mut self, out: &mut [u8]) -> Result<Option<usize>> {
        if let Some(len) = self.poisoned {
            return Err(self.oversized(len));
        }
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        if len > self.max_payload {
            if (self.interleaved && len > MAX_ATOMIC_PAYLOAD) || len > MAX_DROPPED_FRAME {
                self.poisoned = Some(len);
                return Err(self.oversized(len));
            }
            self.start += FRAME_HEADER_LEN;
            self.skip = len;
            self.drop_skipped();
            return Err(self.dropped(len));
        }
        if out.len() < len {
            return Err(Error::message_too_large(len, out.len(), "receive buffer"));
        }
        if self.buffered() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.start + FRAME_HEADER_LEN;
        out[..len].copy_from_slice(&self.buf[payload..payload + len]);
        self.start = payload + len;
        Ok(Some(len))
    }

    /// Moves the frame at the head out of the buffer and into `out`, so that its rest can be
    /// read straight into `out` (no second copy for a large message); returns its payload
    /// length and how many payload bytes are already in `out`.
    ///
    /// Only for a frame that is announced, acceptable (at most the maximum, fits `out`) and
    /// not complete yet: every buffered byte then belongs to it, and the decoder is left empty.
    /// Returns `None` (and changes nothing) otherwise. If the rest cannot be read after all,
    /// [`restore`](Self::restore) puts the frame back.
    pub fn take_partial(&mut self, out: &mut [u8]) -> Option<(usize, usize)> {
        let len = self.next_len()?;
        if self.poisoned.is_some() || len > self.max_payload || len > out.len() {
            return None;
        }
        if self.buffered() >= FRAME_HEADER_LEN + len {
            return None;
        }
        let payload = self.start + FRAME_HEADER_LEN;
        let have = self.end - payload;
        out[..have].copy_from_slice(&self.buf[payload..self.end]);
        self.start = 0;
        self.end = 0;
        Some((len, have))
    }

    /// Puts back a frame [`take_partial`](Self::take_partial) took out: its payload length and
    /// the `have` payload bytes received so far. The decoder must be empty (it is, after
    /// `take_partial`, until something else is pushed).
    ///
    /// # Panics
    ///
    /// If the decoder is not empty or is skipping a dropped frame, or `have` is not less than `len`.
    pub fn restore(&mut self, len: usize, have: &[u8]) {
        assert_eq!(self.buffered(), 0, "restore into a non-empty decoder");
        assert_eq!(
            self.skip, 0,
            "restore while a dropped frame is being skipped"
        );
        assert!(have.len() < len, "restore of a complete frame");
        let header = (len as u32).to_le_bytes();
        // `push` grows the buffer to hold the announced frame (`len` was accepted by
        // `take_partial`, so at most the maximum): both parts fit.
        let taken = self.push(&header) + self.push(have);
        debug_assert_eq!(taken, FRAME_HEADER_LEN + have.len());
    }

    /// Whether [`decode`](Self::decode) has something to say without more bytes: a complete
    /// frame at the head, or an error (a header above the maximum, or poisoned earlier).
    pub fn ready(&self) -> bool {
        self.poisoned.is_some()
            || self.next_len().is_some_and(|len| {
                len > self.max_payload || self.buffered() >= FRAME_HEADER_LEN + len
            })
    }

    /// Bytes of the frame at the head that have arrived, and its announced length: used to
    /// report a stream that ended in the middle of a frame.
    pub fn partial(&self) -> Option<(usize, Option<usize>)> {
        (self.buffered() > 0).then(|| (self.buffered(), self.next_len()))
    }

    /// The error for a header of `len` bytes above the maximum that cannot be dropped (above
    /// [`MAX_DROPPED_FRAME`], or above `PIPE_BUF` for a decoder taking atomic records): the
    /// stream is lost.
    fn oversized(&self, len: usize) -> Error {
        let why = if len > MAX_DROPPED_FRAME {
            // The header as it came, escaped: text shows itself ("GET ", "hell").
            let header: String = u32::try_from(len)
                .unwrap_or(u32::MAX)
                .to_le_bytes()
                .iter()
                .flat_map(|&b| std::ascii::escape_default(b))
                .map(char::from)
                .collect();
            format!(
                "more than {} MiB, too large to skip; its header bytes \"{header}\" are likely \
                 not this framing at all (another program writing here? text reads as at least \
                 512 MiB), so the stream cannot be resynchronised",
                MAX_DROPPED_FRAME >> 20
            )
        } else {
            "this receiver takes atomic records (frames of at most PIPE_BUF bytes, one write \
             each): a writer sent a larger frame, which other writers' frames can interleave, \
             so the stream cannot be resynchronised"
                .to_owned()
        };
        Error::with_note(
            ErrorKind::Corrupted,
            format!(
                "frame header announces {len} bytes, the receiver's maximum is {} bytes; {why}",
                self.max_payload
            ),
        )
    }

    /// The error for a frame of `len` bytes above the maximum, dropped: the sizes stay
    /// readable ([`Error::message_size`]); the note, in the source, says what happened.
    fn dropped(&self, len: usize) -> Error {
        Error::message_too_large(len, self.max_payload, "this receiver's maximum").with_source(
            std::io::Error::other(format!(
                "a frame of {len} bytes arrived, above this receiver's maximum of {} bytes; it \
                 is dropped as it arrives and the next receive returns the message after it \
                 (a sender whose maximum is larger than this receiver's: give both ends the \
                 same maximum; or bytes that are not this framing, after which the messages \
                 that follow are not to be trusted)",
                self.max_payload
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_length_is_an_error_not_an_allocation() {
        let mut dec = FrameDecoder::new(1000);
        dec.push(&u32::MAX.to_le_bytes());
        let mut out = [0u8; 16];
        let e = dec.decode(&mut out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted);
        assert!(e.to_string().contains("4294967295"), "{e}");
        assert!(dec.buf.len() <= 1004);
        // Poisoned: stays an error.
        assert_eq!(
            dec.decode(&mut out).unwrap_err().kind(),
            ErrorKind::Corrupted
        );
    }

    /// A message, or the sizes of a frame above the maximum (dropped).
    type Decoded = std::result::Result<Vec<u8>, (usize, usize)>;

    /// Decodes `wire` fed in pieces of `piece` bytes: each message, or the sizes of each
    /// error (a frame above the maximum: dropped). Stops at `Corrupted`, which it returns.
    fn decode_in_pieces(
        dec: &mut FrameDecoder,
        wire: &[u8],
        piece: usize,
    ) -> (Vec<Decoded>, Option<Error>) {
        let mut out = vec![0u8; dec.max_payload()];
        let mut got = Vec::new();
        for chunk in wire.chunks(piece) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let n = dec.push(rest);
                rest = &rest[n..];
                assert!(
                    dec.buf.len() <= (dec.max_payload() + FRAME_HEADER_LEN).min(INITIAL_BUFFER),
                    "the buffer grew to {} for a dropped frame",
                    dec.buf.len()
                );
                loop {
                    match dec.decode(&mut out) {
                        Ok(Some(n)) => got.push(Ok(out[..n].to_vec())),
                        Ok(None) => break,
                        Err(e) if e.kind() == ErrorKind::MessageTooLarge => {
                            got.push(Err(e.message_size().unwrap()))
                        }
                        Err(e) => return (got, Some(e)),
                    }
                }
            }
        }
        (got, None)
    }

    /// A frame above the maximum (its sender had a larger one) is reported once with both
    /// sizes and dropped as it arrives, never buffered; the frames after it decode as if it
    /// had not been there, however the bytes are cut. Fails if it poisons the stream (as it
    /// did), buffers the frame, or resynchronises anywhere but at its end.
    #[test]
    fn a_frame_above_the_maximum_is_dropped_and_the_stream_goes_on() {
        let mut wire = Vec::new();
        encode_frame(b"before", &mut wire).unwrap();
        encode_frame(&[0xEE; 20_000], &mut wire).unwrap();
        encode_frame(&[0x11; 5000], &mut wire).unwrap();
        encode_frame(&[0x22; 5001], &mut wire).unwrap();
        encode_frame(b"after", &mut wire).unwrap();
        for piece in [1, 3, 4, 5, 7, 4096, 5004, 1 << 20] {
            let mut dec = FrameDecoder::new(5000);
            let (got, err) = decode_in_pieces(&mut dec, &wire, piece);
            assert!(err.is_none(), "piece {piece}: {err:?}");
            assert_eq!(
                got,
                [
                    Ok(b"before".to_vec()),
                    Err((20_000, 5000)),
                    Ok(vec![0x11; 5000]),
                    Err((5001, 5000)),
                    Ok(b"after".to_vec()),
                ],
                "piece {piece}"
            );
            assert_eq!((dec.buffered(), dec.skipping()), (0, 0));
        }
        // The note says what happened and what to do.
        let mut dec = FrameDecoder::new(5000);
        dec.push(&encode_header(20_000).unwrap());
        let e = dec.decode(&mut [0; 5000]).unwrap_err();
        assert!(e.to_string().contains("dropped"), "{e}");
        assert!(e.to_string().contains("same maximum"), "{e}");
        assert_eq!(dec.skipping(), 20_000);
    }

    /// A receiver of atomic records (maximum at most `MAX_ATOMIC_PAYLOAD`) drops a frame above
    /// its maximum that is itself atomic (one write, which no other writer can split), but a
    /// larger one was several writes that others can interleave: `Corrupted`, for good.
    #[test]
    fn an_atomic_receiver_drops_atomic_frames_and_is_corrupted_by_larger_ones() {
        let mut wire = Vec::new();
        encode_frame(&[1; 2000], &mut wire).unwrap();
        encode_frame(&[2; 10], &mut wire).unwrap();
        encode_frame(&[3; MAX_ATOMIC_PAYLOAD + 1], &mut wire).unwrap();
        encode_frame(&[4; 10], &mut wire).unwrap();
        for piece in [1, 4, 4096] {
            let mut dec = FrameDecoder::new(1000);
            let (got, err) = decode_in_pieces(&mut dec, &wire, piece);
            assert_eq!(got, [Err((2000, 1000)), Ok(vec![2; 10])], "piece {piece}");
            let e = err.expect("a frame above PIPE_BUF is corruption here");
            assert_eq!(e.kind(), ErrorKind::Corrupted);
            assert!(e.to_string().contains("atomic"), "{e}");
            assert_eq!(
                dec.decode(&mut [0; 1000]).unwrap_err().kind(),
                ErrorKind::Corrupted
            );
        }
    }

    /// Bytes that are not this framing (text: "GET / HTTP/1.1", 542 MB as a length) are
    /// `Corrupted` for good even for a receiver that drops frames above its maximum: dropping
    /// would swallow half a gigabyte of what follows and report nothing more. A header of
    /// `MAX_DROPPED_FRAME` is still dropped; one byte more is not.
    #[test]
    fn text_is_corrupted_not_dropped() {
        let mut dec = FrameDecoder::new(65_536);
        dec.push(b"GET / HTTP/1.1\r\n");
        for _ in 0..2 {
            let e = dec.decode(&mut [0; 16]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
            assert!(e.to_string().contains("not this framing"), "{e}");
        }
        let mut dec = FrameDecoder::new(65_536);
        dec.push(&encode_header(MAX_DROPPED_FRAME).unwrap());
        let e = dec.decode(&mut [0; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(dec.skipping(), MAX_DROPPED_FRAME);
        let mut dec = FrameDecoder::new(65_536);
        dec.push(&encode_header(MAX_DROPPED_FRAME + 1).unwrap());
        let e = dec.decode(&mut [0; 16]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    }

    #[test]
    fn small_buffer_keeps_the_frame() {
        let mut wire = Vec::new();
        encode_frame(&[7; 100], &mut wire).unwrap();
        let mut dec = FrameDecoder::new(1000);
        dec.push(&wire);
        let e = dec.decode(&mut [0u8; 10]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
        assert_eq!(e.message_size(), Some((100, 10)));
        let mut out = [0u8; 100];
        assert_eq!(dec.decode(&mut out).unwrap(), Some(100));
        assert_eq!(out, [7; 100]);
    }

    #[test]
    fn frames_larger_than_the_initial_buffer() {
        let big = vec![0xAB; INITIAL_BUFFER * 3 + 17];
        let mut wire = Vec::new();
        encode_frame(&big, &mut wire).unwrap();
        encode_frame(b"tail", &mut wire).unwrap();
        let mut dec = FrameDecoder::new(big.len());
        let mut out = vec![0u8; big.len()];
        let n = dec.push(&wire);
        assert_eq!(
            n,
            FRAME_HEADER_LEN + big.len(),
            "room for exactly the big frame"
        );
        assert!(dec.buf.len() <= big.len() + FRAME_HEADER_LEN);
        assert_eq!(dec.decode(&mut out).unwrap(), Some(big.len()));
        assert_eq!(out, big);
        assert_eq!(dec.push(&wire[n..]), wire.len() - n);
        assert_eq!(dec.decode(&mut out).unwrap(), Some(4));
        assert_eq!(&out[..4], b"tail");
    }

    #[test]
    fn take_partial_and_restore_round_trip() {
        let mut wire = Vec::new();
        encode_frame(&[5; 100], &mut wire).unwrap();
        let mut dec = FrameDecoder::new(1000);
        dec.push(&wire[..40]);
        // Too small a buffer, or a complete frame: not taken.
        assert_eq!(dec.take_partial(&mut [0; 99]), None);
        let mut out = [0u8; 100];
        assert_eq!(dec.take_partial(&mut out), Some((100, 36)));
        assert_eq!(dec.buffered(), 0);
        assert_eq!(out[..36], [5; 36]);
        dec.restore(100, &out[..36]);
        assert_eq!(dec.push(&wire[40..]), wire.len() - 40);
        assert_eq!(dec.take_partial(&mut out), None);
        assert_eq!(dec.decode(&mut out).unwrap(), Some(100));
        assert_eq!(out, [5; 100]);
    }

    proptest! {
        /// Any sequence of frames, cut into reads at any points, decodes to the same sequence.
        #[test]
        fn round_trip_at_arbitrary_read_boundaries(
            msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40),
            cuts in prop::collection::vec(1usize..700, 1..80),
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                encode_frame(m, &mut wire).unwrap();
            }
            let mut dec = FrameDecoder::new(300);
            let mut out = [0u8; 300];
            let mut got = Vec::new();
            let mut pos = 0;
            let mut cut = cuts.iter().cycle();
            while pos < wire.len() {
                // Read like a kernel would: at most the cut, at most the spare room.
                let spare = dec.read_buf();
                let n = (*cut.next().unwrap()).min(spare.len()).min(wire.len() - pos);
                spare[..n].copy_from_slice(&wire[pos..pos + n]);
                dec.advance(n);
                pos += n;
                while let Some(len) = dec.decode(&mut out).unwrap() {
                    got.push(out[..len].to_vec());
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(dec.buffered(), 0);
        }

        /// Frames within and above the maximum, cut anywhere: each one within arrives, each one
        /// above is one error with its size, in order.
        #[test]
        fn frames_above_the_maximum_drop_out_at_arbitrary_read_boundaries(
            sizes in prop::collection::vec(0usize..700, 0..30),
            piece in 1usize..900,
        ) {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for (i, &len) in sizes.iter().enumerate() {
                let m = vec![i as u8; len];
                encode_frame(&m, &mut wire).unwrap();
                want.push(if len > 300 { Err((len, 300)) } else { Ok(m) });
            }
            let mut dec = FrameDecoder::new(300);
            let (got, err) = decode_in_pieces(&mut dec, &wire, piece);
            prop_assert!(err.is_none());
            prop_assert_eq!(got, want);
            prop_assert_eq!((dec.buffered(), dec.skipping()), (0, 0));
        }

        /// Arbitrary bytes never panic the decoder and never grow it past its maximum.
        #[test]
        fn arbitrary_input_is_bounded_and_never_panics(
            max in 0usize..2048,
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 0..20),
        ) {
            let mut dec = FrameDecoder::new(max);
            let mut out = vec![0u8; max];
            for c in &chunks {
                let mut rest = &c[..];
                loop {
                    let n = dec.push(rest);
                    rest = &rest[n..];
                    prop_assert!(dec.buf.len() <= max + FRAME_HEADER_LEN);
                    let mut progress = n > 0;
                    loop {
                        match dec.decode(&mut out) {
                            Ok(Some(len)) => {
                                prop_assert!(len <= max);
                                progress = true;
                            }
                            Ok(None) => break,
                            Err(e) if e.kind() == ErrorKind::MessageTooLarge => {
                                // A frame above the maximum, dropped: decoding goes on.
                                let (size, limit) = e.message_size().unwrap();
                                prop_assert!(size > max && limit == max);
                                progress = true;
                            }
                            Err(e) => {
                                prop_assert_eq!(e.kind(), ErrorKind::Corrupted);
                                return Ok(());
                            }
                        }
                    }
                    if rest.is_empty() {
                        break;
                    }
                    prop_assert!(progress, "decoder stalled with input left");
                }
            }
        }
    }
}
