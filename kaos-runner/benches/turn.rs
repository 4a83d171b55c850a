//! Framework overhead of one turn: an instant scripted model, so what is measured is the
//! Runner itself (session lock, hydrate, assembly, request building, events, tool dispatch,
//! persistence). Run with `cargo xtask bench`, which checks the ratios and limits listed in
//! `xtask/src/bench.rs` (see docs/concepts/performance.md).
//!
//! - `turn/plain/1-20` and `turn/plain/1981-2000`: turns of one session at the start and after
//!   1,980 turns (memory VFS, default agent, cached session): the cost of a turn must not grow
//!   with the session.
//! - `turn/tool/1-20` and `turn/tool/81-100`: the same for a turn with one read-only tool call.
//! - `turn/plain/ratio` and `turn/tool/ratio` (extra JSON lines, limit 1.2): the long window's
//!   time over the short one's, the two timed pass by pass in alternation (see [`paired`]).
//! - `sessions/1000`: 1,000 new sessions × one turn at once on a two-thread runtime, per turn,
//!   spawned and awaited by a task of that runtime (as a server's request tasks are).
//! - `disk/1-20` and `disk/481-500`: turns on the disk VFS (appends not synced).
//! - `durable/floor`: one raw `O_APPEND` write of a turn-sized line plus `fdatasync`;
//!   `durable/one`: one turn at a time of a session that exists, with synced appends (the two
//!   interleaved, each untimed between the other's iterations, so both see the same disk);
//!   `durable/first`: a new session's first turn (no limit); `durable/group-100`: 100 sessions
//!   that exist taking turns at once on one synced disk VFS, per turn (group commit), at turns
//!   2 to [`GROUP_TURNS`] (then made anew, untimed).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kaos_agent::Agent;
use kaos_providers::{Message, ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_tools::{ToolAnnotations, ToolResult, tool_fn};
use kaos_vfs::{DiskVfs, MemoryVfs, Vfs, VfsPath};
use serde_json::json;
use support::{report, selected};

mod support;

fn runner_on(model: ScriptedClient, vfs: Arc<dyn Vfs>) -> Runner {
    let add = tool_fn("add", "Adds two integers.", |input: serde_json::Value, _ctx| async move {
        let sum = input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0);
        Ok(ToolResult::text(sum.to_string()))
    })
    .annotations(ToolAnnotations::read_only())
    .build()
    .unwrap();
    let runtime = Runtime::builder().vfs(vfs).tool(add).unwrap().build();
    Runner::builder(Agent::builder().build().unwrap(), runtime)
        .model(Arc::new(model.without_recording()))
        .build()
        .unwrap()
}

fn runner(model: ScriptedClient) -> Runner {
    runner_on(model, Arc::new(MemoryVfs::new()))
}

fn text_model() -> ScriptedClient {
    ScriptedClient::from_fn(|_| ScriptedReply::text("Hello! How can I help you today?"))
}

fn tool_model() -> ScriptedClient {
    ScriptedClient::from_fn(|request| match request.messages.last() {
        Some(Message::Tool { content, .. }) => ScriptedReply::text(format!("The sum is {content}.")),
        _ => ScriptedReply::tool_call("add", json!({"a": 2, "b": 3})),
    })
}

fn message(turn: u32) -> String {
    format!("message number {turn} with a little text")
}

/// Times turns `from..=to` of one session, pass after pass. For `from == 1` every pass is a new
/// session (the previous one is deleted, untimed). Otherwise the session is grown once to
/// `from - SETTLE - 1` turns and its files are captured; every pass puts them back and runs
/// the turns up to `from - 1` untimed, so the timed turns are the cached steady state at that
/// length. The first of those re-reads the session (its log changed under the cache) and drops
/// the copy the last pass left, thousands of items; the next [`SETTLE`] let the allocator finish
/// with what that freed: glibc's `malloc` sorts freed chunks on a later allocation, which
/// took 47 k instructions of the next turn at turn 1,981 (callgrind; a steady turn there is
/// 39 k), a cost of the untimed replay that would otherwise land in the first timed turn.
/// A re-read turn is measured on its own by `session/cold_turn`.
struct Window {
    runner: Runner,
    from: u32,
    to: u32,
    /// The next turn to run, in `from..=to`.
    next: u32,
    pass: u64,
    saved: Option<Vec<(VfsPath, Bytes)>>,
    /// Whether the session must be put back before the next timed turn.
    stale: bool,
}

