//! The replay client: recordings keyed by the canonical request hash, loud misses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures::StreamExt;
use kaos_providers::{
    DirectoryStore, Message, ModelClient, ModelRequest, ProviderError, Recording, RecordingStore,
    ReplayClient, ScriptedClient, StreamEvent, request_key,
};

fn conversation(last: &str) -> ModelRequest {
    ModelRequest::new(
        "openai:gpt-4.1-mini",
        vec![Message::user("Hi, I am Ada."), Message::assistant("Hello Ada."), Message::user(last)],
    )
    .with_system("Be brief.")
}

#[tokio::test]
async fn record_to_a_directory_then_replay_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirectoryStore::new(dir.path().join("recordings")));
    let live = ScriptedClient::new().with_text("Your name is Ada.").with_text("Bye.");
    let recorder = ReplayClient::record(Arc::new(live.clone()), store.clone());

    let first = recorder.complete(&conversation("What is my name?")).await.unwrap();
    let streamed: Vec<_> = recorder.stream(&conversation("Bye!")).map(Result::unwrap).collect().await;
    let Some(StreamEvent::Completed { response: second }) = streamed.last().cloned() else {
        panic!("{streamed:?}")
    };

    let saved = store.load().unwrap();
    assert_eq!(saved.len(), 2);
    assert!(store.path_of(&request_key(&conversation("Bye!"))).is_file());

    let replay = ReplayClient::replay(store.as_ref()).unwrap();
    assert_eq!(replay.complete(&conversation("What is my name?")).await.unwrap(), first);
    assert_eq!(replay.complete(&conversation("Bye!")).await.unwrap(), second);
    assert_eq!(live.requests_len(), 2, "replaying never calls the live model");
}

#[tokio::test]
async fn a_miss_names_the_closest_recording_and_the_differing_field() {
    let asked = conversation("What is my name?");
    let close = Recording::new(
        asked.clone().with_system("Be very brief."),
        kaos_providers::ModelResponse::text("m", "a"),
    );
    let far = Recording::new(
        ModelRequest::new("openai:gpt-4.1-mini", vec![Message::user("Unrelated")]),
        kaos_providers::ModelResponse::text("m", "b"),
    );
    let replay = ReplayClient::from_recordings([far, close.clone()]);

    let error = replay.complete(&asked).await.unwrap_err();
    let ProviderError::ReplayMiss { key, message } = &error else { panic!("{error:?}") };
    assert_eq!(key, &request_key(&asked));
    assert_eq!(
        message,
        &format!(
            "the closest recording is {} (2 recordings); it differs in system: recorded \"Be very brief.\" but requested \"Be brief.\"",
            close.key
        )
    );

    let mut longer = conversation("What is my name?");
    longer.messages.push(Message::user("And again?"));
    let error = replay.complete(&longer).await.unwrap_err().to_string();
    assert!(error.ends_with(&format!("the closest recording is {} (2 recordings); it differs in messages: recorded 3 items but requested 4", close.key)), "{error}");

    let empty = ReplayClient::from_recordings([]);
    assert_eq!(
        empty.complete(&asked).await.unwrap_err().to_string(),
        format!("no recording for request {}: there are no recordings", request_key(&asked))
    );
}

#[test]
fn the_key_ignores_how_the_json_was_ordered() {
    let a = conversation("x");
    let json = serde_json::to_string(&a).unwrap();
    let reparsed: ModelRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(request_key(&a), request_key(&reparsed));
    assert_eq!(request_key(&a).len(), "sha256:".len() + 64);
}
