//! What turns keep and allocate, measured once rather than timed: run by `cargo xtask bench`,
//! which prints these JSON lines with the timings and fails when a line says `"ok":false`.
//!
//! - `footprint/allocs_per_turn/{20,2000}`: heap allocations of one plain turn at turn 20 and
//!   at turn 2,000 of a cached session (memory VFS).
//! - `sessions/1000/bytes_per_session`: what the session cache holds per session after 1,000
//!   sessions × one turn: live heap bytes and resident memory (RSS), against a runner without
//!   a cache over the same turns (limit 2 KiB).
//! - `soak/rss`: a Runner with the default model (`scripted:echo`, as `kaos serve` resolves it)
//!   on a disk VFS, 10,000 sessions: RSS after 100,000 turns against RSS after 10,000
//!   (limit 1.1). `soak/rss/uncached`, run only when named (informational, no limit): the
//!   same soak with `session_cache(0)`, what the Runner keeps outside its session cache.
//!
//! Heap figures come from a counting global allocator in this binary (`stats_alloc`); RSS from
//! `/proc/self/statm` (Linux; the RSS lines are left out elsewhere).
//!
//! Diagnostics, on stderr, never part of a measured line: `KAOS_BENCH_SMAPS=1` makes the soak
//! print where its resident memory is (`/proc/self/smaps` by kind: main heap, thread arenas,
//! stacks, file mappings; the thread count), each round's peak live heap (sampled every
//! 0.1 ms), RSS and allocations per turn; `KAOS_BENCH_SMAPS_ALL=1` lists every mapping of
//! 256 KiB or more; `KAOS_BENCH_SOAK_SESSIONS=n` runs the soak over `n` sessions.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_vfs::{DiskVfs, MemoryVfs, Vfs};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use support::{report, selected};

