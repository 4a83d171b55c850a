#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::{echo_model, runner_with, user_texts};
use bytes::Bytes;
use futures::StreamExt;
use kaos_agent::Agent;
use kaos_providers::{ProviderError, ScriptedClient, ScriptedReply};
use kaos_runner::{EventKind, MemoryEventKind, RunError, Runner};
use kaos_runtime::Runtime;
use kaos_vfs::VfsPath;

fn log_path(session: &str) -> VfsPath {
    VfsPath::new(&format!("sessions/{session}/turns.jsonl")).unwrap()
}

#[tokio::test]
async fn a_disk_session_continues_in_a_new_runner() {
    let dir = tempfile::tempdir().unwrap();
    {
        let runner = runner_with(Runtime::on_disk(dir.path()).unwrap(), echo_model());
        runner.turn("first", "s").await.unwrap();
        runner.turn("second", "s").await.unwrap();
    }
    let model = echo_model();
    let runner = runner_with(Runtime::on_disk(dir.path()).unwrap(), model.clone());
    let third = runner.turn("third", "s").await.unwrap();
    assert_eq!(third.turn_number, 3);
    assert_eq!(model.requests()[0].user_message_count(), 3);
    assert_eq!(user_texts(&runner.history("s").await.unwrap()), ["first", "second", "third"]);
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_with_a_warning_and_nothing_stored_is_lost() {
    let runtime = Runtime::test_mode();
    let runner = runner_with(runtime.clone(), echo_model());
    runner.turn("kept", "s").await.unwrap();
    runtime.vfs().append(&log_path("s"), Bytes::from_static(b"{\"v\":1,\"turn\":2,\"mess")).await.unwrap();

    let events: Vec<_> = runner.run("after crash", "s").map(Result::unwrap).collect().await;
    assert!(
        events.iter().any(|e| matches!(e.kind, EventKind::Memory { kind: MemoryEventKind::Warning, .. }))
    );
    let summary = events.iter().find_map(|e| match e.kind {
        EventKind::TurnSummary { turn_number, .. } => Some(turn_number),
        _ => None,
    });
    assert_eq!(summary, Some(2));
    assert_eq!(user_texts(&runner.history("s").await.unwrap()), ["kept", "after crash"]);
    let log = runtime.vfs().read(&log_path("s")).await.unwrap();
    assert_eq!(log.iter().filter(|b| **b == b'\n').count(), 2);
}

#[tokio::test]
async fn a_corrupt_session_is_a_typed_error_that_changes_nothing_and_spares_others() {
    let runtime = Runtime::test_mode();
    let runner = runner_with(runtime.clone(), echo_model());
    runner.turn("hello", "good").await.unwrap();
    let garbage = Bytes::from_static(b"this is not json\n{\"also\": \"not a record\"}\n");
    runtime.vfs().write(&log_path("bad"), garbage.clone()).await.unwrap();

    let err = runner.turn("hi", "bad").await.unwrap_err();
    assert!(matches!(err, RunError::CorruptSession { line: 1, .. }), "{err:?}");
    assert_eq!(runtime.vfs().read(&log_path("bad")).await.unwrap(), garbage);
    assert_eq!(runner.turn("still fine", "good").await.unwrap().turn_number, 2);
}

#[tokio::test]
async fn a_failed_model_call_persists_nothing_and_reports_a_run_error_event() {
    let runtime = Runtime::test_mode();
    let model = ScriptedClient::new()
        .with_reply(ScriptedReply::Error(ProviderError::Overloaded { message: "try later".into() }))
        .with_text("ok now");
    let runner = runner_with(runtime.clone(), model);
    let events: Vec<_> = runner.run("hi", "s").collect().await;
    assert!(matches!(events.last(), Some(Err(RunError::Provider(ProviderError::Overloaded { .. })))));
    let run_error = events.iter().rev().nth(1).unwrap().as_ref().unwrap();
    assert!(matches!(&run_error.kind, EventKind::RunError { error_type, .. } if error_type == "overloaded"));
    assert!(runner.history("s").await.unwrap().is_empty());
    // The session is usable again, and the failed turn did not count.
    assert_eq!(runner.turn("hi again", "s").await.unwrap().turn_number, 1);
}

#[tokio::test]
async fn hostile_session_ids_are_rejected_before_touching_storage() {
    let runtime = Runtime::test_mode();
    let runner = runner_with(runtime.clone(), echo_model());
    for id in ["", "../escape", "a/b", ".hidden", "a\0b", "sp ace", &"x".repeat(129)] {
        let err = runner.turn("hi", id).await.unwrap_err();
        assert!(matches!(err, RunError::InvalidSession { .. }), "{id:?}: {err:?}");
    }
    assert!(runtime.vfs().list(&VfsPath::root()).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_default_model_is_offline_and_an_unknown_provider_is_a_typed_error() {
    let runner = Runner::builder(Agent::builder().build().unwrap(), Runtime::test_mode()).build().unwrap();
    let r = runner.turn("hello", "s").await.unwrap();
    assert!(r.text.contains("hello"));
    assert_eq!(r.cost_usd, 0.0);

    let agent = Agent::builder().model("nowhere:model-x").build().unwrap();
    let err = Runner::builder(agent, Runtime::test_mode()).build().unwrap_err();
    assert!(matches!(err, RunError::Provider(ProviderError::UnknownModel { .. })), "{err:?}");
}

/// A VFS that knows no modification times, as the `Vfs` trait allows.
#[derive(Debug)]
struct NoModificationTimes(kaos_vfs::MemoryVfs);

#[async_trait::async_trait]
impl kaos_vfs::Vfs for NoModificationTimes {
    async fn read(&self, path: &VfsPath) -> Result<Bytes, kaos_vfs::VfsError> {
        self.0.read(path).await
    }
    async fn write(&self, path: &VfsPath, data: Bytes) -> Result<(), kaos_vfs::VfsError> {
        self.0.write(path, data).await
    }
    async fn append(&self, path: &VfsPath, data: Bytes) -> Result<(), kaos_vfs::VfsError> {
        self.0.append(path, data).await
    }
    async fn exists(&self, path: &VfsPath) -> Result<bool, kaos_vfs::VfsError> {
        self.0.exists(path).await
    }
    async fn stat(&self, path: &VfsPath) -> Result<kaos_vfs::Metadata, kaos_vfs::VfsError> {
        let meta = self.0.stat(path).await?;
        Ok(match meta.kind {
            kaos_vfs::EntryKind::Dir => kaos_vfs::Metadata::dir(None),
            _ => kaos_vfs::Metadata::file(meta.len, None),
        })
    }
    async fn list(&self, prefix: &VfsPath) -> Result<Vec<kaos_vfs::VfsEntry>, kaos_vfs::VfsError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, path: &VfsPath) -> Result<(), kaos_vfs::VfsError> {
        self.0.delete(path).await
    }
    async fn lock(&self, path: &VfsPath) -> Result<kaos_vfs::VfsLock, kaos_vfs::VfsError> {
        self.0.lock(path).await
    }
}

/// Issue 13, defect 4: on a VFS without modification times, a Runner never shows its model a
/// conversation another Runner deleted and re-created with the same log length.
#[tokio::test]
async fn a_session_recreated_at_the_same_length_is_not_served_stale_without_modification_times() {
    let vfs: std::sync::Arc<dyn kaos_vfs::Vfs> =
        std::sync::Arc::new(NoModificationTimes(kaos_vfs::MemoryVfs::new()));
    let runtime = Runtime::builder().vfs(vfs.clone()).build();
    let first_model = echo_model();
    let first = runner_with(runtime.clone(), first_model.clone());
    let second = runner_with(runtime.clone(), echo_model());
    first.turn("secret-one", "s").await.unwrap();
    let length = vfs.stat(&log_path("s")).await.unwrap().len;
    second.delete_session("s").await.unwrap();
    second.turn("secret-two", "s").await.unwrap();
    assert_eq!(vfs.stat(&log_path("s")).await.unwrap().len, length, "the re-created log has the same length");
    first.turn("third", "s").await.unwrap();
    let seen = first_model.requests().pop().unwrap();
    assert_eq!(user_texts(&seen.messages), ["secret-two", "third"]);
}
