//! The `ipc-bench` command: `cargo xtask bench [ARGS]` runs it (see [`ipc_bench::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    // A child the benchmark started runs its role and exits here.
    ipc_testkit::role_main(ipc_bench::ROLES);
    ipc_bench::cli::main()
}
