//! The `kaos` command, run as a process. These are also the shell samples of
//! `docs/reference/cli.md` and `docs/tutorials/the-kaos-command.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![recursion_limit = "256"]

use std::path::Path;

use assert_cmd::Command;
use serde_json::{Value, json};

/// `kaos` in `dir`, with an empty environment (no API keys or `KAOS_*` leak in from the
/// machine) and `dir` as its data directory unless a test says otherwise.
fn kaos(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kaos"));
    command.env_clear().current_dir(dir);
    command
}

fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails when an error line repeats a clause (`a: b: b`, `a: b: c: b: c`): each cause of an
/// error is printed once.
fn assert_each_cause_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").collect();
    for len in 1..=parts.len() / 2 {
        for start in 0..=parts.len() - 2 * len {
            let (a, b) = (&parts[start..start + len], &parts[start + len..start + 2 * len]);
            assert_ne!(a, b, "a repeated clause in: {line}");
        }
    }
    for (i, part) in parts.iter().enumerate() {
        let rest = parts[i + 1..].join(": ");
        assert!(part.len() < 12 || !rest.contains(part), "{part:?} is repeated in: {line}");
    }
}

/// A `TurnResponse` with the fields that differ per run (ids, token estimates) checked and
/// replaced by placeholders, so the rest can be compared whole.
fn normalized(mut response: Value) -> Value {
    let run_id = response["run_id"].as_str().unwrap_or_default();
    assert!(run_id.starts_with("run_"), "{run_id}");
    let fingerprint = response["agent_fingerprint"].as_str().unwrap_or_default();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");
    assert!(response["usage"]["input_tokens"].as_u64().unwrap_or_default() > 0);
    response["run_id"] = json!("RUN");
    response["agent_fingerprint"] = json!("FINGERPRINT");
    response["usage"] = json!("USAGE");
    response
}

fn expected_response(text: &str, turn_number: u32, session: &str) -> Value {
    json!({
        "text": text,
        "stop_reason": "completed",
        "tool_calls": [],
        "usage": "USAGE",
        "cost_usd": 0.0,
        "unpriced_model_calls": 0,
        "model_calls": 1,
        "turn_number": turn_number,
        "run_id": "RUN",
        "session_id": session,
        "agent_fingerprint": "FINGERPRINT",
        "agent": "assistant",
    })
}

#[test]
fn run_offline_prints_the_turn_response_and_the_next_run_continues_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let first = kaos(dir.path()).args(["run", "--json", "--data-dir", data, "Hello!"]).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        normalized(stdout_json(&first)),
        expected_response("You said: \"Hello!\". I have seen 1 user message in this session.", 1, "default")
    );
    assert!(stderr(&first).contains("using the offline model scripted:echo"), "{}", stderr(&first));

    let second =
        kaos(dir.path()).args(["run", "--json", "--data-dir", data, "What did I say?"]).output().unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        normalized(stdout_json(&second)),
        expected_response(
            "You said: \"What did I say?\". I have seen 2 user messages in this session.",
            2,
            "default"
        )
    );
}

#[test]
fn run_prints_the_answer_as_text_by_default_and_uses_the_settings_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let output = kaos(dir.path())
        .env("KAOS_RUNTIME_DATA_DIR", "from-env")
        .args(["run", "--session", "s1", "Hi"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "You said: \"Hi\". I have seen 1 user message in this session.\n"
    );
    assert!(stderr(&output).contains("[turn 1 · $0.0000 · "), "{}", stderr(&output));
    assert!(dir.path().join("from-env/sessions/s1/turns.jsonl").is_file());
}

#[test]
fn run_events_streams_one_json_event_per_line_ending_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = kaos(dir.path()).args(["run", "--events", "Hi"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());
    let last = events.last().unwrap();
    assert_eq!((&last["type"], &last["turn_number"]), (&json!("turn_summary"), &json!(1)));
}

#[test]
fn chat_reads_turns_from_piped_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let output = kaos(dir.path()).arg("chat").write_stdin("Hello!\n\nWhat did I say?\n").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "You said: \"Hello!\". I have seen 1 user message in this session.\n\
         You said: \"What did I say?\". I have seen 2 user messages in this session.\n"
    );
    let err = stderr(&output);
    assert!(err.contains("[turn 1 · ") && err.contains("[turn 2 · "), "{err}");
}