impl Window {
    fn new(rt: &tokio::runtime::Runtime, runner: Runner, from: u32, to: u32) -> Self {
        assert!(from == 1 || from > SETTLE + 1, "a grown session's window starts after turn {}", SETTLE + 1);
        let mut window = Self { runner, from, to, next: from, pass: 0, saved: None, stale: from > 1 };
        if from > 1 {
            rt.block_on(async {
                for turn in 1..from - SETTLE - 1 {
                    window.runner.turn(message(turn), "w").await.unwrap();
                }
                let vfs = window.runner.runtime().vfs().clone();
                let mut saved = Vec::new();
                for name in ["turns.jsonl", "checkpoint.json"] {
                    let path = VfsPath::new(&format!("sessions/w/{name}")).unwrap();
                    if let Ok(bytes) = vfs.read(&path).await {
                        saved.push((path, Bytes::from(bytes.to_vec())));
                    }
                }
                window.saved = Some(saved);
            });
        }
        window
    }

    fn session(&self) -> String {
        if self.from == 1 { format!("w{}", self.pass) } else { "w".to_owned() }
    }

    /// Prepares the next pass (untimed).
    async fn reset(&mut self) {
        match &self.saved {
            None => {
                self.runner.delete_session(self.session()).await.unwrap();
                self.pass += 1;
            }
            Some(saved) => {
                let vfs = self.runner.runtime().vfs().clone();
                let checkpoint = VfsPath::new("sessions/w/checkpoint.json").unwrap();
                if !saved.iter().any(|(p, _)| *p == checkpoint) {
                    let _ = vfs.delete(&checkpoint).await;
                }
                for (path, bytes) in saved {
                    vfs.write(path, bytes.clone()).await.unwrap();
                }
                for turn in self.from - SETTLE - 1..self.from {
                    self.runner.turn(message(turn), "w").await.unwrap();
                }
            }
        }
        self.next = self.from;
        self.stale = false;
    }

    /// Runs `iterations` turns, timing only the turns themselves.
    fn time(&mut self, rt: &tokio::runtime::Runtime, iterations: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            if self.stale || self.next > self.to {
                rt.block_on(self.reset());
            }
            let (text, session) = (message(self.next), self.session());
            let start = Instant::now();
            rt.block_on(self.runner.turn(text, &session)).unwrap();
            total += start.elapsed();
            self.next += 1;
        }
        total
    }
}

/// Untimed turns after a window's re-read, before its timed turns (see [`Window`]).
const SETTLE: u32 = 1;

/// Whether a run is a benchmark (`cargo bench`) rather than `cargo test`'s one-pass smoke test.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn turns(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("turn");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2)).sample_size(20);

    // A fresh runner and session per iteration: the first turn of a new session.
    group.bench_function("one_model_call", |b| {
        b.iter_batched(
            || runner(text_model()),
            |r| rt.block_on(r.turn("Hi there", "bench")).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("one_tool_call", |b| {
        b.iter_batched(
            || runner(tool_model()),
            |r| rt.block_on(r.turn("What is 2+3?", "bench")).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let long = if benching() { (1981, 2000) } else { (41, 60) };
    for (name, model, (from, to)) in [
        ("plain/1-20", text_model as fn() -> ScriptedClient, (1, 20)),
        ("plain/1981-2000", text_model, long),
        ("tool/1-20", tool_model, (1, 20)),
        ("tool/81-100", tool_model, (81, 100)),
    ] {
        let mut window = Window::new(&rt, runner(model()), from, to);
        group.bench_function(name, |b| b.iter_custom(|iterations| window.time(&rt, iterations)));
    }
    group.finish();
}

fn sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("sessions");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(10);
    // Per turn: 1,000 new sessions on a fresh runner, one turn each, all at once.
    group.bench_function("1000", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let r = runner(text_model());
                let spawner = r.clone();
                let start = Instant::now();
                // Spawned and awaited by a task of the runtime, as a server's request tasks
                // are: awaited from the `block_on` thread, a third thread on two cores, each
                // finished turn would wake it (a futex wake and a context switch).
                rt.block_on(rt.spawn(async move {
                    let tasks: Vec<_> = (0..1000)
                        .map(|i| {
                            let r = spawner.clone();
                            tokio::spawn(async move { r.turn("Hi there", format!("s{i}")).await.unwrap() })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                }))
                .unwrap();
                total += start.elapsed() / 1000;
                drop(r);
            }
            total
        })
    });
    group.finish();
}

fn disk(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("disk");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    let late = if benching() { (481, 500) } else { (21, 40) };
    for (name, (from, to)) in [("1-20", (1, 20)), ("481-500", late)] {
        let vfs = Arc::new(DiskVfs::new(dirs.path().join(name)).unwrap());
        let mut window = Window::new(&rt, runner_on(text_model(), vfs), from, to);
        group.bench_function(name, |b| b.iter_custom(|iterations| window.time(&rt, iterations)));
    }
    group.finish();
}

fn durable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("durable");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(10);
    let synced = |name: &str| -> Arc<dyn Vfs> {
        Arc::new(DiskVfs::new(dirs.path().join(name)).unwrap().with_synced_appends(true))
    };

    // The floor, what one durable append costs the disk with nothing of KAOS around it, and one
    // turn at a time of a session that exists, every turn waiting for its own fsync. Each is
    // timed with the other run untimed between its iterations, so both see the same disk:
    // this disk's `fdatasync` time swings with other people's I/O from one minute to the next,
    // and a ratio of two separate windows would measure the swing.
    let mut floor = Floor::new(&dirs.path().join("floor.jsonl"));
    let one = runner_on(text_model(), synced("one"));
    let mut turn = 1;
    rt.block_on(one.turn(message(0), "one")).unwrap();
    group.bench_function("floor", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                total += floor.append();
                turn += 1;
                rt.block_on(one.turn(message(turn), "one")).unwrap();
            }
            total
        })
    });
    group.bench_function("one", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                floor.append();
                turn += 1;
                let start = Instant::now();
                rt.block_on(one.turn(message(turn), "one")).unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    // A new session's first turn (no limit): it also makes the session's directory, log and
    // lock files and syncs their directories.
    let first = runner_on(text_model(), synced("first"));
    let mut sessions = 0u32;
    group.bench_function("first", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                sessions += 1;
                let start = Instant::now();
                rt.block_on(first.turn(message(1), format!("f{sessions}"))).unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    // 100 sessions that exist taking a turn at once, per turn (group commit): turns 2 to
    // GROUP_TURNS, like the other windows a measure at a known session length (a run of
    // several seconds would otherwise measure sessions of anything from 2 to 1,500 turns).
    let many = runner_on(text_model(), synced("group"));
    let mut round = 1u32;
    group_round(&rt, &many, round);
    group.bench_function("group-100", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                if round == GROUP_TURNS {
                    rt.block_on(async {
                        for i in 0..100 {
                            many.delete_session(format!("g{i}")).await.unwrap();
                        }
                    });
                    round = 1;
                    group_round(&rt, &many, round);
                }
                round += 1;
                total += group_round(&rt, &many, round);
            }
            total
        })
    });
    group.finish();
}

