//! The HTTP API's overhead per turn against calling the library directly: the same instant
//! scripted model on a memory VFS, one turn on a new session per iteration, through
//! `Runner::turn`, through `POST /v1/sessions/{id}/turns` as JSON, and as server-sent events
//! (read to the end), over loopback with a kept-alive connection. Run with `cargo xtask bench`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kaos_agent::Agent;
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_server::{HttpOptions, serve_http};
use serde_json::json;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn runner() -> Runner {
    let model = ScriptedClient::from_fn(|_| ScriptedReply::text("Hello! How can I help you today?"));
    Runner::builder(Agent::builder().build().unwrap(), Runtime::test_mode())
        .model(Arc::new(model.without_recording()))
        .build()
        .unwrap()
}

fn http(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("http");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);
    let next = AtomicU64::new(0);
    let session = || format!("s{}", next.fetch_add(1, Ordering::Relaxed));

    let library = runner();
    group.bench_function("library_turn", |b| {
        b.to_async(&rt).iter(|| {
            let (library, id) = (library.clone(), session());
            async move { library.turn("Hi", id).await.unwrap() }
        });
    });

    let server = rt
        .block_on(serve_http(
            runner(),
            "127.0.0.1:0".parse().unwrap(),
            HttpOptions::new().with_token(TOKEN, "bench"),
        ))
        .unwrap();
    let base = format!("{}/v1", server.base_url());
    let client = reqwest::Client::new();
    for (name, accept) in [("api_json_turn", "application/json"), ("api_sse_turn", "text/event-stream")] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let request = client
                    .post(format!("{base}/sessions/{}/turns", session()))
                    .bearer_auth(TOKEN)
                    .header("accept", accept)
                    .json(&json!({"message": "Hi"}));
                async move {
                    let response = request.send().await.unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap()
                }
            });
        });
    }
    group.finish();
    rt.block_on(server.shutdown());
}

criterion_group!(benches, http);
criterion_main!(benches);
