//! `kaos run` pauses on a tool call that needs approval (exit 4, printing the command that
//! resumes it); `kaos runs ls` lists the paused run; `kaos resume` continues it.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{kaos, sse, stderr, stdout_json};

/// A model that writes the user's message to `note.txt` with the destructive `kaos-vfs-write`
/// tool, then reports what the tool said.
async fn writer() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let stream = if last["role"] == "tool" {
                sse(json!({"role": "assistant", "content": format!("tool said: {}", last["content"])}), "stop")
            } else {
                let arguments = json!({"path": "note.txt", "content": last["content"]}).to_string();
                sse(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "kaos-vfs-write", "arguments": arguments}}]}),
                    "tool_calls",
                )
            };
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(stream)
        })
        .mount(&server)
        .await;
    server
}

async fn kaos_with(server: &MockServer, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = kaos(dir);
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.uri())).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_paused_run_is_listed_and_resumed_by_the_printed_command() {
    let server = writer().await;
    let dir = tempfile::tempdir().unwrap();
    let model = ["--model", "openai-compatible:tiny"];

    let paused = kaos_with(&server, dir.path(), &[&model[..], &["run", "first note"]].concat()).await;
    assert_eq!(paused.status.code(), Some(4), "{}", stderr(&paused));
    let err = stderr(&paused);
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("resume with: kaos resume "))
        .and_then(|rest| rest.strip_suffix(" --approve | --always | --deny"))
        .unwrap_or_else(|| panic!("no resume command in: {err}"))
        .to_owned();
    assert!(err.contains("paused: kaos-vfs-write(") && err.contains(&format!("run id {run_id}")), "{err}");

    let listed = kaos(dir.path()).args(["runs", "ls"]).output().unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.starts_with(&format!("{run_id}\tpaused\tsession default\tturn 1\tkaos-vfs-write(")),
        "{text}"
    );

    // The printed command, answered with --approve: the write happens and the turn completes.
    let resumed = kaos_with(&server, dir.path(), &["resume", &run_id, "--approve"]).await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("tool said: \"wrote 10 bytes to note.txt\""));
    let note = std::fs::read_to_string(dir.path().join(".kaos/sessions/default/files/note.txt")).unwrap();
    assert_eq!(note, "first note");
    let listed = kaos(dir.path()).args(["runs", "ls", "--json"]).output().unwrap();
    assert_eq!(stdout_json(&listed)[0]["status"], "resumed");

    // Resumed once only.
    let again = kaos_with(&server, dir.path(), &["resume", &run_id, "--approve"]).await;
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));

    // --deny: the tool does not run and the model is told why.
    let paused =
        kaos_with(&server, dir.path(), &[&model[..], &["run", "--json", "second note"]].concat()).await;
    assert_eq!(paused.status.code(), Some(4));
    let run_id = stdout_json(&paused)["run_id"].as_str().unwrap().to_owned();
    let denied =
        kaos_with(&server, dir.path(), &["resume", &run_id, "--deny", "--reason", "not now", "--json"]).await;
    assert!(denied.status.success(), "{}", stderr(&denied));
    assert_eq!(stdout_json(&denied)["stop_reason"], "completed");
    assert!(stdout_json(&denied)["text"].as_str().unwrap().contains("not now"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".kaos/sessions/default/files/note.txt")).unwrap(),
        "first note"
    );

    // No answer is a usage error; an unknown run says how to find one.
    let usage = kaos(dir.path()).args(["resume", &run_id]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let unknown = kaos(dir.path()).args(["resume", "run_nope", "--deny"]).output().unwrap();
    assert!(stderr(&unknown).contains("kaos runs ls"), "{}", stderr(&unknown));
    for output in [&again, &unknown] {
        super::assert_each_cause_once(stderr(output).lines().last().unwrap());
    }
}
