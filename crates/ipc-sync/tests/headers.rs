//! Opening what is not a valid object of the type asked for: each field of a primitive's
//! header overwritten (magic, layout version, size, the type's extra word), an object of
//! another kind at the address, a misaligned or null address, and descriptors that
//! `Shared::open` must refuse (not a memfd, not sealed against shrinking, too short, not
//! writable). Every case is a typed error (`WrongType`, `Corrupted`, `InvalidInput`,
//! `PermissionDenied`), never a panic or an object used as if it were valid.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use ipc_core::{ErrorKind, Result};
use ipc_sync::{Condvar, Event, EventMode, Mutex, Semaphore, Shared, SharedObject};
use rustix::fs::{MemfdFlags, SealFlags};

/// The header's words: magic, layout version, size, the type's extra word.
const FIELDS: [(&str, usize); 4] = [("magic", 0), ("version", 4), ("size", 8), ("extra", 12)];

/// The header word at `at` of `obj`: what another process mapping the memory may write.
fn word<T>(obj: &T, at: usize) -> &AtomicU32 {
    // SAFETY: `at` is one of the header's offsets, inside the object and 4-aligned; header
    // fields are atomics, so writing one is what any process mapping the memory can do.
    unsafe { &*(obj as *const T).cast::<u8>().add(at).cast::<AtomicU32>() }
}

fn dup(fd: impl AsFd) -> OwnedFd {
    fd.as_fd().try_clone_to_owned().unwrap()
}

/// What `Shared::<kind>::open` says about `fd`: `Ok(())` or the error's kind and message.
fn open_as(kind: &str, fd: OwnedFd) -> std::result::Result<(), (ErrorKind, String)> {
    fn check<T: SharedObject>(
        r: Result<Shared<T>>,
    ) -> std::result::Result<(), (ErrorKind, String)> {
        r.map(drop).map_err(|e| (e.kind(), e.to_string()))
    }
    match kind {
        "Semaphore" => check(Shared::<Semaphore>::open(fd)),
        "Event" => check(Shared::<Event>::open(fd)),
        "Condvar" => check(Shared::<Condvar>::open(fd)),
        "Mutex<u32>" => check(Shared::<Mutex<u32>>::open(fd)),
        "Mutex<u64>" => check(Shared::<Mutex<u64>>::open(fd)),
        other => panic!("kind {other}"),
    }
}

/// One object of each kind, each in a memfd of its own, with its kind's name.
struct Objects {
    sem: Shared<Semaphore>,
    auto: Shared<Event>,
    manual: Shared<Event>,
    cv: Shared<Condvar>,
    m32: Shared<Mutex<u32>>,
    m64: Shared<Mutex<u64>>,
}

impl Objects {
    fn new() -> Objects {
        Objects {
            sem: Shared::create(3).unwrap(),
            auto: Shared::create(EventMode::AutoReset).unwrap(),
            manual: Shared::create(EventMode::ManualReset).unwrap(),
            cv: Shared::create(()).unwrap(),
            m32: Shared::create(7).unwrap(),
            m64: Shared::create(7).unwrap(),
        }
    }

    /// Each object: its kind's name, its descriptor, and its header's words.
    fn each(&self) -> Vec<(&'static str, OwnedFd, [&AtomicU32; 4])> {
        fn words<T>(o: &T) -> [&AtomicU32; 4] {
            FIELDS.map(|(_, at)| word(o, at))
        }
        vec![
            ("Semaphore", dup(&self.sem), words(&*self.sem)),
            ("Event", dup(&self.auto), words(&*self.auto)),
            ("Event", dup(&self.manual), words(&*self.manual)),
            ("Condvar", dup(&self.cv), words(&*self.cv)),
            ("Mutex<u32>", dup(&self.m32), words(&*self.m32)),
            ("Mutex<u64>", dup(&self.m64), words(&*self.m64)),
        ]
    }
}

#[test]
fn each_header_field_overwritten_is_refused_with_a_typed_error() {
    let objects = Objects::new();
    for (kind, fd, words) in objects.each() {
        open_as(kind, dup(&fd)).unwrap_or_else(|e| panic!("{kind} untouched: {e:?}"));
        for ((field, _), w) in FIELDS.iter().zip(words) {
            let good = w.load(Ordering::Relaxed);
            for bad in [0, good ^ 1, good.wrapping_add(1), u32::MAX] {
                w.store(bad, Ordering::Relaxed);
                let r = open_as(kind, dup(&fd));
                w.store(good, Ordering::Relaxed);
                let (got, msg) = match r {
                    // The extra word of a semaphore and a condvar is reserved: nothing reads it.
                    Ok(()) if *field == "extra" && matches!(kind, "Semaphore" | "Condvar") => {
                        continue;
                    }
                    Ok(()) => panic!("{kind}: {field} {bad:#x} accepted"),
                    Err(e) => e,
                };
                // The event's extra word is its mode, checked against the mode word.
                let want = if *field == "extra" && kind == "Event" {
                    ErrorKind::Corrupted
                } else {
                    ErrorKind::WrongType
                };
                assert_eq!(got, want, "{kind}: {field} {bad:#x}: {msg}");
            }
        }
        open_as(kind, fd).unwrap_or_else(|e| panic!("{kind} restored: {e:?}"));
    }
}

