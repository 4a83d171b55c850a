//! `[[delegates]]` with `a2a = "http://…"` and `token_env`: the `kaos` binary calls an agent
//! served by the official Python SDK (`tests/a2a/peer.py`) with the bearer token from the
//! environment; the remote's question pauses the run (exit 4), `kaos resume --approve` sends the
//! answer to the same remote task, which completes.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{kaos, sse, stderr, stdout_json};

#[path = "../../../tests/a2a/peer.rs"]
mod peer;

/// A model that hands the user's message to the `billing` delegate, then reports its answer.
async fn front() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let stream = if last["role"] == "tool" {
                sse(json!({"role": "assistant", "content": format!("billing said: {}", last["content"].as_str().unwrap())}), "stop")
            } else {
                let arguments = json!({"task": last["content"]}).to_string();
                sse(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "billing", "arguments": arguments}}]}),
                    "tool_calls",
                )
            };
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(stream)
        })
        .mount(&server)
        .await;
    server
}

async fn kaos_with(
    server: &MockServer,
    dir: &std::path::Path,
    token: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut command = kaos(dir);
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.uri())).args(args);
    if let Some(token) = token {
        command.env("BILLING_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_remote_delegate_in_an_agent_file_is_called_with_its_token_and_its_question_is_a_pause() {
    let peer = peer::Peer::start(&["--token", "sekrit"]);
    let model = front().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("front.toml");
    std::fs::write(
        &agent,
        format!(
            "name = \"front\"\ninstructions = \"Route billing questions.\"\nmodel = \"openai-compatible:tiny\"\n\n\
             [[delegates]]\nname = \"billing\"\ndescription = \"Answers billing questions.\"\n\
             a2a = \"{}\"\ntoken_env = \"BILLING_TOKEN\"\n",
            peer.url
        ),
    )
    .unwrap();
    let agent = agent.to_str().unwrap();

    // Echo: the token from the environment is accepted, the remote's answer is the tool's.
    let echoed =
        kaos_with(&model, dir.path(), Some("sekrit"), &["--agent", agent, "run", "--json", "hello"]).await;
    assert!(echoed.status.success(), "{}", stderr(&echoed));
    assert_eq!(stdout_json(&echoed)["text"], "billing said: echo: hello");

    // The remote asks: the run pauses; --approve answers the same remote task.
    let paused =
        kaos_with(&model, dir.path(), Some("sekrit"), &["--agent", agent, "run", "please refund"]).await;
    assert_eq!(paused.status.code(), Some(4), "{}", stderr(&paused));
    let err = stderr(&paused);
    assert!(err.contains("the remote agent `billing` asks: Refund 42 EUR to ACME?"), "{err}");
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("resume with: kaos resume "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume command in: {err}"))
        .to_owned();
    let resumed = kaos_with(
        &model,
        dir.path(),
        Some("sekrit"),
        &["--agent", agent, "resume", &run_id, "--approve", "--json"],
    )
    .await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(stdout_json(&resumed)["text"], "billing said: Refund done.");

    // Without the variable, the agent is refused up front, naming the delegate and the variable.
    let refused = kaos_with(&model, dir.path(), None, &["--agent", agent, "run", "hello"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(err.contains("remote delegate `billing` failed") && err.contains("BILLING_TOKEN"), "{err}");
    super::assert_each_cause_once(err.lines().last().unwrap());
}