#[test]
fn config_show_redacts_secrets_and_names_their_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "ANTHROPIC_API_KEY=sk-ant-from-dotenv\n").unwrap();
    let output = kaos(dir.path())
        .env("OPENAI_API_KEY", "sk-test-secret")
        .args(["config", "show", "--json", "--model", "scripted:echo"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("sk-test-secret") && !text.contains("sk-ant-from-dotenv"), "{text}");
    assert_eq!(
        stdout_json(&output),
        json!([
            {"key": "runtime.data_dir", "value": ".kaos", "source": {"layer": "default"}, "secret": false},
            {"key": "model", "value": "scripted:echo", "source": {"layer": "override"}, "secret": false},
            {"key": "tools.timeout_secs", "value": "60", "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_api_key", "value": "[redacted]",
             "source": {"layer": "env", "var": "OPENAI_API_KEY"}, "secret": true},
            {"key": "providers.anthropic_api_key", "value": "[redacted]",
             "source": {"layer": "dotenv", "path": ".env", "var": "ANTHROPIC_API_KEY"}, "secret": true},
            {"key": "providers.gemini_api_key", "value": null, "source": {"layer": "default"}, "secret": true},
            {"key": "vfs.sync", "value": "never", "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_base_url", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_organization", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_project", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.anthropic_base_url", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.gemini_base_url", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_compatible_base_url", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_compatible_api_key", "value": null, "source": {"layer": "default"}, "secret": true},
            {"key": "docs.max_file_bytes", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "docs.chunk_tokens", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "docs.max_chunks_per_session", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.max_output_tokens", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.timeout_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.max_retries", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.max_retry_wait_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_max_output_tokens", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_timeout_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_max_retries", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_max_retry_wait_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.anthropic_max_output_tokens", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.anthropic_timeout_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.anthropic_max_retries", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.anthropic_max_retry_wait_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.gemini_max_output_tokens", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.gemini_timeout_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.gemini_max_retries", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.gemini_max_retry_wait_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_compatible_max_output_tokens", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_compatible_timeout_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_compatible_max_retries", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "providers.openai_compatible_max_retry_wait_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "pricing.file", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_bucket", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_prefix", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_endpoint", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_region", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_access_key_id", "value": null, "source": {"layer": "default"}, "secret": true},
            {"key": "vfs.s3_secret_access_key", "value": null, "source": {"layer": "default"}, "secret": true},
            {"key": "vfs.s3_lease_ttl_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_lock_timeout_secs", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.s3_single_writer", "value": "false", "source": {"layer": "default"}, "secret": false},
            {"key": "mcp.token", "value": null, "source": {"layer": "default"}, "secret": true},
            {"key": "mcp.tokens", "value": null, "source": {"layer": "default"}, "secret": true},
            {"key": "sessions.cache_sessions", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "sessions.cache_bytes", "value": null, "source": {"layer": "default"}, "secret": false},
            {"key": "vfs.io_threads", "value": null, "source": {"layer": "default"}, "secret": false},
        ])
    );

    let human =
        kaos(dir.path()).env("OPENAI_API_KEY", "sk-test-secret").args(["config", "show"]).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("providers.openai_api_key = [redacted]\t(environment variable OPENAI_API_KEY)"),
        "{text}"
    );
    assert!(!text.contains("sk-test-secret"), "{text}");
}

