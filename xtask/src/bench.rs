//! `cargo xtask bench`: runs the criterion benchmarks and prints their results as JSON lines.
//!
//! stdout carries only the results, one line per benchmark run, sorted by id:
//! `{"bench":"turn/one_model_call","median_ns":812.4,"mean_ns":830.1,"unit":"ns"}`.
//! Everything else (the commands, cargo's and criterion's output) goes to stderr, so
//! `cargo xtask bench > results.jsonl` keeps a clean record.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::Cargo;

/// The criterion bench targets to run, as (package, bench target), in order.
const BENCHES: &[(&str, &str)] = &[
    ("kaos-runner", "turn"),
    ("kaos-runner", "session"),
    ("kaos-runner", "footprint"),
    ("kaos-runner", "object_store"),
    ("kaos-server", "http"),
];

/// Features a bench target needs, as (package, bench target, features).
const BENCH_FEATURES: &[(&str, &str, &str)] = &[("kaos-runner", "object_store", "object-store")];

/// Ratios between two benchmarks that must stay under a limit, as (numerator, denominator,
/// limit). Printed as `{"ratio":…,"of":…,"to":…,"value":…,"limit":…,"ok":…}` when both ran;
/// the command fails when one is over its limit.
const RATIOS: &[(&str, &str, f64)] = &[
    // Persistence cost per turn must not grow with the session (append, not rewrite).
    // On the memory VFS a write costs ~100-250 ns, so the 10-message baseline mostly measures
    // the allocator: a full session's checkpoint is larger (memory grows to its section
    // budgets by ~1,000 messages, then stays), and freeing the replaced one costs more than
    // a tiny one. Growth with the session's *length* is compared from 1,000 stored messages
    // (a full memory) to 10,000 (a ten times longer log).
    ("session/persist/memory/10000", "session/persist/memory/1000", 1.5),
    ("session/persist/disk/10000", "session/persist/disk/10", 1.5),
    // The cost of a turn does not grow with the session (docs/concepts/performance.md). The
    // memory VFS's windows are compared by the `turn` bench itself, `turn/plain/ratio` and
    // `turn/tool/ratio` (extra lines with their limit, 1.2): the two windows timed round by
    // round, since their criterion medians are minutes apart on a machine whose speed drifts.
    ("disk/481-500", "disk/1-20", 1.2),
    // A durable turn costs little more than the append and fsync it cannot avoid...
    ("durable/one", "durable/floor", 1.5),
    // ...and 100 sessions at once share fsyncs (group commit): at least 5x the throughput of
    // one fsync per turn, i.e. at most a fifth of the time per turn.
    ("durable/group-100", "durable/one", 0.2),
];

/// Medians that must stay under a limit in nanoseconds, as (benchmark, limit). Printed as
/// `{"limit_of":…,"median_ns":…,"limit_ns":…,"ok":…}` when the benchmark ran; the command fails
/// when one is over. Measured on the project's reference machine (2 shared cores).
const LIMITS: &[(&str, f64)] = &[
    ("turn/plain/1-20", 5_000.0),
    ("turn/tool/1-20", 10_000.0),
    ("turn/tool/81-100", 10_000.0),
    // Per turn: 200,000 turns/s.
    ("sessions/1000", 5_000.0),
];

/// Ratios between two measurements that benches report as extra JSON lines (`"value"`), with
/// the same meaning as [`RATIOS`]: object requests per turn must not grow with the session,
/// for a process that made the previous turns (warm) nor for a new one (cold).
const EXTRA_RATIOS: &[(&str, &str, f64)] = &[
    ("object_store/requests_per_turn/warm/turn_500", "object_store/requests_per_turn/warm/turn_1", 1.5),
    ("object_store/requests_per_turn/cold/turn_500", "object_store/requests_per_turn/cold/turn_1", 1.5),
];

