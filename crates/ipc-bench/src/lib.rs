//! `ipc-bench`: the cross-mechanism benchmark of the workspace, run by `cargo xtask bench`
//! (which builds the `ipc-bench` binary in release and runs it with its arguments), and the
//! mechanism fixtures its rows share with the conformance suite. Not published.
//!
//! Every row of [`rows::ROWS`] is measured between two processes: round-trip latency and
//! one-way throughput, by message size, with the processes on different cores and on the same
//! core. The child is started with ipc-testkit's spawner (this binary re-executed, running one
//! of the [`ROLES`]; a test binary registers the same roles with `ipc_testkit::roles!`). The
//! binary prints a table, writes `results.json` and `chart.svg` under `target/ipc-bench/`,
//! and checks every message ([`message`]). The synchronisation section ([`sync`]) measures
//! `ipc-sync`'s primitives beside raw futex loops: uncontended lock+unlock in one process, and
//! hand-offs between two processes on both placements, every hand-off checked; its chart is
//! `sync.svg`.
//!
//! ```text
//! cargo xtask bench [--quick | --tiny] [--filter TERM,...] [--out DIR] [--list]
//! ```
//!
//! # One description of each mechanism
//!
//! The library rows of the table and the conformance suite run over the same
//! [`Fixture`](ipc_testkit::fixture::Fixture)s ([`fixtures`]): how to make a channel, hand
//! either end to a child and adopt it there, the mechanism's properties and cleanup guard.
//! The trait lives in ipc-testkit, beside the suite that is generic over it; the fixtures live
//! here, in this crate's library, because they need every mechanism crate, and ipc-testkit
//! cannot depend on those: each of them has ipc-testkit as a dev-dependency, so the edge would
//! be a cycle. The root package's conformance tests take this crate as a dev-dependency
//! instead (`ipc_testkit::conformance_suite!(ipc_bench::fixtures::StreamPipe)`), which adds no
//! cycle: nothing here depends on the root package.
//!
//! # Layout
//!
//! - [`cli`]: the command line, the plan of points, the progress bar and the outputs;
//! - [`row`]: what a row is; [`rows`]: every row (library rows over the fixtures, raw syscall
//!   loops, socket baselines);
//! - [`engine`]: measuring one point between two processes, and the child's side;
//! - [`message`]: the checked messages; [`stats`], [`report`], [`chart`]: numbers, table,
//!   JSON and SVG;
//! - [`sync`]: the synchronisation section, its own rows and protocol over the same spawner.

pub mod chart;
pub mod cli;
pub mod engine;
pub mod fixtures;
pub mod message;
pub mod report;
pub mod row;
pub mod rows;
pub mod stats;
pub mod sync;

pub use engine::bench_point;
pub use sync::engine::bench_hand_off;

/// The roles the benchmark's children run, for [`ipc_testkit::role_main`] in the binary. A
/// test binary that measures points registers the same two with
/// `ipc_testkit::roles!(bench_point, bench_hand_off)`.
pub const ROLES: &[(&str, ipc_testkit::RoleFn)] = &[
    (engine::POINT_ROLE, bench_point),
    (sync::engine::HAND_OFF_ROLE, bench_hand_off),
];
