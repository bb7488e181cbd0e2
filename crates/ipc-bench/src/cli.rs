//! The command line of `ipc-bench`: parses the flags, plans the points, measures them with a
//! progress bar, and writes the table, `results.json`, `chart.svg` and `sync.svg`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{self, Config, Metric, Placement, Profile, Runs};
use crate::report::{Report, size_name};
use crate::row::Row;
use crate::stats::Point;
use crate::sync::report::SyncReport;
use crate::sync::{self, SyncRow};
use crate::{chart, message, rows};

const USAGE: &str = "\
usage: cargo xtask bench [OPTIONS]

  --quick            CI-sized subset (under a minute): fewer sizes, short runs
  --tiny             smoke test of the whole pipeline in seconds (numbers meaningless);
                     writes under target/ipc-bench/tiny/
  --sweep            the kernel mechanisms' library rows against their raw loops (pipe,
                     fifo, mq-posix, mq-sysv) at 64, 1000, 4092, 4096, 8192, 65536 B and
                     1 MiB, both metrics, full-length runs in five rounds (232 points,
                     ~7 minutes); the chart gains panels of each library row's time per message over
                     its raw row's.
                     Combines with --filter (rows, metrics, placements; sizes replace the
                     sweep's); writes under target/ipc-bench/sweep/
  --filter TERMS     comma-separated: row ids or families (pipe, pipe-raw, fifo, mq-posix,
                     mq-sysv, mq for both queue families, uds, tcp, ...),
                     metrics (latency, throughput), placements (cross-core, same-core),
                     sizes (64B, 4KiB, 1MiB, or any byte count >= 32: any list of sizes,
                     e.g. --filter pipe,64,1000,4092,4096,8192,64KiB,1MiB). Terms of one kind
                     are alternatives; kinds combine. Synchronisation rows (mutex, sem,
                     event, ... or `sync` for all of them) take placements only; without
                     row terms they run unless a metric or size is given.
  --out DIR          where results.json and chart.svg go (default target/ipc-bench)
  --list             list the rows and exit
  --peers            also measure the peer rows (iceoryx2-pubsub, -pubsub-4, -pubsub-16:
                     iceoryx2 0.10 pub-sub beside pubsub-1/-4/-16; iceoryx2-mpsc-2, -4:
                     N iceoryx2 publishers, one subscriber, beside mpsc-2/-4;
                     spin-flag: shared_memory 0.12 + raw_sync BusyEvent, beside shm-raw): `cargo xtask bench --peers` builds the benchmark
                     with its feature `peers` (crates.io at the first build)
  --drop-every N     testing aid: silently drop every Nth message (skip every Nth wait
                     for a synchronisation hand-off); the run must fail
";

/// One measurement point: a row, a metric, a message size and a placement.
type Todo = (&'static dyn Row, Metric, usize, Placement);

/// How the progress and the errors name a point.
fn what(row: &dyn Row, metric: Metric, size: usize, pl: Placement) -> String {
    format!(
        "{} {} {} {}",
        row.info().id,
        metric.as_str(),
        size_name(size),
        pl.as_str()
    )
}

/// Measures every point of `todo` in `rounds` rounds: each round measures every point once, in
/// order, with `measure` (given the round; fresh processes per call), so a point's runs come
/// from several pairs of processes started minutes apart ([`Profile::total_runs`]). Returns
/// the points with every round's runs merged; `measured` sees a point (round, index) after
/// each of its rounds.
fn in_rounds(
    todo: &[Todo],
    rounds: usize,
    mut measure: impl FnMut(usize, &Todo) -> Result<Runs, String>,
    mut measured: impl FnMut(usize, usize, &Point),
) -> Result<Vec<Point>, String> {
    let mut points: Vec<Point> = Vec::with_capacity(todo.len());
    for round in 0..rounds {
        for (i, t) in todo.iter().enumerate() {
            let &(row, metric, size, placement) = t;
            let runs = measure(round, t).map_err(|e| {
                format!(
                    "{} (round {}): {e}",
                    what(row, metric, size, placement),
                    round + 1
                )
            })?;
            match points.get_mut(i) {
                Some(point) => point.runs.append(runs)?,
                None => points.push(Point {
                    row: row.info().id,
                    metric,
                    size,
                    placement,
                    runs,
                }),
            }
            measured(round, i, &points[i]);
        }
    }
    Ok(points)
}

/// Runs the benchmark with this process's arguments; what `main` of the binary returns.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Default)]
struct Options {
    quick: bool,
    tiny: bool,
    sweep: bool,
    filter: Vec<String>,
    out: Option<PathBuf>,
    list: bool,
    help: bool,
    drop_every: Option<u64>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        match flag {
            "--quick" => o.quick = true,
            "--tiny" => o.tiny = true,
            "--sweep" => o.sweep = true,
            "--list" => o.list = true,
            // The peer rows are compiled in by the feature (`cargo xtask bench --peers`): a
            // binary built without it says so rather than measure without them.
            "--peers" if !cfg!(feature = "peers") => {
                return Err(
                    "--peers: this ipc-bench was built without its feature `peers`; \
                            run `cargo xtask bench --peers`"
                        .into(),
                );
            }
            "--peers" => {}
            "--filter" => o.filter.extend(
                value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_lowercase),
            ),
            "--out" => o.out = Some(value()?.into()),
            "--drop-every" => {
                let v = value()?;
                let n: u64 = v.parse().map_err(|_| format!("--drop-every {v}"))?;
                if n < 2 {
                    return Err("--drop-every needs N >= 2".into());
                }
                o.drop_every = Some(n);
            }
            "-h" | "--help" => o.help = true,
            _ => return Err(format!("unknown argument {a:?}\n\n{USAGE}")),
        }
    }
    if [o.quick, o.tiny, o.sweep].iter().filter(|&&m| m).count() > 1 {
        return Err("choose one of --quick, --tiny and --sweep".into());
    }
    Ok(o)
}