/// Runs every bench in [`BENCHES`], passing `args` (e.g. a filter) to criterion, then prints the
/// estimates this run wrote.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    };
    let json = Cargo::new(["metadata", "--format-version", "1", "--no-deps"]).stdout()?;
    let metadata: Value = serde_json::from_slice(&json).context("`cargo metadata` printed invalid JSON")?;
    for (package, bench) in BENCHES {
        ensure_bench_target(&metadata, package, bench)?;
    }
    // Honours CARGO_TARGET_DIR and `build.target-dir`, like cargo itself.
    let target_dir = metadata
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("`cargo metadata` has no `target_directory`"))?;

    let criterion_dir = target_dir.join("criterion");
    let before = snapshot(&criterion_dir)?;
    // Benches may report measurements that are not timings (e.g. object requests per turn) as
    // JSON lines appended to this file; they are printed after the estimates.
    let extra = target_dir.join(format!("kaos-bench-extra-{}.jsonl", std::process::id()));
    let _ = fs::remove_file(&extra);
    for (package, bench) in BENCHES {
        let features = BENCH_FEATURES
            .iter()
            .filter(|(p, b, _)| p == package && b == bench)
            .map(|(_, _, features)| *features)
            .collect::<Vec<_>>()
            .join(",");
        let mut command = vec!["bench", "-p", package, "--bench", bench, "--locked"];
        if !features.is_empty() {
            command.extend(["--features", features.as_str()]);
        }
        command.extend(["--", "--noplot"]);
        Cargo::new(command).args(args).env("KAOS_BENCH_EXTRA", &extra).stdout_to_stderr().run()?;
    }
    let extra_lines = fs::read_to_string(&extra).unwrap_or_default();
    let _ = fs::remove_file(&extra);

    let estimates = updated_estimates(&criterion_dir, &before)?;
    if estimates.is_empty() {
        bail!(
            "no criterion estimates under {} were written by this run (did the filter match no benchmark?)",
            criterion_dir.display()
        );
    }
    for estimate in &estimates {
        println!("{}", estimate.json_line());
    }
    let mut over = Vec::new();
    for line in extra_lines.lines().filter(|l| !l.trim().is_empty()) {
        println!("{line}");
        if let Some(failed) = failed_measurement(line) {
            over.push(failed);
        }
    }
    for (of, to, limit) in RATIOS {
        let median = |id: &str| estimates.iter().find(|e| e.bench == id).map(|e| e.median_ns);
        if let (Some(numerator), Some(denominator)) = (median(of), median(to)) {
            let value = numerator / denominator;
            let ok = value <= *limit;
            println!(
                r#"{{"ratio":"{of} / {to}","value":{},"limit":{},"ok":{ok}}}"#,
                Value::from(value),
                Value::from(*limit)
            );
            if !ok {
                over.push(format!("{of} / {to} = {value:.2} (limit {limit})"));
            }
        }
    }
    let extra_value = |id: &str| {
        extra_lines
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v.get("bench").and_then(Value::as_str) == Some(id))
            .and_then(|v| v.get("value").and_then(Value::as_f64))
    };
    for (of, to, limit) in EXTRA_RATIOS {
        if let (Some(numerator), Some(denominator)) = (extra_value(of), extra_value(to)) {
            let value = numerator / denominator;
            let ok = value <= *limit;
            println!(
                r#"{{"ratio":"{of} / {to}","value":{},"limit":{},"ok":{ok}}}"#,
                Value::from(value),
                Value::from(*limit)
            );
            if !ok {
                over.push(format!("{of} / {to} = {value:.2} (limit {limit})"));
            }
        }
    }
    for (bench, limit) in LIMITS {
        if let Some(estimate) = estimates.iter().find(|e| e.bench == *bench) {
            let ok = estimate.median_ns <= *limit;
            println!(
                r#"{{"limit_of":"{bench}","median_ns":{},"limit_ns":{},"ok":{ok}}}"#,
                Value::from(estimate.median_ns),
                Value::from(*limit)
            );
            if !ok {
                over.push(format!("{bench} = {:.0} ns (limit {limit} ns)", estimate.median_ns));
            }
        }
    }
    if !over.is_empty() {
        bail!("benchmarks over their limits: {}", over.join("; "));
    }
    Ok(())
}

/// A measurement line a bench reported with `"ok": false`, described (`None` when it has no
/// verdict or passed).
fn failed_measurement(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    if value.get("ok").and_then(Value::as_bool) != Some(false) {
        return None;
    }
    let name = value.get("bench").and_then(Value::as_str).unwrap_or("a measurement");
    let limit = value.get("limit").map_or_else(|| "?".to_owned(), Value::to_string);
    Some(format!("{name} over its limit {limit}: {line}"))
}

fn ensure_bench_target(metadata: &Value, package: &str, bench: &str) -> Result<()> {
    let packages = metadata
        .get("packages")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("`cargo metadata` has no `packages`"))?;
    let Some(found) = packages.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(package)) else {
        bail!("bench package `{package}` is not a workspace member; fix BENCHES in xtask/src/bench.rs");
    };
    let targets = found.get("targets").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let exists = targets.iter().any(|target| {
        target.get("name").and_then(Value::as_str) == Some(bench)
            && target
                .get("kind")
                .and_then(Value::as_array)
                .is_some_and(|kinds| kinds.iter().any(|kind| kind.as_str() == Some("bench")))
    });
    if !exists {
        bail!(
            "`{package}` has no bench target `{bench}`: add {package}/benches/{bench}.rs with \
             `[[bench]] name = \"{bench}\"`, `harness = false` in {package}/Cargo.toml, \
             or remove it from BENCHES in xtask/src/bench.rs"
        );
    }
    Ok(())
}

