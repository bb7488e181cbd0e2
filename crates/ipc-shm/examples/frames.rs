//! Zero-copy frames between processes: a producer renders fixed-size image frames straight
//! into a shared-memory ring ([`Sender::loan`]) and a consumer process inspects them where they
//! lie ([`Receiver::recv_in_place`]). No byte of a frame is copied, by the kernel or by us.
//!
//! ```text
//! cargo run -p ipc-shm --example frames
//! ```
//!
//! The program runs itself a second time as the consumer, handing it the sealed memfd segment
//! the channel lives in by inheritance.

use std::error::Error;
use std::process::Command;
use std::time::Instant;

use ipc_core::ErrorKind;
use ipc_core::inherit::ChildFds;
use ipc_shm::{ChannelOptions, Receiver, Segment, Sender};

const WIDTH: usize = 640;
const HEIGHT: usize = 480;
/// One RGB frame, after an 8-byte header: frame number (u32), width and height (u16 each).
const FRAME: usize = 8 + WIDTH * HEIGHT * 3;
const FRAMES: u32 = 120;

/// The pixel value every frame has at (x, y, channel): cheap to make and to check.
fn pixel(n: u32, x: usize, y: usize, c: usize) -> u8 {
    (x + 2 * y + 3 * c + n as usize) as u8
}

fn render(n: u32, frame: &mut [u8]) {
    frame[..4].copy_from_slice(&n.to_le_bytes());
    frame[4..6].copy_from_slice(&(WIDTH as u16).to_le_bytes());
    frame[6..8].copy_from_slice(&(HEIGHT as u16).to_le_bytes());
    for (i, px) in frame[8..].chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % WIDTH, i / WIDTH);
        for (c, v) in px.iter_mut().enumerate() {
            *v = pixel(n, x, y, c);
        }
    }
}

fn producer() -> Result<(), Box<dyn Error>> {
    // Room for four frames in flight: the producer renders ahead while the consumer looks.
    let opts = ChannelOptions::new()
        .capacity((4 * FRAME).next_power_of_two())
        .max_message(FRAME);
    let segment = opts.create_memfd("frames")?;
    let mut tx = Sender::open(segment)?;

    let mut fds = ChildFds::new();
    fds.pass(
        "frames",
        tx.segment()
            .fd()
            .expect("a memfd has a descriptor")
            .try_clone_to_owned()?,
    )?;
    let mut cmd = Command::new(std::env::current_exe()?);
    let mut consumer = fds.spawn(&mut cmd)?;
    drop(fds);

    let start = Instant::now();
    for n in 0..FRAMES {
        let mut frame = tx.loan(FRAME)?; // room in the ring, in shared memory
        render(n, &mut frame); // rendered in place
        frame.commit(); // visible to the consumer: no copy
    }
    drop(tx); // the consumer drains the ring, then sees the end
    let status = consumer.wait()?;
    println!(
        "producer: rendered {FRAMES} frames of {} KiB in {:.1?}; consumer {status}",
        FRAME / 1024,
        start.elapsed()
    );
    if !status.success() {
        return Err("the consumer failed".into());
    }
    Ok(())
}

fn consumer() -> Result<(), Box<dyn Error>> {
    let mut rx = Receiver::open(Segment::inherited("frames")?)?;
    let mut n = 0u32;
    let mut checksum = 0u64;
    loop {
        let frame = match rx.recv_in_place() {
            Ok(frame) => frame,
            Err(e) if e.kind() == ErrorKind::Disconnected => break,
            Err(e) => return Err(e.into()),
        };
        // Read the frame where the producer wrote it.
        let number = u32::from_le_bytes(frame[..4].try_into()?);
        if number != n || frame.len() != FRAME {
            return Err(format!("expected frame {n}, got frame {number}").into());
        }
        for (i, px) in frame[8..].chunks_exact(3).enumerate() {
            let (x, y) = (i % WIDTH, i / WIDTH);
            for (c, &v) in px.iter().enumerate() {
                if v != pixel(n, x, y, c) {
                    return Err(format!("frame {n}: pixel ({x}, {y}) channel {c} is {v}").into());
                }
            }
            checksum = checksum.wrapping_add(u64::from(px[0]));
        }
        n += 1;
        // Dropping `frame` gives its room back to the producer.
    }
    if n != FRAMES {
        return Err(format!("received {n} frames, expected {FRAMES}").into());
    }
    println!("consumer: checked {n} frames in place (checksum {checksum:#x})");
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var_os(ipc_core::inherit::ENV_VAR).is_some() {
        consumer()
    } else {
        producer()
    }
}