#[test]
fn an_object_of_another_kind_is_refused() {
    let objects = Objects::new();
    let kinds = ["Semaphore", "Event", "Condvar", "Mutex<u32>", "Mutex<u64>"];
    for (made, fd, _) in objects.each() {
        for asked in kinds {
            let r = open_as(asked, dup(&fd));
            if asked == made {
                r.unwrap_or_else(|e| panic!("{made} as itself: {e:?}"));
            } else {
                let (got, msg) = r.expect_err(&format!("{made} opened as {asked}"));
                assert_eq!(got, ErrorKind::WrongType, "{made} as {asked}: {msg}");
            }
        }
    }
}

#[test]
fn misaligned_and_null_addresses_are_refused() {
    let objects = Objects::new();
    let base = (&*objects.sem as *const Semaphore).cast::<u8>();
    for p in [base.wrapping_add(1), base.wrapping_add(2), std::ptr::null()] {
        // SAFETY: `open_at` refuses these addresses before reading through them (the first
        // two lie inside the mapping anyway).
        let e = unsafe { Semaphore::open_at(p.cast()) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{p:p}: {e}");
        // SAFETY: as above.
        let e = unsafe { Event::open_at(p.cast()) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{p:p}: {e}");
        // SAFETY: as above.
        let e = unsafe { Condvar::open_at(p.cast()) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{p:p}: {e}");
    }
}

fn memfd(flags: MemfdFlags, len: u64, seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create("ipctest-headers", MemfdFlags::CLOEXEC | flags).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    fd
}

#[test]
fn shared_open_refuses_descriptors_that_are_not_a_sealed_memfd_of_the_object() {
    let sem = Shared::<Semaphore>::create(1).unwrap();
    let (pipe_r, _pipe_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    let dir = std::env::temp_dir();
    let file_path = dir.join(format!("ipctest-headers-{}", std::process::id()));
    let file = std::fs::File::create_new(&file_path).unwrap();
    std::fs::remove_file(&file_path).unwrap();
    file.set_len(4096).unwrap();
    let seal = MemfdFlags::ALLOW_SEALING;
    let shrink = SealFlags::SHRINK | SealFlags::GROW;
    // A copy of the semaphore's bytes in a memfd sealed against writing: mapping it writable
    // is refused by the kernel.
    let write_sealed = {
        let fd = memfd(seal, 32, SealFlags::empty());
        // SAFETY: the semaphore's 32 bytes, read as plain bytes for a copy (nobody writes them
        // meanwhile: this test owns the only descriptor).
        let bytes =
            unsafe { std::slice::from_raw_parts((&*sem as *const Semaphore).cast::<u8>(), 32) };
        rustix::io::write(&fd, bytes).unwrap();
        rustix::fs::fcntl_add_seals(&fd, shrink | SealFlags::WRITE).unwrap();
        fd
    };
    // A read-only descriptor of the real object.
    let read_only: OwnedFd = std::fs::File::open(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&sem)
    ))
    .unwrap()
    .into();
    let cases: Vec<(&str, OwnedFd, &[ErrorKind])> = vec![
        ("a pipe", dup(&pipe_r), &[ErrorKind::WrongType]),
        ("a regular file", file.into(), &[ErrorKind::WrongType]),
        (
            "a memfd that cannot be sealed",
            memfd(MemfdFlags::empty(), 4096, SealFlags::empty()),
            &[ErrorKind::WrongType],
        ),
        (
            "a memfd not sealed against shrinking",
            memfd(seal, 4096, SealFlags::GROW),
            &[ErrorKind::WrongType],
        ),
        (
            "a sealed memfd too short",
            memfd(seal, 16, shrink),
            &[ErrorKind::WrongType],
        ),
        (
            "a sealed empty memfd",
            memfd(seal, 0, shrink),
            &[ErrorKind::WrongType],
        ),
        (
            "a sealed memfd of zeros",
            memfd(seal, 4096, shrink),
            &[ErrorKind::WrongType],
        ),
        (
            "a memfd sealed against writing",
            write_sealed,
            &[ErrorKind::PermissionDenied],
        ),
        (
            "a read-only descriptor",
            read_only,
            &[ErrorKind::PermissionDenied, ErrorKind::WrongType],
        ),
    ];
    for (what, fd, want) in cases {
        let e = Shared::<Semaphore>::open(fd).expect_err(what);
        assert!(want.contains(&e.kind()), "{what}: {e}");
    }
    assert_eq!(sem.value(), 1, "the object itself is untouched");
}