#[test]
fn a_malformed_agent_file_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "name = \"helper\"\nmodle = \"openai:gpt-4.1\"\n").unwrap();
    let output = kaos(dir.path()).args(["run", "--agent", "bad.toml", "Hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: agent file bad.toml, line 2, column 1: unknown field `modle`"), "{err}");

    // The CLI's own tables stay in the file the agent parser reads: positions are the file's.
    std::fs::write(
        dir.path().join("tables.toml"),
        "name = \"helper\"\n\n[pricing.\"local:m\"]\ninput = 1.0\noutput = 2.0\n\n[[mcp_servers]]\nname = \"fs\"\nurl = \"http://127.0.0.1:9/mcp\"\n\n[providers]\nopenai_base_url = \"http://127.0.0.1:9\"\n\n[limits]\nmax_iterations = 0\n",
    )
    .unwrap();
    let output = kaos(dir.path()).args(["run", "--agent", "tables.toml", "Hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: agent file tables.toml, line 15, column "), "{err}");

    std::fs::write(dir.path().join("glob.toml"), "tools = [\"kaos-[\"]\n").unwrap();
    let output = kaos(dir.path()).args(["run", "--agent", "glob.toml", "Hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: agent file glob.toml: invalid glob \"kaos-[\" at tools[0]"), "{err}");
}

/// Issue 14's reliability suite: the session log under kills, corruption and concurrency.
#[path = "cli/reliability.rs"]
mod reliability;

/// `careful.toml` of docs/tutorials/the-kaos-command.md.
const POLICY_AGENT: &str = r#"
name = "careful"
instructions = "You keep notes in the workspace. Be brief."

[[permissions]]
tool = "*-delete"
decision = "deny"

[[permissions]]
tool = "kaos-vfs-write"
args = { path = "secrets/*" }
decision = "ask"
"#;

#[test]
fn policy_check_reports_the_decision_and_what_decided_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("careful.toml"), POLICY_AGENT).unwrap();
    let check = |args: &[&str]| {
        let output = kaos(dir.path())
            .args(["policy", "check", "--json", "--agent", "careful.toml"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let out = stdout_json(&output);
        (out["decision"].clone(), out["reason"].clone(), out["rule"].clone(), out["registered"].clone())
    };
    assert_eq!(
        check(&["kaos-vfs-delete"]),
        (json!("deny"), json!({"rule": 0}), json!({"tool": "*-delete", "decision": "deny"}), json!(true))
    );
    assert_eq!(
        check(&["kaos-vfs-write", "--arg", "path=secrets/key"]),
        (
            json!("ask"),
            json!({"rule": 1}),
            json!({"tool": "kaos-vfs-write", "args": {"path": "secrets/*"}, "decision": "ask"}),
            json!(true)
        )
    );
    assert_eq!(
        check(&["kaos-vfs-write", "--arg", "path=notes.md"]),
        (json!("ask"), json!("destructive"), Value::Null, json!(true))
    );
    assert_eq!(check(&["kaos-vfs-read"]), (json!("allow"), json!("read_only"), Value::Null, json!(true)));
    assert_eq!(
        check(&["web-fetch", "--requires-confirmation"]),
        (json!("ask"), json!("requires_confirmation"), Value::Null, json!(false))
    );
    assert_eq!(check(&["web-fetch"]), (json!("allow"), json!("default"), Value::Null, json!(false)));

    let human = kaos(dir.path())
        .args(["policy", "check", "--agent", "careful.toml", "kaos-vfs-delete"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&human.stdout), "deny\tpermissions[0] (tool = \"*-delete\")\n");
}

#[test]
fn sessions_can_be_listed_shown_exported_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    for message in ["one", "two"] {
        kaos(dir.path()).args(["run", "--session", "notes", message]).assert().success();
    }
    let ls = kaos(dir.path()).args(["sessions", "ls", "--json"]).output().unwrap();
    let mut listed = stdout_json(&ls);
    listed[0]["total_tokens"] = json!("TOKENS");
    listed[0]["last_turn_at_ms"] = json!("TIME");
    assert_eq!(
        listed,
        json!([{"id": "notes", "turns": 2, "cost_usd": 0.0, "unpriced_model_calls": 0, "total_tokens": "TOKENS",
                "last_turn_at_ms": "TIME"}])
    );

    let export = kaos(dir.path()).args(["sessions", "export", "notes"]).output().unwrap();
    let export = stdout_json(&export);
    assert_eq!((&export["session_id"], &export["turns"]), (&json!("notes"), &json!(2)));
    let turns: Vec<u64> =
        export["records"].as_array().unwrap().iter().map(|r| r["turn"].as_u64().unwrap()).collect();
    assert_eq!(turns, vec![1, 2]);
    assert_eq!(export["memory"]["messages"].as_array().unwrap().len(), 4);

    let show = kaos(dir.path()).args(["sessions", "show", "notes"]).output().unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("user: two\n"));

    kaos(dir.path()).args(["sessions", "rm", "notes"]).assert().success();
    let gone = kaos(dir.path()).args(["sessions", "show", "notes"]).output().unwrap();
    assert_eq!((gone.status.code(), stderr(&gone)), (Some(1), "error: no session \"notes\"\n".to_owned()));
}

