//! The fuzz bodies as ordinary tests: over proptest-generated inputs and over every file of the
//! checked-in seed corpus (`fuzz/seeds/<target>/`), so the fuzz targets cannot rot on a
//! stable-only CI.

use ipc_core::frame::encode_frame;
use proptest::prelude::*;

/// At least this many cases however low `PROPTEST_CASES` is: the bodies take microseconds.
const MIN_CASES: u32 = 256;

fn config() -> ProptestConfig {
    let cases = ProptestConfig::default().cases.max(MIN_CASES);
    ProptestConfig::with_cases(cases)
}

/// Input bytes: raw, or biased toward the shapes each body parses (small numbers first).
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..4096),
        proptest::collection::vec(0u8..8, 0..512),
    ]
}

/// Decoder settings (a maximum at or just above the largest frame, or just below it, so the
/// boundary is exercised), well-formed frames, then some noise.
fn frame_input() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        -1i32..2,
        any::<[u8; 2]>(),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(payloads, slack, [seed, small_out], noise)| {
            let largest = payloads.iter().map(Vec::len).max().unwrap_or(0) as i32;
            let max = u16::try_from((largest + slack).max(0)).unwrap();
            let mut data = max.to_le_bytes().to_vec();
            data.extend([0, seed, small_out]);
            for p in &payloads {
                encode_frame(p, &mut data).unwrap();
            }
            data.extend(noise);
            data
        })
}

/// A valid channel, nothing scribbled before the ends open, then operations (sends, receives,
/// loans; sometimes a scribble or an end leaving), so the body's model check runs often.
fn shm_input() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        proptest::collection::vec((prop_oneof![4 => 0u8..6, 1 => 6u8..8], any::<u8>()), 0..64),
    )
        .prop_map(|(capacity, ops)| {
            let mut data = vec![capacity, 0, 0];
            for (op, arg) in ops {
                data.extend([op, arg]);
            }
            data
        })
}

/// A POSIX-ish name: mostly well-formed, sometimes long or with a stray slash, dot or NUL.
fn name_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "/[a-zA-Z0-9._-]{0,20}".prop_map(String::into_bytes),
        "/?[a-z./\\x00]{0,6}".prop_map(String::into_bytes),
        (250usize..260).prop_map(|n| format!("/{}", "n".repeat(n)).into_bytes()),
        bytes(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoder_random(data in bytes()) {
        ipc_fuzz::frame_decoder(&data);
    }

    #[test]
    fn frame_decoder_frames(data in frame_input()) {
        ipc_fuzz::frame_decoder(&data);
    }

    #[test]
    fn shm_channel(data in bytes()) {
        ipc_fuzz::shm_channel(&data);
    }

    #[test]
    fn shm_channel_traffic(data in shm_input()) {
        ipc_fuzz::shm_channel(&data);
    }

    #[test]
    fn posix_name(data in name_input()) {
        ipc_fuzz::posix_name(&data);
    }

    #[test]
    fn typed_message(data in bytes()) {
        ipc_fuzz::typed_message(&data);
    }

    #[test]
    fn typed_message_mutated(data in typed_input()) {
        ipc_fuzz::typed_message(&data);
    }
}

/// A valid encoded [`ipc_fuzz::Sample`], then a few bytes overwritten and some cut or added,
/// so the decoder meets near-valid input (the hostile case that matters most).
fn typed_input() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<(u64, i32, bool)>(),
        ".{0,20}",
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(proptest::collection::vec(any::<u32>(), 0..4), 0..4),
        proptest::option::of(("[a-z]{0,8}", proptest::collection::vec(any::<u16>(), 0..4))),
        proptest::collection::vec((any::<u16>(), any::<u8>()), 0..3),
        -4i8..4,
    )
        .prop_map(
            |((id, delta, flag), text, bytes, nested, named, flips, cut)| {
                let sample = ipc_fuzz::Sample {
                    id,
                    delta,
                    text,
                    bytes,
                    nested,
                    shape: named.map(|(name, tags)| ipc_fuzz::Shape::Named { name, tags }),
                    flag,
                };
                let mut data = ipc_socket::typed::encode(&sample).unwrap();
                for (at, value) in flips {
                    if !data.is_empty() {
                        let i = usize::from(at) % data.len();
                        data[i] = value;
                    }
                }
                match cut {
                    c if c < 0 => data.truncate(data.len().saturating_sub(c.unsigned_abs().into())),
                    c => data.extend(std::iter::repeat_n(0x80, c as usize)),
                }
                data
            },
        )
}

/// Every seed file of every target passes (the corpus `cargo xtask fuzz` starts from).
#[test]
fn seed_corpus() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut ran = 0;
    for target in ipc_fuzz::TARGETS {
        let dir = seeds.join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            ipc_fuzz::run(target, &data);
            ran += 1;
        }
    }
    assert!(ran >= ipc_fuzz::TARGETS.len(), "the seed corpus is empty");
}
