#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use crate::support::{echo_model, runner_with, user_texts};
use kaos_providers::Message;
use kaos_runtime::Runtime;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_sessions_of_three_turns_never_cross_talk() {
    let runner = runner_with(Runtime::test_mode(), echo_model().without_recording());
    let mut tasks = Vec::new();
    for s in 0..1000 {
        let runner = runner.clone();
        tasks.push(tokio::spawn(async move {
            for t in 1..=3 {
                let response = runner.turn(format!("s{s} m{t}"), format!("session-{s}")).await.unwrap();
                assert_eq!(response.turn_number, t);
                assert_eq!(response.text, format!("reply to s{s} m{t}"));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for s in 0..1000 {
        let history = runner.history(format!("session-{s}")).await.unwrap();
        let expected: Vec<Message> = (1..=3)
            .flat_map(|t| {
                [Message::user(format!("s{s} m{t}")), Message::assistant(format!("reply to s{s} m{t}"))]
            })
            .collect();
        assert_eq!(history, expected, "session-{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_turns_on_one_session_are_serialized_and_all_kept() {
    let model = echo_model();
    let runner = runner_with(Runtime::test_mode(), model.clone());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let runner = runner.clone();
            tokio::spawn(async move { runner.turn(format!("message {i}"), "shared").await.unwrap() })
        })
        .collect();
    let mut turn_numbers = BTreeSet::new();
    for task in tasks {
        turn_numbers.insert(task.await.unwrap().turn_number);
    }
    assert_eq!(turn_numbers, (1..=20).collect::<BTreeSet<u32>>());

    let history = runner.history("shared").await.unwrap();
    assert_eq!(history.len(), 40);
    let users = user_texts(&history);
    assert_eq!(
        users.iter().collect::<BTreeSet<_>>(),
        (0..20).map(|i| format!("message {i}")).collect::<Vec<_>>().iter().collect()
    );
    // Serialized: every turn saw all earlier turns (each pair user → reply is adjacent).
    for pair in history.chunks(2) {
        assert_eq!(pair[1], Message::assistant(format!("reply to {}", pair[0].content())));
    }
    let seen: BTreeSet<usize> = model.requests().iter().map(|r| r.user_message_count()).collect();
    assert_eq!(seen, (1..=20).collect());
}
