//! What the interleaved A/B examples (`socket_ab`, `stream_probe`) share: pinning, the
//! thread's CPU clock, and the table of medians they print.

/// This thread's CPU time in nanoseconds.
pub(crate) fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Pins the calling thread (process) to `cpu`.
pub(crate) fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// The median of `v`.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints, per link `names[k]`, the medians over the cycles of `t[k]`: wall time per message,
/// its ratio to link 0's (`base`) in the same cycle, and the CPU time per message of the two
/// sides (`t[k][1]`, `t[k][2]`, named by `sides`).
pub(crate) fn report(names: &[&str], t: &[[Vec<f64>; 3]], base: &str, sides: (&str, &str)) {
    for (name, t_k) in names.iter().zip(t) {
        let ratio = t_k[0].iter().zip(&t[0][0]).map(|(a, b)| a / b).collect();
        println!(
            "  {name:9} {:8.0} ns/msg  x {base} {:.3}  cpu {} {:.0} + {} {:.0} ns/msg",
            median(t_k[0].clone()),
            median(ratio),
            sides.0,
            median(t_k[1].clone()),
            sides.1,
            median(t_k[2].clone()),
        );
    }
}
