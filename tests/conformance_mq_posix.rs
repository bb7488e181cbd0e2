//! The conformance suite for POSIX message queues: a queue with a unique name, created by the
//! parent, opened by name in the child for the end it is given. The fixture
//! ([`ipc_bench::fixtures::PosixQueue`]) is the one the benchmark's `mq-posix` row measures.

ipc_testkit::conformance_suite!(ipc_bench::fixtures::PosixQueue);