/// Parses `64`, `64B`, `4k`, `4KiB`, `1M`, `1MiB`.
fn parse_size(t: &str) -> Option<usize> {
    let t = t.trim_end_matches('b');
    let (num, mul) = if let Some(n) = t.strip_suffix("ki").or_else(|| t.strip_suffix('k')) {
        (n, 1 << 10)
    } else if let Some(n) = t.strip_suffix("mi").or_else(|| t.strip_suffix('m')) {
        (n, 1 << 20)
    } else {
        (t, 1)
    };
    num.parse::<usize>().ok().map(|n| n * mul)
}

/// What to measure.
struct Plan {
    mode: &'static str,
    profile: Profile,
    rows: Vec<&'static dyn Row>,
    sync_rows: Vec<SyncRow>,
    items: Vec<(Metric, usize)>,
    placements: Vec<Placement>,
}

const LATENCY_SIZES: [usize; 3] = [64, 1 << 10, 64 << 10];
const THROUGHPUT_SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];

/// The sizes of `--sweep`, for both metrics: around the framing's edges (`PIPE_BUF` - 4 is
/// the largest atomic frame, 4096 and 8192 are one and two pages that a 4-byte prefix makes
/// straddle a page more, 65536 the default pipe capacity) and a large message.
pub const SWEEP_SIZES: [usize; 7] = [64, 1000, 4092, 4096, 8192, 64 << 10, 1 << 20];

/// The families `--sweep` selects when no row is named: the kernel mechanisms.
const SWEEP_FAMILIES: [&str; 4] = ["pipe", "fifo", "mq-posix", "mq-sysv"];

/// Whether `--sweep` takes `row` when no row is named: a kernel mechanism's synchronous
/// library rows and its raw row (the async rows measure the adapter, not the framing).
fn in_sweep(row: &dyn Row) -> bool {
    let i = row.info();
    SWEEP_FAMILIES.contains(&i.family) && !i.id.ends_with("-async")
}

/// The profile of the full run (and the sweep).
const FULL: Profile = Profile {
    // Five rounds of every point, each with a fresh pair of processes making one run (see
    // `Profile::total_runs`): five runs of 250 ms per point from five pairs, in about the time
    // three pairs of two runs took.
    warmup: Duration::from_millis(100),
    runs: 1,
    rounds: 5,
    run_time: Duration::from_millis(250),
    min_msgs: 100,
};

