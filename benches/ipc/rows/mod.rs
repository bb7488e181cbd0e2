//! Every row of the benchmark, in table order. To add a mechanism: write a unit struct that
//! implements [`Mechanism`] in a file here (see `pipe.rs` for a library row and its raw row),
//! declare the module, and list the struct in [`ROWS`].

mod pipe;
mod socket;

use crate::registry::Mechanism;

/// The rows, in the order the table prints them within each size group.
pub static ROWS: &[&dyn Mechanism] = &[
    &pipe::Pipe,
    &pipe::RawPipe,
    &socket::Unix,
    &socket::RawUnix,
    &socket::Tcp,
    &socket::RawTcp,
];

/// The row every other row is compared with in the "vs socket" column.
pub const SOCKET_BASELINE: &str = "uds";

/// The row named `id`.
pub fn find(id: &str) -> Option<&'static dyn Mechanism> {
    ROWS.iter().copied().find(|r| r.info().id == id)
}