#[test]
fn tools_and_vfs_can_be_inspected() {
    let dir = tempfile::tempdir().unwrap();
    kaos(dir.path()).args(["run", "Hi"]).assert().success();

    let tools = kaos(dir.path()).args(["tools", "ls", "--json"]).output().unwrap();
    let names: Vec<Value> =
        stdout_json(&tools).as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(
        names,
        vec![
            json!("kaos-vfs-read"),
            json!("kaos-vfs-write"),
            json!("kaos-vfs-append"),
            json!("kaos-vfs-list"),
            json!("kaos-vfs-delete")
        ]
    );

    let ls = kaos(dir.path()).args(["vfs", "ls", "sessions/default"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).starts_with("sessions/default/turns.jsonl\t"));
    let cat = kaos(dir.path()).args(["vfs", "cat", "sessions/default/turns.jsonl"]).output().unwrap();
    let record: Value = serde_json::from_slice(&cat.stdout).unwrap();
    assert_eq!(record["turn"], json!(1));
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = kaos(dir.path()).arg("no-such-command").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// One streamed Chat Completions answer (SSE), as an OpenAI-compatible server sends it.
#[cfg(feature = "openai-compatible")]
fn sse(delta: Value, finish_reason: &str) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(delta, Value::Null),
        chunk(json!({}), json!(finish_reason))
    )
}

/// `kaos chat` against a local OpenAI-compatible server whose model writes a note with the
/// destructive `kaos-vfs-write` tool: the default policy asks, and the piped line after the
/// question answers it — `y` runs the tool, anything else denies it.
#[cfg(feature = "openai-compatible")]
#[tokio::test]
async fn chat_asks_before_a_destructive_tool_and_follows_the_answer() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let stream = if last["role"] == "tool" {
                sse(json!({"role": "assistant", "content": format!("tool said: {}", last["content"])}), "stop")
            } else {
                let note = last["content"].as_str().unwrap().to_owned();
                let arguments = json!({"path": "note.txt", "content": note}).to_string();
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

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base_url = format!("{}/v1", server.uri());
    let (cwd, data_dir) = (dir.path().to_owned(), data.to_str().unwrap().to_owned());
    let output = tokio::task::spawn_blocking(move || {
        kaos(&cwd)
            .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", base_url)
            .args(["chat", "--model", "openai-compatible:tiny", "--data-dir", &data_dir])
            .write_stdin("first note\ny\nsecond note\nn\n")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let asked = err.matches("approve kaos-vfs-write(").count();
    assert_eq!(asked, 2, "{err}");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("tool said: \"wrote 10 bytes to note.txt\""), "{out}");
    assert!(out.contains("tool said: \"Denied by a person: the user declined\""), "{out}");
    // The approved write happened, the denied one did not.
    let note = std::fs::read_to_string(data.join("sessions/default/files/note.txt")).unwrap();
    assert_eq!(note, "first note");
}

/// `kaos run` with a research agent whose model answers without a verifiable quote: the turn
/// is a typed refusal, and the exit code says the turn stopped short of an answer.
#[cfg(feature = "openai-compatible")]
#[tokio::test]
async fn run_exits_5_when_the_turn_stops_short_of_an_answer() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let reply = json!({"answer": "Surely 1999.", "claims": [{"claim": "c", "quote": "made up", "source": "none.md"}]});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(sse(json!({"role": "assistant", "content": reply.to_string()}), "stop")),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("researcher.toml"), "name = \"researcher\"\npattern = \"research\"\n")
        .unwrap();
    let base_url = format!("{}/v1", server.uri());
    let cwd = dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        kaos(&cwd)
            .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", base_url)
            .args(["run", "--json", "--agent", "researcher.toml", "--model", "openai-compatible:tiny"])
            .arg("When did it open?")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    let response = stdout_json(&output);
    assert_eq!(response["stop_reason"], "evidence_insufficient");
    assert!(response["text"].as_str().unwrap().starts_with("I cannot answer this from the documents"));
}

