//! The conformance suite for the shared-memory channel: a ring in a sealed memfd segment
//! (1 MiB by default), each end handed to a child by inheriting the segment (the parent
//! detaches its end, the child opens it). The fixture ([`ipc_bench::fixtures::ShmChannel`]) is
//! the one the benchmark's `shm` row measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::ShmChannel);
