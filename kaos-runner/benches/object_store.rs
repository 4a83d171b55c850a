//! Per-turn overhead of sessions on S3: turns against a real S3-compatible server on loopback
//! (moto, kaos-vfs/tests/support/server.py; installed by tests/s3/install.sh, and without it this bench
//! says so and fails). Two benchmarks: `object_store/turn/warm`, one runner taking turn after
//! turn on a session (its hydrated memory stays cached), and `object_store/turn/shared`, two
//! runners (as two processes would) alternating on one session, so each turn first reads what
//! the other wrote. Before timing, the object requests per turn are counted on the server and
//! printed as JSON lines, on stdout and into `$KAOS_BENCH_EXTRA` when set (`cargo xtask bench`
//! prints them with the estimates, and checks that turn 500 costs no more than turn 1):
//! `{"bench":"object_store/requests_per_turn/warm/turn_1","value":6.0,"unit":"requests","by_method":{…}}`.
//! - `warm/turn_1` and `warm/turn_500`: one long-lived runner (a process that made the
//!   session's previous turns), averaged over 10 turns from turn 2 and from turn 501;
//! - `cold/turn_1` and `cold/turn_500`: a new runner (a new process: fresh caches, its
//!   conditional-write probe included) taking one turn, the first of a session or the turn
//!   after 500, averaged over 10 such processes;
//! - `shared`: two runners alternating on one session for 50 turns.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../kaos-vfs/tests/support/s3_server.rs"]
mod s3_server;

use std::io::Write as _;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kaos_agent::Agent;
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString};
use s3_server::S3Server;

fn runner(server: &S3Server, prefix: &str) -> Runner {
    let model = ScriptedClient::from_fn(|r| {
        ScriptedReply::text(format!("echo {}", r.last_user_message().unwrap_or_default()))
    })
    .without_recording();
    let config = S3Config::new("bench")
        .with_prefix(prefix)
        .with_endpoint(&server.endpoint)
        .with_region("us-east-1")
        .with_credentials("test", SecretString::from("test"))
        .with_allow_http(true);
    let vfs = Arc::new(ObjectStoreVfs::s3(config).unwrap());
    Runner::builder(Agent::builder().name("bench").build().unwrap(), Runtime::builder().vfs(vfs).build())
        .model(Arc::new(model))
        .build()
        .unwrap()
}

/// How many turns each request count is averaged over.
const SAMPLES: usize = 10;
/// The long session's length.
const LONG: usize = 500;

/// Counts the object requests of `turns` turns made by `runners` in turn on one session.
fn requests_per_turn(rt: &tokio::runtime::Runtime, server: &S3Server, runners: &[Runner], kind: &str) {
    const TURNS: usize = 50;
    let session = format!("count-{kind}");
    // Warm up: the session exists and each runner has seen it once.
    for runner in runners {
        rt.block_on(runner.turn("warm up", &session)).unwrap();
    }
    server.reset_requests();
    for i in 0..TURNS {
        rt.block_on(runners[i % runners.len()].turn("count me", &session)).unwrap();
    }
    report(server, kind, TURNS);
}

/// Requests per turn of a warm and of a cold process, at turn 1 and at turn 500.
fn requests_by_session_length(rt: &tokio::runtime::Runtime, server: &S3Server, prefix: &str) {
    let warm = runner(server, prefix);
    // Cold at turn 1: new processes, each taking the first turn of a new session.
    server.reset_requests();
    for i in 0..SAMPLES {
        rt.block_on(runner(server, prefix).turn("count me", &format!("cold-first-{i}"))).unwrap();
    }
    report(server, "cold/turn_1", SAMPLES);
    // Warm at turn 1: the process that made turn 1 takes the next ones.
    rt.block_on(warm.turn("first", "long")).unwrap();
    server.reset_requests();
    for _ in 0..SAMPLES {
        rt.block_on(warm.turn("count me", "long")).unwrap();
    }
    report(server, "warm/turn_1", SAMPLES);
    // Up to turn 500; the counted turns are 501 to 510.
    for _ in 1 + SAMPLES..LONG {
        rt.block_on(warm.turn("grow", "long")).unwrap();
    }
    server.reset_requests();
    for _ in 0..SAMPLES {
        rt.block_on(warm.turn("count me", "long")).unwrap();
    }
    report(server, "warm/turn_500", SAMPLES);
    // Cold at turn 500: new processes, each taking one more turn of the long session.
    server.reset_requests();
    for _ in 0..SAMPLES {
        rt.block_on(runner(server, prefix).turn("count me", "long")).unwrap();
    }
    report(server, "cold/turn_500", SAMPLES);
}

/// Prints the requests counted since the last reset, per turn, as a JSON line.
fn report(server: &S3Server, kind: &str, turns: usize) {
    let counts = server.requests();
    let total: u64 = counts.values().sum();
    let by_method: Vec<String> =
        counts.iter().map(|(method, n)| format!("\"{method}\":{}", *n as f64 / turns as f64)).collect();
    let line = format!(
        "{{\"bench\":\"object_store/requests_per_turn/{kind}\",\"value\":{},\"unit\":\"requests\",\"by_method\":{{{}}}}}",
        total as f64 / turns as f64,
        by_method.join(",")
    );
    println!("{line}");
    if let Ok(path) = std::env::var("KAOS_BENCH_EXTRA") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let server = match S3Server::start() {
        Ok(server) => server,
        Err(why) => {
            eprintln!("object_store bench: {why}");
            std::process::exit(1);
        }
    };
    server.create_bucket("bench");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let prefix = s3_server::unique("bench");
    let warm = [runner(&server, &prefix)];
    let shared = [runner(&server, &prefix), runner(&server, &prefix)];
    requests_by_session_length(&rt, &server, &prefix);
    requests_per_turn(&rt, &server, &shared, "shared");

    let mut group = c.benchmark_group("object_store/turn");
    group.sample_size(20);
    group.bench_function("warm", |b| b.iter(|| rt.block_on(warm[0].turn("hello", "timed-warm")).unwrap()));
    let mut next = 0;
    group.bench_function("shared", |b| {
        b.iter(|| {
            next += 1;
            rt.block_on(shared[next % 2].turn("hello", "timed-shared")).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
