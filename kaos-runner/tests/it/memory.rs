#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::support::{echo_model, runner_with};
use futures::StreamExt;
use kaos_agent::{Agent, MemoryProfile, SectionConfig, SectionKind, TokenBudget};
use kaos_providers::{Message, ScriptedClient, ScriptedReply};
use kaos_runner::{CHECKPOINT_MIN_TAIL_BYTES, EventKind, MemoryEventKind, NewItem, RunError, Runner};
use kaos_runtime::Runtime;
use serde_json::json;

fn small_messages_agent(budget: u32) -> Agent {
    let mut messages = SectionConfig::default_for(SectionKind::Messages);
    messages.budget_tokens = TokenBudget::Limited(NonZeroU32::new(budget).unwrap());
    Agent::builder()
        .memory(MemoryProfile::default().with_section(SectionKind::Messages, messages))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_long_session_keeps_memory_within_budget_summarizes_and_keeps_the_full_transcript() {
    let model = echo_model();
    let runner = Runner::builder(small_messages_agent(200), Runtime::test_mode())
        .model(Arc::new(model.clone()))
        .build()
        .unwrap();
    let mut evicted = 0;
    let mut summarized = 0;
    for i in 0..40 {
        let events: Vec<_> = runner
            .run(format!("Fact number {i}. Remember it please."), "long")
            .map(Result::unwrap)
            .collect()
            .await;
        for e in &events {
            match &e.kind {
                EventKind::Memory { kind: MemoryEventKind::Evicted, section, .. }
                    if section == "messages" =>
                {
                    evicted += 1
                }
                EventKind::Memory { kind: MemoryEventKind::Summarized, section, .. }
                    if section == "messages" =>
                {
                    summarized += 1
                }
                _ => {}
            }
        }
    }
    assert!(evicted > 0 && summarized > 0, "evicted {evicted}, summarized {summarized}");
    let memory = runner.memory("long").await.unwrap();
    let messages = memory.section(SectionKind::Messages);
    assert!(messages.tokens() <= 200);
    assert!(messages.items().iter().any(|i| i.summary && i.content.starts_with("[Summary of")));
    // The model saw the summary in its system prompt, and recent messages as the conversation.
    let last = model.requests().pop().unwrap();
    assert!(last.system.contains("Earlier in this conversation (summary)"), "{}", last.system);
    assert_eq!(last.messages.last(), Some(&Message::user("Fact number 39. Remember it please.")));
    assert!(last.user_message_count() < 40);
    // The transcript is whole.
    assert_eq!(runner.history("long").await.unwrap().len(), 80);
    assert_eq!(memory.turn(), 40);
}

#[tokio::test]
async fn documents_are_retrieved_by_relevance_and_the_rest_are_searchable() {
    let model = ScriptedClient::from_fn(|request| match request.messages.last() {
        Some(Message::Tool { content, .. }) => ScriptedReply::text(format!("Found: {content}")),
        _ if request.tools.iter().any(|t| t.name == "kaos-memory-search") => ScriptedReply::tool_call(
            "kaos-memory-search",
            json!({"query": "zebra migration", "section": "documents", "top_k": 1}),
        ),
        _ => ScriptedReply::text("no search tool offered"),
    });
    let agent = Agent::builder().retrieval_top_k(3).build().unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(model.clone())).build().unwrap();
    let docs = (0..50).map(|i| {
        let topic = if i == 42 {
            "zebra migration across the plains".to_owned()
        } else {
            format!("quarterly report number {i}")
        };
        NewItem::text(format!("doc{i}: {topic}")).with_metadata("name", json!(format!("doc{i}.md")))
    });
    let ids = runner.remember("research", SectionKind::Documents, docs).await.unwrap();
    assert_eq!(ids.len(), 50);

    let response = runner.turn("What about quarterly report number 7?", "research").await.unwrap();
    let first = &model.requests()[0];
    assert!(first.system.contains("doc7: quarterly report number 7"));
    assert!(!first.system.contains("zebra"));
    assert!(first.system.contains("47 more item(s)"), "{}", first.system);
    assert_eq!(response.text, "Found: [documents] doc42: zebra migration across the plains");
    // Loading documents is not a turn.
    assert_eq!(response.turn_number, 1);
}

