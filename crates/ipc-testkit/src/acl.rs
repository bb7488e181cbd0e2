//! A directory with a default POSIX ACL that grants `nobody` everything and the owning group
//! nothing: where a new file inherits an access ACL of its own beside its mode, for the tests
//! that check a library's "exact mode" (FIFOs, socket files) holds there too.

use std::path::PathBuf;

use crate::TempDir;

/// The uid the default ACL grants everything (`nobody`).
pub const NOBODY: u32 = 65534;

/// Where a file may carry its access ACL, the xattr a test reads to see that none is left.
pub const ACCESS_XATTR: &str = "system.posix_acl_access";

/// The `system.posix_acl_*` xattr value (version 2) of `entries`: (tag, permissions, id).
fn encode(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut x = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        x.extend_from_slice(&tag.to_le_bytes());
        x.extend_from_slice(&perm.to_le_bytes());
        x.extend_from_slice(&id.to_le_bytes());
    }
    x
}

/// Makes `dir/d` (reachable by anyone: `0o711` on both) with a default ACL granting the owner
/// and `nobody` everything, the owning group and others nothing. `None`, after saying so on
/// stderr, where the filesystem takes no ACLs (the test then has nothing to check).
///
/// # Panics
/// If the directories cannot be made.
pub fn dir_with_default_acl(dir: &TempDir) -> Option<PathBuf> {
    const USER_OBJ: u16 = 0x01;
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    let none = u32::MAX;
    rustix::fs::chmod(dir.path(), rustix::fs::Mode::from_raw_mode(0o711)).unwrap();
    let sub = dir.join("d");
    std::fs::create_dir(&sub).unwrap();
    rustix::fs::chmod(&sub, rustix::fs::Mode::from_raw_mode(0o711)).unwrap();
    let default = encode(&[
        (USER_OBJ, 7, none),
        (USER, 7, NOBODY),
        (GROUP_OBJ, 0, none),
        (MASK, 7, none),
        (OTHER, 0, none),
    ]);
    match rustix::fs::setxattr(
        &sub,
        "system.posix_acl_default",
        &default,
        rustix::fs::XattrFlags::empty(),
    ) {
        Ok(()) => Some(sub),
        Err(e) => {
            eprintln!("no ACLs on this filesystem ({e}); skipped");
            None
        }
    }
}