/// One benchmark's result as criterion estimated it, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
struct Estimate {
    /// Criterion's full id, e.g. `turn/one_model_call` or `group/function/parameter`.
    bench: String,
    median_ns: f64,
    mean_ns: f64,
}

impl Estimate {
    fn json_line(&self) -> String {
        format!(
            r#"{{"bench":{},"median_ns":{},"mean_ns":{},"unit":"ns"}}"#,
            Value::from(self.bench.as_str()),
            Value::from(self.median_ns),
            Value::from(self.mean_ns)
        )
    }
}

/// When each benchmark's `new/estimates.json` under `criterion_dir` was last written.
fn snapshot(criterion_dir: &Path) -> Result<BTreeMap<PathBuf, SystemTime>> {
    let mut written = BTreeMap::new();
    for dir in new_dirs(criterion_dir)? {
        let estimates_file = dir.join("estimates.json");
        let modified = fs::metadata(&estimates_file)
            .and_then(|meta| meta.modified())
            .with_context(|| format!("cannot stat {}", estimates_file.display()))?;
        written.insert(dir, modified);
    }
    Ok(written)
}

/// Every benchmark under `criterion_dir` whose estimates are new or rewritten since `before`
/// was taken, sorted by id. Comparing against a snapshot rather than a start time keeps a
/// benchmark run moments earlier (e.g. without this run's filter) out of the results.
fn updated_estimates(criterion_dir: &Path, before: &BTreeMap<PathBuf, SystemTime>) -> Result<Vec<Estimate>> {
    let mut estimates = Vec::new();
    for (dir, modified) in snapshot(criterion_dir)? {
        if before.get(&dir) != Some(&modified) {
            estimates.push(read_estimate(criterion_dir, &dir)?);
        }
    }
    estimates.sort_by(|a, b| a.bench.cmp(&b.bench));
    Ok(estimates)
}

/// Every directory named `new` holding an `estimates.json` under `criterion_dir`, at any depth.
fn new_dirs(criterion_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if criterion_dir.is_dir() {
        find_new_dirs(criterion_dir, &mut found)?;
    }
    Ok(found)
}

/// Collects every directory named `new` holding an `estimates.json`, at any depth.
fn find_new_dirs(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let path = entry.path();
        if entry.file_name() == "new" && path.join("estimates.json").is_file() {
            found.push(path);
        } else {
            find_new_dirs(&path, found)?;
        }
    }
    Ok(())
}