/// `kaos serve --http`: one server with MCP, the API and the console, several callers' tokens
/// from flags and settings, any loopback address, and the refusals.
#[cfg(feature = "mcp")]
mod http_serve {
    use std::process::Stdio;

    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};

    const ALICE: &str = "alice-token-0123456789abcdef";
    const BOB: &str = "bob-token-0123456789abcdef";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kaos_serve_http_serves_the_api_and_the_console_to_several_callers() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaos"))
            .args(["serve", "--http", "127.0.0.2:0", "--token", &format!("alice={ALICE}")])
            .arg("--data-dir")
            .arg(dir.path())
            .env("KAOS_MCP_TOKENS", format!("bob={BOB}"))
            .env_remove("KAOS_MCP_TOKEN")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut line = String::new();
        while !line.starts_with("listening on ") {
            line = lines.next_line().await.unwrap().expect("kaos serve exited before listening");
        }
        let base = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned();
        assert!(base.starts_with("http://127.0.0.2:"), "{base}");
        let http = reqwest::Client::new();
        let page = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("KAOS console"));
        let turn = |token: &'static str| {
            http.post(format!("{base}/v1/sessions/s/turns"))
                .bearer_auth(token)
                .json(&json!({"message": "hello"}))
                .send()
        };
        let alice: Value = turn(ALICE).await.unwrap().json().await.unwrap();
        assert_eq!(alice["turn_number"], 1, "{alice}");
        assert_eq!(alice["session_id"], "s");
        let bob: Value = turn(BOB).await.unwrap().json().await.unwrap();
        assert_eq!(bob["turn_number"], 1, "Bob's `s` is not Alice's: {bob}");
        let response = http.get(format!("{base}/v1/sessions")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        child.kill().await.unwrap();
    }

    #[test]
    fn kaos_serve_http_refuses_unsafe_starts_with_errors_naming_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let serve = |args: &[&str]| {
            let output = assert_cmd::Command::cargo_bin("kaos")
                .unwrap()
                .args(["serve", "--data-dir"])
                .arg(dir.path())
                .args(args)
                .env_remove("KAOS_MCP_TOKEN")
                .env_remove("KAOS_MCP_TOKENS")
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(1), "{output:?}");
            String::from_utf8_lossy(&output.stderr).into_owned()
        };
        let token = format!("alice={ALICE}");
        assert!(serve(&["--http", "0.0.0.0:0", "--token", &token]).contains("--allow-remote"));
        assert!(serve(&["--http", "0.0.0.0:0", "--allow-remote"]).contains("--token CALLER=TOKEN"));
        assert!(serve(&["--http", "127.0.0.1:0"]).contains("--token CALLER=TOKEN"));
        assert!(serve(&["--http", "127.0.0.1:0", "--token", "alice"]).contains("expected CALLER=TOKEN"));
        assert!(serve(&["--http", "127.0.0.1:0", "--token", "alice=short"]).contains("at least 16"));
    }
}

/// The official TypeScript MCP SDK (pinned in `tests/mcp/`, installed by `tests/mcp/install.sh`)
/// drives `kaos serve` over stdio.
#[cfg(feature = "mcp")]
mod mcp_interop {
    use std::path::{Path, PathBuf};

    use serde::Deserialize;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    #[derive(Debug, Deserialize)]
    struct ClientReport {
        server: String,
        tools: Vec<String>,
        turns: Vec<Turn>,
        resources: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    struct Turn {
        text: String,
        is_error: bool,
    }

