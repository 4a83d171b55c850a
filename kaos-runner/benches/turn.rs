//! Framework overhead of one turn: an instant scripted model on a memory VFS, so what is
//! measured is the Runner itself (session lock, hydrate, request building, events, tool
//! dispatch, persistence). Run with `cargo xtask bench`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kaos_agent::Agent;
use kaos_providers::{Message, ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_tools::{ToolAnnotations, ToolResult, tool_fn};
use serde_json::json;

fn runner(model: ScriptedClient) -> Runner {
    let add = tool_fn("add", "Adds two integers.", |input: serde_json::Value, _ctx| async move {
        let sum = input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0);
        Ok(ToolResult::text(sum.to_string()))
    })
    .annotations(ToolAnnotations::read_only())
    .build()
    .unwrap();
    let runtime = Runtime::builder().tool(add).unwrap().build();
    Runner::builder(Agent::builder().build().unwrap(), runtime)
        .model(Arc::new(model.without_recording()))
        .build()
        .unwrap()
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

fn turns(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("turn");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);

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
    // The 21st turn of a session: hydration of 20 stored turns plus one appended line.
    group.bench_function("turn_after_20_turns", |b| {
        b.iter_batched(
            || {
                let r = runner(text_model());
                rt.block_on(async {
                    for i in 0..20 {
                        r.turn(format!("message {i}"), "bench").await.unwrap();
                    }
                });
                r
            },
            |r| rt.block_on(r.turn("one more", "bench")).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, turns);
criterion_main!(benches);
