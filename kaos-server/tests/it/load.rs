//! 200 concurrent streamed turns on 200 sessions over loopback, twice each: every turn
//! completes, and each session's turns are numbered 1 then 2.

use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::ScriptedClient;
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use serde_json::json;

use super::support::{ALICE, Api, serve};

const SESSIONS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streamed_turns_complete_with_consistent_turn_numbers() {
    let agent = Agent::builder().name("echo").build().unwrap();
    let runner =
        Runner::builder(agent, Runtime::test_mode()).model(Arc::new(ScriptedClient::echo())).build().unwrap();
    let server = serve(runner).await;
    let alice = Api::new(&server, ALICE);
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            let mut numbers = Vec::new();
            for message in ["one", "two"] {
                let (status, frames) =
                    alice.post_sse(&format!("/sessions/load-{i}/turns"), json!({"message": message})).await;
                assert_eq!(status, 200);
                let last = frames.last().unwrap();
                assert_eq!(last.event, "turn_summary", "session {i}");
                assert_eq!(last.data["stop_reason"], "completed");
                assert_eq!(last.data["session_id"], format!("load-{i}"));
                numbers.push(last.data["turn_number"].as_u64().unwrap());
            }
            numbers
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), [1, 2]);
    }
    let (status, list) = alice.get("/sessions").await;
    assert_eq!(status, 200);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), SESSIONS);
    assert!(sessions.iter().all(|s| s["turns"] == 2), "{list}");
    server.shutdown().await;
}
