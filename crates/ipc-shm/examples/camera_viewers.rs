//! One camera process, several viewers: the camera renders each frame straight into a slot of
//! a publish-subscribe segment ([`Publisher::publish_with`]) and every viewer process reads it
//! where it lies ([`Subscriber::recv_in_place`]). No byte of a frame is copied; the camera waits
//! for the slowest viewer (policy Block) and each viewer sees every frame, in order.
//!
//! ```text
//! cargo run -p ipc-shm --example camera_viewers
//! ```
//!
//! The program runs itself again as each viewer; viewers open the segment by its POSIX name,
//! as unrelated processes would.

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

use ipc_shm::prelude::*;
use ipc_shm::{Policy, PubSubOptions, Publisher, Segment, Subscriber};

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
/// One RGB frame after an 8-byte header: frame number (u32), width and height (u16 each).
const FRAME: usize = 8 + WIDTH * HEIGHT * 3;
const FRAMES: u32 = 120;
const VIEWERS: usize = 3;

fn pixel(n: u32, i: usize) -> u8 {
    (i + n as usize * 7) as u8
}

fn render(n: u32, frame: &mut [u8]) {
    frame[..4].copy_from_slice(&n.to_le_bytes());
    frame[4..6].copy_from_slice(&(WIDTH as u16).to_le_bytes());
    frame[6..8].copy_from_slice(&(HEIGHT as u16).to_le_bytes());
    for (i, b) in frame[8..].iter_mut().enumerate() {
        *b = pixel(n, i);
    }
}

fn camera() -> Result<(), Box<dyn Error>> {
    let name = format!("/ipc-shm-camera-{}", std::process::id());
    // Eight frames in flight, up to 16 viewers.
    let opts = PubSubOptions::new()
        .slots(8)
        .max_message(FRAME)
        .subscribers(16)
        .policy(Policy::Block);
    let segment = opts.create_posix(name.as_str())?.remove_on_drop();
    let mut camera = Publisher::open(segment)?;
    let mut viewers = (0..VIEWERS)
        .map(|i| {
            Command::new(std::env::current_exe()?)
                .args(["viewer", &name, &i.to_string()])
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A viewer sees the frames published after it joined: wait for all of them.
    let give_up = Instant::now() + Duration::from_secs(10);
    while camera.subscribers() < VIEWERS {
        if Instant::now() > give_up {
            return Err("the viewers did not join".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    for n in 0..FRAMES {
        // Rendered in place: the slot is the frame buffer.
        camera.publish_with(FRAME, Deadline::after(Duration::from_secs(5)), |frame| {
            render(n, frame)
        })?;
    }
    let took = start.elapsed();
    drop(camera); // the viewers drain what was published, then see Disconnected
    for v in &mut viewers {
        if !v.wait()?.success() {
            return Err("a viewer failed".into());
        }
    }
    println!(
        "camera: {FRAMES} frames of {} KiB to {VIEWERS} viewers in {took:.2?} ({:.0} frames/s)",
        FRAME / 1024,
        f64::from(FRAMES) / took.as_secs_f64()
    );
    Ok(())
}

fn viewer(name: &str, who: &str) -> Result<(), Box<dyn Error>> {
    let mut sub = Subscriber::open(Segment::open(name)?)?;
    let mut seen = 0u32;
    loop {
        match sub.recv_in_place_deadline(Deadline::after(Duration::from_secs(10))) {
            Ok(frame) => {
                let n = u32::from_le_bytes(frame[..4].try_into()?);
                if n != seen || frame.len() != FRAME {
                    return Err(format!("viewer {who}: frame {n}, expected {seen}").into());
                }
                // Inspect a few pixels where they lie.
                for i in [0, 1000, WIDTH * HEIGHT * 3 - 1] {
                    if frame[8 + i] != pixel(n, i) {
                        return Err(format!("viewer {who}: frame {n} damaged at {i}").into());
                    }
                }
                seen += 1;
            }
            Err(e) if e.kind() == ErrorKind::Disconnected => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "viewer {who}: {seen} frames, each read in place, {} missed",
        sub.missed()
    );
    if seen != FRAMES {
        return Err(format!("viewer {who}: {seen} frames of {FRAMES}").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("viewer") => viewer(&args[2], &args[3]),
        _ => camera(),
    }
}