/// The floor of a durable turn: one raw `O_APPEND` write of a turn-sized line and its
/// `fdatasync`.
struct Floor {
    file: std::fs::File,
    line: Vec<u8>,
}

impl Floor {
    fn new(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
        Self { file, line: vec![b'x'; 600] }
    }

    fn append(&mut self) -> Duration {
        let start = Instant::now();
        self.file.write_all(&self.line).unwrap();
        self.file.sync_data().unwrap();
        start.elapsed()
    }
}

/// The last turn `durable/group-100` measures of its sessions before making them anew.
const GROUP_TURNS: u32 = 100;

/// One round of `durable/group-100`: sessions `g0` to `g99` take a turn at once; the time per
/// turn.
fn group_round(rt: &tokio::runtime::Runtime, runner: &Runner, round: u32) -> Duration {
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let r = runner.clone();
                tokio::spawn(async move { r.turn(message(round), format!("g{i}")).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    start.elapsed() / 100
}

/// The ratios of a long session's turns to a new one's, timed round by round: each round times
/// a pass of the short window (turns 1–20 of a new session) and, right after it, a pass of the
/// long one, and the ratio is the median of the rounds' ratios. The two windows' criterion
/// medians are minutes apart, and this shared machine's speed drifts by a third over minutes
/// (both medians of one window in two runs ten minutes apart: 4.7 and 6.6 µs); a round's two
/// passes are a millisecond apart, so the drift cancels. Printed as `{"bench": "turn/plain/ratio",
/// "value", "limit", "ok"}`, which `cargo xtask bench` fails on when `ok` is false.
fn paired(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (rounds, long) = if benching() { (201, (1981, 2000)) } else { (3, (41, 60)) };
    for (kind, model, (from, to)) in
        [("plain", text_model as fn() -> ScriptedClient, long), ("tool", tool_model, (81, 100))]
    {
        let name = format!("turn/{kind}/ratio");
        if !selected(&name) {
            continue;
        }
        let mut short = Window::new(&rt, runner(model()), 1, 20);
        let mut long = Window::new(&rt, runner(model()), from, to);
        // A warm-up pass of each; then every `time` call below is exactly one pass.
        short.time(&rt, 20);
        long.time(&rt, 20);
        let mut ratios: Vec<f64> = (0..rounds)
            .map(|_| {
                let short = short.time(&rt, 20);
                long.time(&rt, 20).as_secs_f64() / short.as_secs_f64()
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
        let (median, limit) = (at(0.5), 1.2);
        report(json!({
            "bench": name,
            "of": format!("turn/{kind}/{from}-{to}"),
            "to": format!("turn/{kind}/1-20"),
            "value": median,
            "quartiles": [at(0.25), at(0.75)],
            "rounds": rounds,
            "limit": limit,
            "ok": median <= limit,
        }));
    }
}

criterion_group!(benches, turns, sessions, disk, durable, paired);
criterion_main!(benches);
