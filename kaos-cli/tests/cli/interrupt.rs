//! Issue 21: Ctrl-C (SIGINT) and SIGTERM sent to a `kaos` process in the middle of a turn, on
//! a disk data directory (the S3 case is in `object_store.rs`). The turn's model call is held
//! by a local OpenAI-compatible server, so the signal lands while the turn holds the session.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{kaos, stderr, stdout_json};

/// A local OpenAI-compatible model that answers at once, except to a message containing
/// "slow", whose answer it holds for two minutes.
pub(crate) async fn model_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap()["content"].to_string();
            let reply = ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(super::sse(json!({"role": "assistant", "content": "noted"}), "stop"));
            if last.contains("slow") { reply.set_delay(Duration::from_secs(120)) } else { reply }
        })
        .mount(&server)
        .await;
    server
}

/// How many requests whose last message contains "slow" the model server has received.
async fn slow_requests(server: &MockServer) -> usize {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .is_some_and(|m| m["content"].to_string().contains("slow"))
        })
        .count()
}

/// Spawns `command`, waits until its turn's (slow) model call has reached `server`, then sends
/// it `signal` (`INT`, `TERM`); its output, and how long it took from the signal to its exit.
pub(crate) async fn signal_mid_turn(
    mut command: Command,
    server: &MockServer,
    signal: &str,
) -> (Output, Duration) {
    let before = slow_requests(server).await;
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    send_mid_turn(child, server, before, signal).await
}

/// Waits until `server` has received more than `before` slow requests, then sends `signal`
/// to `child`.
async fn send_mid_turn(
    child: std::process::Child,
    server: &MockServer,
    before: usize,
    signal: &str,
) -> (Output, Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while slow_requests(server).await <= before {
        assert!(Instant::now() < deadline, "the turn never called the model");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = Instant::now();
    let kill = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(kill.success(), "kill -{signal} failed");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    (output, sent.elapsed())
}

/// `kaos` in `dir` with an empty environment, as a process to spawn.
fn process(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kaos"));
    command.env_clear().current_dir(dir);
    command
}

/// `kaos run --json` on the disk session `s` in `dir/data`, with the local model.
fn run(dir: &Path, server: &MockServer, message: &str) -> Command {
    let mut command = process(dir);
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.uri())).args([
        "run",
        "--json",
        "--data-dir",
        "data",
        "--session",
        "s",
        "--model",
        "openai-compatible:tiny",
        message,
    ]);
    command
}

/// The session's turns as `kaos sessions show --json` prints them: (turn, user message).
fn turns(dir: &Path) -> Vec<(u64, String)> {
    let output = kaos(dir).args(["sessions", "show", "--json", "--data-dir", "data", "s"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout_json(&output)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["turn"].as_u64().unwrap(), r["messages"][0]["content"].as_str().unwrap().to_owned()))
        .collect()
}

/// The entries left in the session lock's queue (`data/.locks/sessions/`, next to the lock
/// file): a process that let go of the lock removed its own; a killed one leaves it behind.
fn queue_entries(dir: &Path) -> Vec<String> {
    let locks = dir.join("data/.locks/sessions");
    let mut left = Vec::new();
    for entry in std::fs::read_dir(&locks).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            for queued in std::fs::read_dir(entry.path()).unwrap() {
                let queued = queued.unwrap().file_name().to_string_lossy().into_owned();
                // The queue's own mutex file is not an entry.
                if queued.chars().all(|c| c.is_ascii_digit()) {
                    left.push(queued);
                }
            }
        }
    }
    left
}

/// Ctrl-C in the middle of a `kaos run` turn on a disk data directory stops the turn, lets go
/// of the session's lock file (its queue entry is gone), exits 130 with a message; the next
/// `kaos run` takes the session at once and continues it without a gap; SIGTERM does the same
/// with 143.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kaos_run_on_disk_stops_the_turn_and_releases_the_session() {
    let model = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &model, "first").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let (output, to_exit) =
        signal_mid_turn(run(dir.path(), &model, "slow: stopped by Ctrl-C"), &model, "INT").await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("kaos: SIGINT: stopping and releasing the session"), "{err}");
    assert!(err.contains("kaos: interrupted by SIGINT"), "{err}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(queue_entries(dir.path()), Vec::<String>::new(), "the lock's queue entry was left behind");

    let started = Instant::now();
    let output = run(dir.path(), &model, "after").output().unwrap();
    let hand_over = started.elapsed();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["turn_number"], 2);
    eprintln!(
        "disk: SIGINT to exit {to_exit:?}; the next kaos run (a new process) took {hand_over:?} in all"
    );
    assert!(hand_over < Duration::from_secs(5), "the next run took {hand_over:?}");

    let (output, _) =
        signal_mid_turn(run(dir.path(), &model, "slow: stopped by SIGTERM"), &model, "TERM").await;
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
    assert!(stderr(&output).contains("kaos: interrupted by SIGTERM"), "{}", stderr(&output));
    assert_eq!(queue_entries(dir.path()), Vec::<String>::new());
    assert_eq!(turns(dir.path()), [(1, "first".to_owned()), (2, "after".to_owned())]);
    // The codes are documented where the others are.
    let help = kaos(dir.path()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("130 stopped by Ctrl-C (SIGINT) or 143 by SIGTERM"), "{help}");
}