fn plan(o: &Options, cpus: (usize, Option<usize>)) -> Result<Plan, String> {
    let (mode, profile, lat, thr): (_, _, &[usize], &[usize]) = if o.tiny {
        let p = Profile {
            warmup: Duration::from_millis(5),
            runs: 2,
            rounds: 1,
            run_time: Duration::from_millis(10),
            min_msgs: 150,
        };
        ("tiny", p, &[64], &[64 << 10])
    } else if o.quick {
        let p = Profile {
            warmup: Duration::from_millis(50),
            runs: 3,
            rounds: 1,
            run_time: Duration::from_millis(100),
            min_msgs: 50,
        };
        ("quick", p, &[64, 64 << 10], &[64, 1 << 20])
    } else if o.sweep {
        // The full profile: the sweep is judged against a 1.2x bound, which short runs are
        // too noisy for.
        ("sweep", FULL, &SWEEP_SIZES, &SWEEP_SIZES)
    } else {
        ("full", FULL, &LATENCY_SIZES, &THROUGHPUT_SIZES)
    };
    let mut rows = Vec::new();
    let mut sync_rows = Vec::new();
    let mut metrics = Vec::new();
    let mut places = Vec::new();
    let mut sizes = Vec::new();
    for t in &o.filter {
        let matching: Vec<_> = rows::ROWS
            .iter()
            .copied()
            .filter(|r| {
                let i = r.info();
                // `mq` selects both `mq-posix` and `mq-sysv`.
                i.id == t
                    || i.family == t
                    || i.family
                        .strip_prefix(t.as_str())
                        .is_some_and(|f| f.starts_with('-'))
            })
            .collect();
        let sync_matching: Vec<SyncRow> = sync::SYNC_ROWS
            .iter()
            .copied()
            .filter(|r| t == sync::SECTION || r.info().id == t || r.info().family == t)
            .collect();
        if !matching.is_empty() {
            rows.extend(matching);
        } else if !sync_matching.is_empty() {
            sync_rows.extend(sync_matching);
        } else if let Some(m) = [Metric::RoundTrip, Metric::Throughput]
            .into_iter()
            .find(|m| m.as_str() == t)
        {
            metrics.push(m);
        } else if let Some(p) = [Placement::CrossCore, Placement::SameCore]
            .into_iter()
            .find(|p| p.as_str() == t)
        {
            places.push(p);
        } else if let Some(s) = parse_size(t) {
            if s < message::MIN_SIZE {
                return Err(format!(
                    "size {t}: messages carry a {}-byte check, so the smallest is {} B",
                    message::MIN_SIZE,
                    message::MIN_SIZE
                ));
            }
            sizes.push(s);
        } else {
            let ids: Vec<_> = rows::ROWS
                .iter()
                .map(|r| r.info().id)
                .chain(sync::SYNC_ROWS.iter().map(|r| r.info().id))
                .collect();
            return Err(format!(
                "--filter {t:?} is not a row ({}, or sync), metric (latency, throughput), \
                 placement (cross-core, same-core) or size (64B, 4KiB, 1MiB, ...)",
                ids.join(", ")
            ));
        }
    }
    if rows.is_empty() && sync_rows.is_empty() && o.sweep {
        rows = rows::ROWS
            .iter()
            .copied()
            .filter(|r| in_sweep(*r))
            .collect();
    } else if rows.is_empty() && sync_rows.is_empty() {
        rows = rows::ROWS.to_vec();
        if metrics.is_empty() && sizes.is_empty() {
            sync_rows = sync::SYNC_ROWS.to_vec();
        }
    }
    // Table order, without duplicates.
    let sync_rows: Vec<SyncRow> = sync::SYNC_ROWS
        .iter()
        .copied()
        .filter(|r| sync_rows.iter().any(|x| x.info().id == r.info().id))
        .collect();
    // Table order, without duplicates.
    let rows: Vec<_> = rows::ROWS
        .iter()
        .copied()
        .filter(|r| rows.iter().any(|x| x.info().id == r.info().id))
        .collect();
    let mut items = Vec::new();
    for (m, defaults) in [(Metric::RoundTrip, lat), (Metric::Throughput, thr)] {
        if rows.is_empty() || !metrics.is_empty() && !metrics.contains(&m) {
            continue;
        }
        let mut s: Vec<usize> = if sizes.is_empty() {
            defaults.to_vec()
        } else {
            sizes.clone()
        };
        s.sort_unstable();
        s.dedup();
        items.extend(s.into_iter().map(|s| (m, s)));
    }
    let mut placements = if places.is_empty() {
        vec![Placement::CrossCore, Placement::SameCore]
    } else {
        places
    };
    placements.dedup();
    if cpus.1.is_none() {
        if placements == [Placement::CrossCore] {
            return Err("cross-core placement needs two CPUs; this process may use one".into());
        }
        eprintln!("ipc-bench: only one CPU available: measuring same-core only");
        placements.retain(|&p| p == Placement::SameCore);
    }
    Ok(Plan {
        mode,
        profile,
        rows,
        sync_rows,
        items,
        placements,
    })
}