mod support;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes.
fn live() -> i64 {
    let stats = GLOBAL.stats();
    // Reallocations are already counted in both (growth as allocated, shrinking as freed).
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

/// Allocations so far (reallocations included).
fn allocations() -> u64 {
    let stats = GLOBAL.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// Resident memory in bytes, where the platform says.
fn rss() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Where resident memory is, from `/proc/self/smaps` (Linux): KiB resident in the main heap
/// (`[heap]`), in other anonymous mappings by their size (glibc's thread arenas reserve 64 MiB
/// heaps; tokio's threads have 2 MiB stacks), in file mappings (the binary), and the number of
/// threads. A diagnostic printed on stderr when `KAOS_BENCH_SMAPS` is set.
fn smaps() -> Option<Value> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let (mut heap, mut arenas, mut stacks, mut other_anon, mut files) = (0, 0, 0, 0, 0);
    let mut kind = "";
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((from, to)) =
            first.split_once('-').filter(|_| first.contains('-') && !first.ends_with(':'))
        {
            let size = u64::from_str_radix(to, 16).unwrap_or(0) - u64::from_str_radix(from, 16).unwrap_or(0);
            let path = words.nth(4).unwrap_or("");
            kind = if path == "[heap]" {
                "heap"
            } else if path.starts_with('/') {
                "file"
            } else if !path.is_empty() {
                "other"
            } else if size >= 32 << 20 || size % (1 << 20) != 0 && size > 8 << 20 {
                "arena"
            } else if size == 2 << 20 || size == 8 << 20 {
                "stack"
            } else {
                "anon"
            };
        } else if first == "Rss:" {
            let kib: i64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            match kind {
                "heap" => heap += kib,
                "arena" => arenas += kib,
                "stack" => stacks += kib,
                "file" => files += kib,
                _ => other_anon += kib,
            }
        }
    }
    if std::env::var_os("KAOS_BENCH_SMAPS_ALL").is_some() {
        let mut current = String::new();
        for line in smaps.lines() {
            if line.starts_with("Rss:") {
                let kib: i64 = line.split_whitespace().nth(1).and_then(|w| w.parse().ok()).unwrap_or(0);
                if kib >= 256 {
                    eprintln!("  {kib:>7} KiB  {current}");
                }
            } else if !line.contains(':') || line.split_whitespace().next().is_some_and(|w| w.contains('-')) {
                current = line.to_string();
            }
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let threads: i64 = status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()?;
    Some(
        json!({"heap_kib": heap, "arenas_kib": arenas, "stacks_kib": stacks, "anon_kib": other_anon, "files_kib": files, "threads": threads}),
    )
}

fn model() -> ScriptedClient {
    ScriptedClient::from_fn(|_| ScriptedReply::text("Hello! How can I help you today?")).without_recording()
}

fn runner(vfs: Arc<dyn Vfs>, cache: usize) -> Runner {
    Runner::builder(Agent::builder().build().unwrap(), Runtime::builder().vfs(vfs).build())
        .model(Arc::new(model()))
        .session_cache(cache)
        .build()
        .unwrap()
}

fn allocs_per_turn(rt: &tokio::runtime::Runtime, long: u32) {
    let r = runner(Arc::new(MemoryVfs::new()), 16);
    let mut turn = 0;
    for at in [20, long] {
        rt.block_on(async {
            while turn < at - 1 {
                turn += 1;
                r.turn(format!("message number {turn} with a little text"), "a").await.unwrap();
            }
        });
        turn += 1;
        let before = allocations();
        rt.block_on(r.turn(format!("message number {turn} with a little text"), "a")).unwrap();
        let allocations = allocations() - before;
        report(
            json!({"bench": format!("footprint/allocs_per_turn/{at}"), "value": allocations, "unit": "allocations"}),
        );
    }
}

/// Live heap and RSS growth over `sessions` new sessions × one turn on `r`.
fn growth(rt: &tokio::runtime::Runtime, r: &Runner, sessions: usize) -> (i64, Option<i64>) {
    let (heap, resident) = (live(), rss());
    rt.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move { r.turn("Hi there", format!("s{i}")).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    (live() - heap, rss().zip(resident).map(|(after, before)| after - before))
}

fn bytes_per_cached_session(rt: &tokio::runtime::Runtime) {
    const SESSIONS: usize = 1000;
    // The same turns without a cache, so what the stored logs and the runner cost is subtracted.
    let plain = runner(Arc::new(MemoryVfs::new()), 0);
    let (plain_heap, plain_rss) = growth(rt, &plain, SESSIONS);
    let cached = runner(Arc::new(MemoryVfs::new()), SESSIONS);
    let (cached_heap, cached_rss) = growth(rt, &cached, SESSIONS);
    let per = |cached: i64, plain: i64| (cached - plain) as f64 / SESSIONS as f64;
    let heap = per(cached_heap, plain_heap);
    // What the cache counts its sessions as (its byte bound is measured with this estimate).
    let estimated = cached.sessions().cache_usage().1 as f64 / SESSIONS as f64;
    let limit = 2048.0;
    report(json!({
        "bench": "sessions/1000/bytes_per_session",
        "heap": heap,
        "estimated": estimated,
        "rss": cached_rss.zip(plain_rss).map(|(c, p)| per(c, p)),
        "unit": "bytes",
        "limit": limit,
        "ok": heap <= limit,
    }));
    drop((plain, cached));
}

/// `cache`: `None` for the Runner's defaults (the measured line); `Some(0)` for the same soak
/// without a session cache (an informational line: what the Runner keeps outside the cache).
fn soak(rt: &tokio::runtime::Runtime, sessions: usize, rounds: usize, cache: Option<usize>) {
    let Some(_) = rss() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No model given: the agent's default, `scripted:echo`, resolved as `kaos serve` does.
    let vfs: Arc<dyn Vfs> = Arc::new(DiskVfs::new(dir.path()).unwrap());
    let mut builder = Runner::builder(Agent::builder().build().unwrap(), Runtime::builder().vfs(vfs).build());
    if let Some(cache) = cache {
        builder = builder.session_cache(cache);
    }
    let r = builder.build().unwrap();
    let round = |n: usize| {
        rt.block_on(async {
            // 32 sessions in flight at a time, in order, round-robin over all of them.
            let mut next = 0;
            while next < sessions {
                let tasks: Vec<_> = (next..(next + 32).min(sessions))
                    .map(|i| {
                        let r = r.clone();
                        tokio::spawn(async move {
                            r.turn(format!("turn {n} of {i}"), format!("s{i}")).await.unwrap()
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                next += 32;
            }
        })
    };
    let diagnose = std::env::var_os("KAOS_BENCH_SMAPS").is_some();
    if diagnose {
        eprintln!(
            "MemoryItem {} B, Message {} B, SessionMemory {} B",
            std::mem::size_of::<kaos_session::MemoryItem>(),
            std::mem::size_of::<kaos_providers::Message>(),
            std::mem::size_of::<kaos_session::SessionMemory>()
        );
    }
    // The highest live heap seen during a round (sampled), for the diagnostic.
    let round = |n: usize| {
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let mut peak = live();
                while diagnose && !done.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(live());
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                peak
            });
            let before = allocations();
            round(n);
            let allocated = allocations() - before;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let peak = sampler.join().unwrap();
            if diagnose {
                eprintln!(
                    "round {n}: peak live heap {} KiB, after {} KiB, rss {} KiB, {} allocations per turn",
                    peak / 1024,
                    live() / 1024,
                    rss().unwrap_or(0) / 1024,
                    allocated / sessions as u64
                );
            }
        });
    };
    round(0);
    let (first_rss, first_heap) = (rss().unwrap_or(0), live());
    if diagnose {
        eprintln!("after {sessions} turns: {}", smaps().unwrap_or_default());
    }
    let first_cache = r.sessions().cache_usage();
    for n in 1..rounds {
        round(n);
    }
    let (last_rss, last_heap) = (rss().unwrap_or(0), live());
    if diagnose {
        eprintln!("after {} turns: {}", sessions * rounds, smaps().unwrap_or_default());
    }
    let last_cache = r.sessions().cache_usage();
    let ratio = last_rss as f64 / first_rss as f64;
    let mut line = json!({
        "bench": if cache.is_some() { "soak/rss/uncached" } else { "soak/rss" },
        "turns": [sessions, sessions * rounds],
        "rss_kib": [first_rss / 1024, last_rss / 1024],
        "heap_kib": [first_heap / 1024, last_heap / 1024],
        "cached_sessions": [first_cache.0, last_cache.0],
        "cache_kib": [first_cache.1 / 1024, last_cache.1 / 1024],
        "value": ratio,
    });
    if cache.is_none() {
        let limit = 1.1;
        line["limit"] = json!(limit);
        line["ok"] = json!(ratio <= limit);
    }
    report(line);
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if selected("footprint/allocs_per_turn") {
        allocs_per_turn(&rt, if benching { 2000 } else { 60 });
    }
    if selected("sessions/1000/bytes_per_session") {
        bytes_per_cached_session(&rt);
    }
    let (mut sessions, rounds) = if benching { (10_000, 10) } else { (100, 3) };
    // A diagnostic: the soak over fewer sessions (with fewer than the cache keeps, every turn
    // after the first round is a cache hit). The measured line uses the default.
    if let Some(n) = std::env::var("KAOS_BENCH_SOAK_SESSIONS").ok().and_then(|n| n.parse().ok()) {
        sessions = n;
    }
    // Each soak in a process of its own (a process's RSS keeps what an earlier soak touched):
    // the uncached one only when named.
    if std::env::args().any(|a| a.contains("soak/rss/uncached")) {
        soak(&rt, sessions, rounds, Some(0));
    } else if selected("soak/rss") {
        soak(&rt, sessions, rounds, None);
    }
}