    async fn run_client(args: &[&str], env: &[(&str, &str)]) -> ClientReport {
        let modules = repo_root().join("tests/mcp/node_modules");
        assert!(
            modules.join("@modelcontextprotocol/sdk").is_dir(),
            "the MCP interop packages are not installed: run tests/mcp/install.sh (needs node >= 20 and npm)"
        );
        let output = tokio::process::Command::new("node")
            .arg(repo_root().join("tests/mcp/client.mjs"))
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .expect("node is not installed (the MCP interop tests need node >= 20)");
        assert!(output.status.success(), "client.mjs failed: {}", String::from_utf8_lossy(&output.stdout));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("bad report ({e}): {}", String::from_utf8_lossy(&output.stdout)))
    }

    /// The official TypeScript SDK drives `kaos serve` itself, over stdio.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_typescript_sdk_uses_kaos_serve_over_stdio() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let report =
            run_client(&["stdio", env!("CARGO_BIN_EXE_kaos"), "serve", "--data-dir", data], &[]).await;
        assert_eq!(report.server, "kaos");
        assert_eq!(
            report.tools,
            [
                "kaos-agent-turn",
                "kaos-agent-resume",
                "kaos-vfs-read",
                "kaos-vfs-write",
                "kaos-vfs-append",
                "kaos-vfs-list",
                "kaos-vfs-delete"
            ]
        );
        let texts: Vec<&str> = report.turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "You said: \"hello\". I have seen 1 user message in this session.",
                "You said: \"again\". I have seen 2 user messages in this session."
            ]
        );
        assert!(report.turns.iter().all(|t| !t.is_error));
        assert_eq!(report.resources, ["kaos://sessions/interop"]);
        // The session is on disk, where `kaos sessions` finds it.
        assert!(dir.path().join("sessions/interop/turns.jsonl").exists());
    }
}

/// Provider settings from every layer and prices from config, against local vendor servers.
#[cfg(all(feature = "openai", feature = "anthropic", feature = "gemini", feature = "openai-compatible"))]
#[path = "cli/providers.rs"]
mod providers;

/// `kaos resume` and `kaos runs ls`, against a local OpenAI-compatible server.
#[cfg(feature = "openai-compatible")]
#[path = "cli/resume.rs"]
mod resume;

/// MCP servers named in agent files.
#[cfg(all(feature = "mcp", feature = "openai-compatible"))]
#[path = "cli/mcp_servers.rs"]
mod mcp_servers;

/// The shell samples of the CLI docs, extracted from the Markdown and run.
#[path = "cli/doc_samples.rs"]
mod doc_samples;

/// `kaos docs` and `kaos run --file`, against a local OpenAI-compatible server.
#[cfg(feature = "openai-compatible")]
#[path = "cli/documents.rs"]
mod documents;

/// Sessions in an S3-compatible bucket (moto on loopback, `bash tests/s3/install.sh`): `kaos`
/// processes configured by the `vfs.s3_*` settings, lease hand-over, Ctrl-C.
#[cfg(feature = "object-store")]
#[path = "cli/object_store.rs"]
mod object_store;

/// Ctrl-C and SIGTERM during a turn: the turn is stored whole or not at all, the session's lock
/// is released, `kaos` exits 130 (143).
#[cfg(feature = "openai-compatible")]
#[path = "cli/interrupt.rs"]
mod interrupt;

/// `kaos … | head`: a reader that has gone before the output is written. The command does not
/// panic on the closed pipe, still does its work (the turn is stored) and exits 0.
#[test]
fn a_closed_stdout_ends_the_output_quietly_and_the_work_still_happens() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["config", "show"][..], &["run", "--session", "piped", "Remember the number 42."][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kaos"))
            .env_clear()
            .current_dir(dir.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone: every write to stdout is EPIPE
        let output = child.wait_with_output().unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
    let shown = kaos(dir.path()).args(["sessions", "show", "piped", "--json"]).output().unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(stdout_json(&shown).as_array().map(Vec::len), Some(1), "the turn was stored");
}

/// `kaos serve --http` over A2A, driven by the official A2A Python SDK (tests/a2a/).
#[path = "cli/a2a.rs"]
mod a2a;

/// A remote A2A agent (the official Python SDK's server) as a delegate named in an agent file.
#[cfg(all(feature = "a2a", feature = "openai-compatible"))]
#[path = "cli/a2a_delegate.rs"]
mod a2a_delegate;