#[tokio::test]
async fn the_session_api_lists_exports_and_deletes() {
    let runtime = Runtime::test_mode();
    let runner = runner_with(runtime.clone(), echo_model());
    runner.turn("hello", "b-session").await.unwrap();
    runner.turn("hello", "a-session").await.unwrap();
    runner.turn("again", "a-session").await.unwrap();
    let ids: Vec<String> =
        runner.sessions().ids().await.unwrap().into_iter().map(|s| s.to_string()).collect();
    assert_eq!(ids, ["a-session", "b-session"]);

    let export = runner.export_session("a-session").await.unwrap();
    assert_eq!(export.turns, 2);
    assert_eq!(export.records.len(), 2);
    assert_eq!(export.memory[&SectionKind::Messages].len(), 4);
    let json = serde_json::to_value(&export).unwrap();
    assert_eq!(json["session_id"], "a-session");
    assert_eq!(json["records"][1]["messages"][0]["content"], "again");

    runner.delete_session("a-session").await.unwrap();
    assert!(matches!(runner.export_session("a-session").await, Err(RunError::Vfs(e)) if e.is_not_found()));
    assert!(matches!(runner.delete_session("a-session").await, Err(RunError::Vfs(e)) if e.is_not_found()));
    let ids: Vec<String> =
        runner.sessions().ids().await.unwrap().into_iter().map(|s| s.to_string()).collect();
    assert_eq!(ids, ["b-session"]);
    // A deleted session starts over.
    assert_eq!(runner.turn("new start", "a-session").await.unwrap().turn_number, 1);
}

#[tokio::test]
async fn checkpoints_bound_hydration_and_load_the_same_memory() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner_with(Runtime::on_disk(dir.path()).unwrap(), echo_model());
    let mut written = 0;
    while written < 2 * CHECKPOINT_MIN_TAIL_BYTES {
        let message = format!("turn {written} {}", "x".repeat(10_000));
        written += 2 * message.len() as u64;
        runner.turn(message, "s").await.unwrap();
    }
    let checkpoint = dir.path().join("sessions/s/checkpoint.json");
    assert!(checkpoint.exists());
    let before = runner.memory("s").await.unwrap();
    // A broken checkpoint is only a longer replay: the same memory, with a warning.
    std::fs::write(&checkpoint, b"{ not json").unwrap();
    assert_eq!(runner.memory("s").await.unwrap(), before);
    // A new process has no cached memory and must read the session from the disk.
    let runner = runner_with(Runtime::on_disk(dir.path()).unwrap(), echo_model());
    let events: Vec<_> = runner.run("one more", "s").map(Result::unwrap).collect().await;
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::Memory { kind: MemoryEventKind::Warning, .. }))
    );
}

#[tokio::test]
async fn a_cached_session_is_reread_when_another_runner_wrote_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = runner_with(Runtime::on_disk(dir.path()).unwrap(), echo_model());
    let second = runner_with(Runtime::on_disk(dir.path()).unwrap(), echo_model());
    first.turn("one", "s").await.unwrap();
    second.turn("two", "s").await.unwrap();
    // `first` has "one" cached; the log changed under it, so it must see "two" as well.
    let model = echo_model();
    let first = Runner::builder(first.agent().clone(), first.runtime().clone())
        .model(Arc::new(model.clone()))
        .build()
        .unwrap();
    first.turn("three", "s").await.unwrap();
    let cached = runner_with(Runtime::on_disk(dir.path()).unwrap(), model.clone());
    cached.turn("four", "s").await.unwrap();
    second.turn("five", "s").await.unwrap();
    let r = cached.turn("six", "s").await.unwrap();
    assert_eq!(r.turn_number, 6);
    let seen: Vec<String> = model
        .requests()
        .last()
        .unwrap()
        .messages
        .iter()
        .filter(|m| m.is_user())
        .map(|m| m.content().to_owned())
        .collect();
    assert_eq!(seen, ["one", "two", "three", "four", "five", "six"]);
}

