//! Per-turn overhead of sessions on S3: turns against a real S3-compatible server on loopback
//! (moto, tests/s3/server.py; installed by tests/s3/install.sh, and without it this bench
//! says so and fails). Two benchmarks: `object_store/turn/warm`, one runner taking turn after
//! turn on a session (its hydrated memory stays cached), and `object_store/turn/shared`, two
//! runners (as two processes would) alternating on one session, so each turn first reads what
//! the other wrote. Before timing, the object requests of 50 turns of each kind are counted on
//! the server and printed as JSON lines, on stdout and into `$KAOS_BENCH_EXTRA` when set
//! (`cargo xtask bench` prints them with the estimates):
//! `{"bench":"object_store/requests_per_turn/warm","value":6.0,"unit":"requests","by_method":{…}}`.
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
        .with_credentials("test", SecretString::new("test"))
        .with_allow_http(true);
    let vfs = Arc::new(ObjectStoreVfs::s3(config).unwrap());
    Runner::builder(Agent::builder().name("bench").build().unwrap(), Runtime::builder().vfs(vfs).build())
        .model(Arc::new(model))
        .build()
        .unwrap()
}

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
    // Let the spawned lease deletes of the last turn land before counting.
    rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await });
    let counts = server.requests();
    let total: u64 = counts.values().sum();
    let by_method: Vec<String> =
        counts.iter().map(|(method, n)| format!("\"{method}\":{}", *n as f64 / TURNS as f64)).collect();
    let line = format!(
        "{{\"bench\":\"object_store/requests_per_turn/{kind}\",\"value\":{},\"unit\":\"requests\",\"by_method\":{{{}}}}}",
        total as f64 / TURNS as f64,
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
    requests_per_turn(&rt, &server, &warm, "warm");
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