fn kernel() -> String {
    let u = rustix::system::uname();
    format!(
        "{} {}",
        u.sysname().to_string_lossy(),
        u.release().to_string_lossy()
    )
}

fn out_dir(o: &Options) -> PathBuf {
    if let Some(d) = &o.out {
        return d.clone();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The workspace's target directory: this crate is `crates/ipc-bench` in it.
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .ancestors()
                .nth(2)
                .unwrap_or(manifest)
                .join("target")
        });
    let dir = target.join("ipc-bench");
    if o.tiny {
        dir.join("tiny")
    } else if o.sweep {
        dir.join("sweep")
    } else {
        dir
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    if o.help {
        print!("{USAGE}");
        return Ok(());
    }
    if o.list {
        for r in rows::ROWS {
            let i = r.info();
            println!(
                "{:17} family {:8} {:8} {}",
                i.id,
                i.family,
                i.kind.as_str(),
                i.properties.mechanism
            );
        }
        println!("\nsynchronisation (--filter {}):", sync::SECTION);
        for r in sync::SYNC_ROWS {
            let i = r.info();
            println!(
                "{:17} family {:6} {:8} {}: {}",
                i.id,
                i.family,
                i.kind.as_str(),
                i.group.unit(),
                i.what
            );
        }
        return Ok(());
    }
    let allowed = engine::allowed_cpus();
    let cpus = (allowed[0], allowed.get(1).copied());
    let plan = plan(&o, cpus)?;
    let cfg = Config {
        profile: plan.profile,
        cpus,
        drop_every: o.drop_every,
        abandon_at: None,
    };
    let mut todo: Vec<Todo> = Vec::new();
    for &(metric, size) in &plan.items {
        for &pl in &plan.placements {
            for &row in &plan.rows {
                if row.info().max_message.is_none_or(|m| size <= m) && row.measures(metric) {
                    todo.push((row, metric, size, pl));
                }
            }
        }
    }
    let mut sync_todo = Vec::new();
    for &row in &plan.sync_rows {
        match row {
            // One process: placement does not apply.
            SyncRow::Uncontended(_) => sync_todo.push((row, plan.placements[0])),
            SyncRow::HandOff(_) => sync_todo.extend(plan.placements.iter().map(|&pl| (row, pl))),
        }
    }
    let measured_cpus: Vec<usize> = [Some(cpus.0), cpus.1].into_iter().flatten().collect();
    let ticks_before = engine::cpu_ticks(&measured_cpus);
    let rounds = plan.profile.rounds.max(1);
    let points_todo = todo.len() * rounds + sync_todo.len();
    let bar = ProgressBar::new(
        (todo.len() * rounds * (plan.profile.runs + 1)
            + sync_todo.len() * (plan.profile.total_runs() + 1)) as u64,
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:32} {pos}/{len} runs, {elapsed} elapsed, ~{eta} left: {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    let lines = bar.is_hidden();
    let points = in_rounds(
        &todo,
        rounds,
        |round, &(row, metric, size, pl)| {
            bar.set_message(format!(
                "round {}/{rounds}: {}",
                round + 1,
                what(row, metric, size, pl)
            ));
            engine::measure(row, metric, size, pl, &cfg, &mut || bar.inc(1))
        },
        |round, i, point| {
            if !lines {
                return;
            }
            let v = match point.metric {
                Metric::RoundTrip => format!("median {:.1} us", point.median_ns() / 1e3),
                Metric::Throughput => {
                    format!("{:.3} GiB/s", point.bytes_per_sec() / (1u64 << 30) as f64)
                }
            };
            let (row, metric, size, pl) = todo[i];
            eprintln!(
                "[{}/{}] round {}/{rounds}: {}: {v}",
                round * todo.len() + i + 1,
                points_todo,
                round + 1,
                what(row, metric, size, pl)
            );
        },
    )?;
    // The synchronisation rows: one pair of processes each, with every round's runs.
    let sync_cfg = Config {
        profile: Profile {
            runs: plan.profile.total_runs(),
            rounds: 1,
            ..plan.profile
        },
        ..cfg.clone()
    };
    let mut sync_points = Vec::new();
    for (i, &(row, pl)) in sync_todo.iter().enumerate() {
        let what = match row {
            SyncRow::Uncontended(_) => format!("{} one-process", row.info().id),
            SyncRow::HandOff(_) => format!("{} {}", row.info().id, pl.as_str()),
        };
        bar.set_message(what.clone());
        let point = sync::engine::measure(row, pl, &sync_cfg, &mut || bar.inc(1))
            .map_err(|e| format!("{what}: {e}"))?;
        if lines {
            eprintln!(
                "[{}/{}] {what}: median {:.1} ns per {}",
                todo.len() * rounds + i + 1,
                points_todo,
                point.median_ns(),
                row.info().group.unit()
            );
        }
        sync_points.push(point);
    }
    bar.finish_and_clear();
    if o.drop_every.is_some() {
        return Err(format!(
            "--drop-every {} was set, yet every point passed its checks: the checks are broken",
            o.drop_every.unwrap_or(0)
        ));
    }
    let report = Report {
        mode: plan.mode,
        profile: plan.profile,
        cpus,
        kernel: kernel(),
        steal: engine::steal_share(ticks_before, engine::cpu_ticks(&measured_cpus)),
        rows: plan.rows.iter().map(|r| r.info()).collect(),
        items: plan.items,
        placements: plan.placements.clone(),
        points,
    };
    let sync_report = SyncReport {
        rows: plan.sync_rows.iter().map(SyncRow::info).collect(),
        placements: plan.placements,
        points: sync_points,
    };
    println!("{}{}", report.table(), sync_report.table());
    let doorbell = if o.tiny {
        rows::asynch::TINY_MESSAGES
    } else {
        rows::asynch::MESSAGES
    };
    let rings = rows::asynch::doorbell_rings_per_1000(doorbell, 64).map_err(|e| e.to_string())?;
    println!(
        "shm-async doorbell: {rings:.2} rings per 1,000 messages ({doorbell} messages of 64 \
         bytes streamed to an async receiver; 0 while it keeps up without sleeping)"
    );
    let dir = out_dir(&o);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let json = dir.join("results.json");
    let mut results = report.json();
    results["sync"] = sync_report.json();
    results["shm_async_doorbell_rings_per_1000"] = serde_json::json!(rings);
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&json, text + "\n").map_err(|e| format!("write {}: {e}", json.display()))?;
    println!("results: {}", json.display());
    if !report.points.is_empty() {
        let svg = dir.join("chart.svg");
        chart::draw(&report, &svg)?;
        println!("chart:   {}", svg.display());
    }
    if !sync_report.points.is_empty() {
        let svg = dir.join("sync.svg");
        sync::chart::draw(&sync_report, &svg)?;
        println!("chart:   {}", svg.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Runs, ThroughputRun};
    use crate::row::RowKind;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sweep_plans_the_kernel_rows_at_every_sweep_size() {
        let o = parse(&args(&["--sweep"])).unwrap();
        let p = plan(&o, (0, Some(1))).unwrap();
        assert_eq!(p.mode, "sweep");
        assert!(p.sync_rows.is_empty());
        let ids: Vec<_> = p.rows.iter().map(|r| r.info().id).collect();
        for id in [
            "pipe",
            "pipe-raw",
            "pipe-raw-framed",
            "fifo-stream",
            "fifo-raw",
            "mq-posix",
            "mq-sysv-raw",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        assert!(ids.iter().all(|id| !id.ends_with("-async")), "{ids:?}");
        assert!(!ids.contains(&"uds") && !ids.contains(&"shm"), "{ids:?}");
        for m in [Metric::RoundTrip, Metric::Throughput] {
            let sizes: Vec<usize> = p
                .items
                .iter()
                .filter(|(im, _)| *im == m)
                .map(|&(_, s)| s)
                .collect();
            assert_eq!(sizes, SWEEP_SIZES);
        }
        // Rows, metrics and sizes of --filter narrow or replace the sweep's.
        let o = parse(&args(&["--sweep", "--filter", "pipe,throughput,100,5000"])).unwrap();
        let p = plan(&o, (0, Some(1))).unwrap();
        assert!(p.rows.iter().all(|r| r.info().family == "pipe"));
        assert_eq!(
            p.items,
            vec![(Metric::Throughput, 100), (Metric::Throughput, 5000)]
        );
        assert!(parse(&args(&["--sweep", "--quick"])).is_err());
    }

    fn point(row: &'static str, size: usize, msgs_per_sec: f64) -> Point {
        Point {
            row,
            metric: Metric::Throughput,
            size,
            placement: Placement::SameCore,
            runs: Runs::Throughput(vec![ThroughputRun {
                msgs: msgs_per_sec as u64,
                bytes: msgs_per_sec as u64 * size as u64,
                secs: 1.0,
            }]),
        }
    }

    /// Every round measures every point once, all points before the next round, and each
    /// point keeps every round's runs; a failure names the point and the round.
    #[test]
    fn rounds_measure_every_point_once_each_and_keep_every_run() {
        let rows = [rows::find("pipe").unwrap(), rows::find("pipe-raw").unwrap()];
        let todo: Vec<Todo> = rows
            .iter()
            .map(|&r| (r, Metric::Throughput, 64, Placement::SameCore))
            .collect();
        let mut calls = Vec::new();
        let mut seen = Vec::new();
        let points = in_rounds(
            &todo,
            3,
            |round, t| {
                calls.push((round, t.0.info().id));
                let msgs = 10 * round as u64 + 1;
                Ok(Runs::Throughput(vec![ThroughputRun {
                    msgs,
                    bytes: msgs * 64,
                    secs: 1.0,
                }]))
            },
            |round, i, _| seen.push((round, i)),
        )
        .unwrap();
        let order: Vec<_> = (0..3)
            .flat_map(|r| [(r, "pipe"), (r, "pipe-raw")])
            .collect();
        assert_eq!(calls, order);
        assert_eq!(seen.len(), 6);
        for p in &points {
            match &p.runs {
                Runs::Throughput(r) => {
                    assert_eq!(r.iter().map(|r| r.msgs).collect::<Vec<_>>(), [1, 11, 21]);
                }
                Runs::Latency(_) => panic!("the metric changed"),
            }
        }
        let err = in_rounds(
            &todo,
            2,
            |round, _| {
                if round == 1 {
                    Err("boom".into())
                } else {
                    Ok(Runs::Latency(Vec::new()))
                }
            },
            |_, _, _| {},
        )
        .unwrap_err();
        assert_eq!(err, "pipe throughput 64 B same-core (round 2): boom");
    }

    #[test]
    fn peers_are_refused_by_a_build_without_them() {
        // `cargo xtask bench --peers` builds with the feature; a binary without it says so.
        let parsed = parse(&args(&["--peers"]));
        assert_eq!(parsed.is_ok(), cfg!(feature = "peers"), "{parsed:?}");
        assert_eq!(
            rows::find("iceoryx2-pubsub").is_some(),
            cfg!(feature = "peers")
        );
    }

    #[test]
    fn the_sweep_reports_and_charts_library_over_raw_by_size() {
        let rows: Vec<_> = ["pipe", "pipe-raw"]
            .iter()
            .map(|id| rows::find(id).unwrap().info())
            .collect();
        assert_eq!(rows[1].kind, RowKind::Raw);
        let report = Report {
            mode: "sweep",
            profile: FULL,
            cpus: (0, Some(1)),
            kernel: "test".into(),
            steal: None,
            rows,
            items: vec![(Metric::Throughput, 64), (Metric::Throughput, 4096)],
            placements: vec![Placement::SameCore],
            points: vec![
                point("pipe", 64, 1000.0),
                point("pipe-raw", 64, 1000.0),
                point("pipe", 4096, 1000.0),
                point("pipe-raw", 4096, 1500.0),
            ],
        };
        let ratios = report
            .raw_ratios(&report.rows[0], Metric::Throughput, Placement::SameCore)
            .unwrap();
        assert_eq!(ratios, vec![(64.0, 1.0), (4096.0, 1.5)]);
        assert!(
            report
                .raw_ratios(&report.rows[1], Metric::Throughput, Placement::SameCore)
                .is_none()
        );
        let table = report.table();
        assert!(table.contains("Library / raw"), "{table}");
        assert!(table.contains("1.50!"), "{table}");
        assert!(table.contains("1.00 "), "{table}");
        let dir = std::env::temp_dir().join(format!("ipc-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("chart.svg");
        chart::draw(&report, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            text.contains("library / raw time per message"),
            "no ratio panel"
        );
    }
}