/// Ctrl-C while `kaos chat` waits for an answer ends the chat the same way: the turn in
/// progress leaves nothing, the earlier turns stay, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kaos_chat_turn_ends_the_chat_and_keeps_the_earlier_turns() {
    use std::io::Write as _;

    let model = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = process(dir.path());
    let mut child = command
        .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.uri()))
        .args(["chat", "--data-dir", "data", "--session", "s", "--model", "openai-compatible:tiny"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdin stays open: the chat would go on after the slow turn.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\nslow: stopped by Ctrl-C\n").unwrap();
    let (output, _) = send_mid_turn(child, &model, 0, "INT").await;
    drop(stdin);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("kaos: interrupted by SIGINT"), "{err}");
    assert_eq!(queue_entries(dir.path()), Vec::<String>::new());
    assert_eq!(turns(dir.path()), [(1, "first".to_owned())]);
}

/// Ctrl-C during a `kaos run --file` turn: the documents attached for the turn are removed
/// all the same, as after a finished turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kaos_run_with_a_file_removes_the_attached_documents() {
    let model = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "# Notes\n\nThe bridge opened in 1932.\n").unwrap();
    let mut command = run(dir.path(), &model, "slow: stopped with a file attached");
    command.args(["--file", "notes.md"]);
    let (output, _) = signal_mid_turn(command, &model, "INT").await;
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let docs = kaos(dir.path())
        .args(["docs", "ls", "--json", "--data-dir", "data", "--session", "s"])
        .output()
        .unwrap();
    assert!(docs.status.success(), "{}", stderr(&docs));
    assert_eq!(stdout_json(&docs), json!([]), "the attached document stayed in the session");
    assert_eq!(queue_entries(dir.path()), Vec::<String>::new());
}

/// Ctrl-C during `kaos resume` (the approved tool has run; the model's next answer is held):
/// exit 130, the session's lock released, no turn stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kaos_resume_stops_the_turn_and_releases_the_session() {
    // The model writes `slow.txt` with the destructive kaos-vfs-write (the default policy asks);
    // its answer after the tool's result ("wrote … to slow.txt") is held.
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let reply = ResponseTemplate::new(200).insert_header("content-type", "text/event-stream");
            if last["role"] == "tool" {
                let done = super::sse(json!({"role": "assistant", "content": "written"}), "stop");
                return reply.set_body_string(done).set_delay(Duration::from_secs(120));
            }
            let arguments = json!({"path": "slow.txt", "content": "x"}).to_string();
            reply.set_body_string(super::sse(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "kaos-vfs-write", "arguments": arguments}}]}),
                "tool_calls",
            ))
        })
        .mount(&model)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let paused = run(dir.path(), &model, "write it").output().unwrap();
    assert_eq!(paused.status.code(), Some(4), "{}", stderr(&paused));
    let run_id = stdout_json(&paused)["run_id"].as_str().unwrap().to_owned();

    let mut resume = process(dir.path());
    resume.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.uri())).args([
        "resume",
        &run_id,
        "--approve",
        "--data-dir",
        "data",
        "--model",
        "openai-compatible:tiny",
    ]);
    let (output, to_exit) = signal_mid_turn(resume, &model, "INT").await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("kaos: interrupted by SIGINT"), "{err}");
    assert_eq!(queue_entries(dir.path()), Vec::<String>::new());
    let show =
        kaos(dir.path()).args(["sessions", "show", "--json", "--data-dir", "data", "s"]).output().unwrap();
    assert!(!show.status.success() && stderr(&show).contains("no session"), "a turn was stored: {show:?}");
    eprintln!("resume: SIGINT to exit {to_exit:?}");
}