/// Reads `<new_dir>/estimates.json` and names it from `<new_dir>/benchmark.json`, falling back
/// to the directory's path under `criterion_dir`.
fn read_estimate(criterion_dir: &Path, new_dir: &Path) -> Result<Estimate> {
    let read_json = |name: &str| -> Result<Value> {
        let path = new_dir.join(name);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let estimates = read_json("estimates.json")?;
    let point = |statistic: &str| {
        estimates.get(statistic).and_then(|s| s.get("point_estimate")).and_then(Value::as_f64).ok_or_else(
            || anyhow!("{}: no `{statistic}.point_estimate`", new_dir.join("estimates.json").display()),
        )
    };
    let full_id = if new_dir.join("benchmark.json").is_file() {
        read_json("benchmark.json")?.get("full_id").and_then(Value::as_str).map(str::to_owned)
    } else {
        None
    };
    let bench = match full_id {
        Some(id) => id,
        None => {
            let bench_dir = new_dir.parent().unwrap_or(new_dir);
            let relative = bench_dir.strip_prefix(criterion_dir).unwrap_or(bench_dir);
            relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
        }
    };
    Ok(Estimate { bench, median_ns: point("median")?, mean_ns: point("mean")? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::Duration;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!("xtask-bench-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn estimates_json(median: f64, mean: f64) -> String {
        let statistic = |value: f64| {
            serde_json::json!({
                "confidence_interval": {"confidence_level": 0.95, "lower_bound": value, "upper_bound": value},
                "point_estimate": value,
                "standard_error": 1.0,
            })
        };
        serde_json::json!({
            "mean": statistic(mean),
            "median": statistic(median),
            "median_abs_dev": statistic(1.0),
            "slope": statistic(mean),
            "std_dev": statistic(2.0),
        })
        .to_string()
    }

    /// Writes a criterion result as criterion lays it out: `<dir>/{new,base}/...`.
    fn write_bench(criterion: &Path, dir: &str, full_id: Option<&str>, median: f64, mean: f64) -> PathBuf {
        let bench_dir = criterion.join(dir);
        for sub in ["new", "base"] {
            fs::create_dir_all(bench_dir.join(sub)).unwrap();
            fs::write(bench_dir.join(sub).join("estimates.json"), estimates_json(median, mean)).unwrap();
            if let Some(full_id) = full_id {
                let benchmark = serde_json::json!({
                    "group_id": full_id.split('/').next(),
                    "function_id": full_id.split('/').nth(1),
                    "value_str": null,
                    "throughput": null,
                    "full_id": full_id,
                    "directory_name": dir,
                    "title": full_id,
                });
                fs::write(bench_dir.join(sub).join("benchmark.json"), benchmark.to_string()).unwrap();
            }
        }
        fs::create_dir_all(bench_dir.join("report")).unwrap();
        bench_dir.join("new").join("estimates.json")
    }

    #[test]
    fn reports_only_benchmarks_written_by_this_run_sorted_by_id() {
        let scratch = Scratch::new("updated");
        let criterion = scratch.0.join("criterion");
        let rerun = write_bench(&criterion, "turn/one_model_call", Some("turn/one_model_call"), 1.0, 1.0);
        write_bench(&criterion, "turn/untouched", Some("turn/untouched"), 1.0, 1.0);
        fs::create_dir_all(criterion.join("report")).unwrap();
        let before = snapshot(&criterion).unwrap();

        write_bench(&criterion, "turn/one_model_call", Some("turn/one_model_call"), 812.5, 830.25);
        let later = fs::metadata(&rerun).unwrap().modified().unwrap() + Duration::from_secs(5);
        File::options().write(true).open(&rerun).unwrap().set_modified(later).unwrap();
        write_bench(&criterion, "turn/tool_call/8", Some("turn/tool_call/8"), 2000.0, 2100.0);
        write_bench(&criterion, "memory/hydrate", None, 50.0, 51.0);

        let estimates = updated_estimates(&criterion, &before).unwrap();
        assert_eq!(
            estimates,
            vec![
                Estimate { bench: "memory/hydrate".to_owned(), median_ns: 50.0, mean_ns: 51.0 },
                Estimate { bench: "turn/one_model_call".to_owned(), median_ns: 812.5, mean_ns: 830.25 },
                Estimate { bench: "turn/tool_call/8".to_owned(), median_ns: 2000.0, mean_ns: 2100.0 },
            ]
        );
        assert_eq!(
            estimates[1].json_line(),
            r#"{"bench":"turn/one_model_call","median_ns":812.5,"mean_ns":830.25,"unit":"ns"}"#
        );
    }

    #[test]
    fn a_measurement_that_says_not_ok_fails_the_run() {
        let failed =
            failed_measurement(r#"{"bench":"soak/rss","value":1.4,"limit":1.1,"ok":false}"#).unwrap();
        assert!(failed.starts_with("soak/rss over its limit 1.1"), "{failed}");
        assert_eq!(failed_measurement(r#"{"bench":"soak/rss","value":1.0,"limit":1.1,"ok":true}"#), None);
        assert_eq!(
            failed_measurement(r#"{"bench":"object_store/requests_per_turn/warm","value":6.0}"#),
            None
        );
        assert_eq!(failed_measurement("not json"), None);
    }

    #[test]
    fn a_missing_criterion_directory_means_no_results() {
        let scratch = Scratch::new("missing");
        assert_eq!(updated_estimates(&scratch.0.join("criterion"), &BTreeMap::new()).unwrap(), vec![]);
    }

    #[test]
    fn estimates_without_a_median_are_an_error() {
        let scratch = Scratch::new("broken");
        let new_dir = scratch.0.join("turn").join("x").join("new");
        fs::create_dir_all(&new_dir).unwrap();
        fs::write(new_dir.join("estimates.json"), r#"{"mean":{"point_estimate":1.0}}"#).unwrap();
        assert!(updated_estimates(&scratch.0, &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_listed_bench_target_must_exist() {
        let metadata = serde_json::json!({
            "packages": [{
                "name": "kaos-runner",
                "targets": [
                    {"kind": ["lib"], "name": "kaos_runner"},
                    {"kind": ["bench"], "name": "turn"},
                ],
            }],
        });
        assert!(ensure_bench_target(&metadata, "kaos-runner", "turn").is_ok());
        let missing = ensure_bench_target(&metadata, "kaos-runner", "memory").unwrap_err().to_string();
        assert!(missing.starts_with("`kaos-runner` has no bench target `memory`"), "{missing}");
        assert!(ensure_bench_target(&metadata, "kaos-vfs", "io").is_err());
    }
}