#[tokio::test]
async fn a_message_larger_than_the_whole_context_is_a_typed_error_and_stores_nothing() {
    let agent = Agent::builder()
        .memory({
            let mut profile = MemoryProfile::default();
            profile.context_budget_tokens = NonZeroU32::new(50).unwrap();
            profile
        })
        .build()
        .unwrap();
    let runner = Runner::builder(agent, Runtime::test_mode()).model(Arc::new(echo_model())).build().unwrap();
    let err = runner.turn("word ".repeat(100), "s").await.unwrap_err();
    assert!(matches!(err, RunError::Memory(_)), "{err:?}");
    assert!(runner.history("s").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_document_is_stored_once_and_within_its_limit_whoever_adds_it_at_the_same_time() {
    use kaos_runner::DocumentAdded;
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::on_disk(dir.path()).unwrap();
    // Two Runners over one data directory: they share only the VFS and its locks.
    let (a, b) = (runner_with(runtime.clone(), echo_model()), runner_with(runtime, echo_model()));
    let chunks = |sha: &str, n: usize| -> Vec<NewItem> {
        (0..n).map(|i| NewItem::text(format!("chunk {i}")).with_metadata("file_sha256", json!(sha))).collect()
    };
    for round in 0..8 {
        let session = format!("docs-{round}");
        let (first, second) = tokio::join!(
            a.add_document(&session, "sha-1", chunks("sha-1", 3), 100),
            b.add_document(&session, "sha-1", chunks("sha-1", 3), 100),
        );
        let outcomes = [first.unwrap(), second.unwrap()];
        assert_eq!(
            outcomes.iter().filter(|o| matches!(o, DocumentAdded::Added { .. })).count(),
            1,
            "{outcomes:?}"
        );
        assert!(outcomes.contains(&DocumentAdded::Unchanged), "{outcomes:?}");
        assert_eq!(a.memory(&session).await.unwrap().section(SectionKind::Documents).items().len(), 3);

        // Two different documents racing for the last room: one goes in, the other is refused.
        let (first, second) = tokio::join!(
            a.add_document(&session, "sha-2", chunks("sha-2", 4), 8),
            b.add_document(&session, "sha-3", chunks("sha-3", 4), 8),
        );
        let outcomes = [first.unwrap(), second.unwrap()];
        assert!(outcomes.contains(&DocumentAdded::OverLimit { held: 7, limit: 8 }), "{outcomes:?}");
        assert_eq!(b.memory(&session).await.unwrap().section(SectionKind::Documents).items().len(), 7);
    }
}

/// Whether the turn's memory came from the Runner's session cache.
async fn cached_turn(runner: &Runner, message: String, session: &str) -> bool {
    let events: Vec<_> = runner.run(message, session).map(Result::unwrap).collect().await;
    events.iter().any(|e| {
        matches!(&e.kind, EventKind::Memory { kind: MemoryEventKind::Hydrated, attributes, .. }
            if attributes.get("cached") == Some(&json!(true)))
    })
}

#[tokio::test]
async fn the_session_cache_stays_within_its_byte_bound_however_long_the_sessions_grow() {
    const BOUND: usize = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::builder(Agent::builder().build().unwrap(), Runtime::on_disk(dir.path()).unwrap())
        .model(Arc::new(echo_model()))
        .session_cache_bytes(BOUND)
        .build()
        .unwrap();
    // Eight sessions whose memory grows by about 2 KiB a turn, round-robin: well within the
    // count bound (1,024), over the byte bound after a few rounds.
    let mut most = 0;
    for round in 0..12 {
        for s in 0..8 {
            runner.turn(format!("round {round} {}", "x".repeat(1_000)), format!("s{s}")).await.unwrap();
            let (sessions, bytes) = runner.sessions().cache_usage();
            assert!(bytes <= BOUND, "round {round}: {sessions} sessions hold {bytes} bytes");
            most = most.max(sessions);
        }
    }
    let (sessions, bytes) = runner.sessions().cache_usage();
    assert_eq!(most, 8, "all eight were cached while they were small");
    assert!((1..8).contains(&sessions), "long sessions were evicted: {sessions} kept in {bytes} bytes");
    // The most recent session is still served from the cache; the least recent was read again,
    // whole: nothing of it was lost by eviction.
    assert!(cached_turn(&runner, "again".into(), "s7").await);
    assert!(!cached_turn(&runner, "again".into(), "s0").await);
    assert_eq!(runner.history("s0").await.unwrap().len(), 2 * 13);
    // A session bigger than the bound on its own is not kept, and does not push others out.
    let (before, _) = runner.sessions().cache_usage();
    runner.turn("y".repeat(40_000), "huge").await.unwrap();
    assert_eq!(runner.sessions().cache_usage().0, before);
    assert!(!cached_turn(&runner, "small".into(), "huge").await);
}

#[tokio::test]
async fn a_zero_byte_bound_turns_the_session_cache_off() {
    let runner = Runner::builder(Agent::builder().build().unwrap(), Runtime::test_mode())
        .model(Arc::new(echo_model()))
        .session_cache_bytes(0)
        .build()
        .unwrap();
    runner.turn("one", "s").await.unwrap();
    assert!(!cached_turn(&runner, "two".into(), "s").await);
    assert_eq!(runner.sessions().cache_usage(), (0, 0));
}
