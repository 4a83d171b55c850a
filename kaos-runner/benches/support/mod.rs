//! What the bench binaries share: their filter and their extra JSON lines.

use std::io::Write as _;

use serde_json::Value;

/// Prints `line` and appends it to the file `cargo xtask bench` reads extra lines from
/// (`KAOS_BENCH_EXTRA`), which fails the command when the line says `"ok": false`.
pub fn report(line: Value) {
    let line = line.to_string();
    println!("{line}");
    if let Ok(path) = std::env::var("KAOS_BENCH_EXTRA") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

/// A positional argument (criterion's filter), if any: this binary measures only what it names.
pub fn selected(name: &str) -> bool {
    // Values of criterion's options (`--warm-up-time 1`, `--save-baseline main`) are not filters.
    const VALUED: &[&str] = &[
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--profile-time",
        "--output-format",
        "--format",
        "--color",
        "--plotting-backend",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && !a.is_empty() && (*i == 0 || !VALUED.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}
