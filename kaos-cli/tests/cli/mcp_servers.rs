//! MCP servers named in an agent file: `@modelcontextprotocol/server-everything` (installed
//! by `tests/mcp/install.sh`) mounted as `everything-{tool}`, listed, offered and called; a
//! server that cannot start is an error naming it.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{assert_each_cause_once, kaos, sse, stderr, stdout_json};

fn everything_script() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/node_modules");
    let script = dir.join("@modelcontextprotocol/server-everything/dist/index.js");
    assert!(script.is_file(), "the MCP interop packages are not installed: run tests/mcp/install.sh");
    script.to_str().unwrap().to_owned()
}

fn agent_file(dir: &std::path::Path) {
    let text = format!(
        "name = \"assistant\"\nmodel = \"openai-compatible:tiny\"\n\
         [[mcp_servers]]\nname = \"everything\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n\
         tools = [\"echo\", \"get-sum\"]\n",
        everything_script()
    );
    std::fs::write(dir.join("agent.toml"), text).unwrap();
}

#[test]
fn tools_ls_lists_the_selected_tools_of_the_agent_files_servers() {
    let dir = tempfile::tempdir().unwrap();
    agent_file(dir.path());
    let output = kaos(dir.path()).args(["tools", "ls", "--json", "--agent", "agent.toml"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let names: Vec<String> = stdout_json(&output)
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().filter(|n| n.starts_with("everything-")).map(str::to_owned))
        .collect();
    assert_eq!(names, ["everything-echo", "everything-get-sum"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_calls_a_tool_of_the_agent_files_server() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let last = body["messages"].as_array().unwrap().last().unwrap().clone();
            let stream = if last["role"] == "tool" {
                sse(json!({"role": "assistant", "content": format!("server said: {}", last["content"])}), "stop")
            } else {
                let offered: Vec<&str> =
                    body["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
                assert!(offered.contains(&"everything-echo"), "{offered:?}");
                sse(
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "everything-echo", "arguments": "{\"message\":\"hi from kaos\"}"}}]}),
                    "tool_calls",
                )
            };
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(stream)
        })
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    agent_file(dir.path());
    let mut command = kaos(dir.path());
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.uri())).args([
        "run",
        "--json",
        "--agent",
        "agent.toml",
        "say hi",
    ]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let response = stdout_json(&output);
    assert_eq!(response["tool_calls"][0]["name"], "everything-echo");
    assert!(response["text"].as_str().unwrap().contains("Echo: hi from kaos"), "{response}");
}

#[test]
fn a_server_that_cannot_start_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        "name = \"assistant\"\n[[mcp_servers]]\nname = \"ghost\"\ncommand = \"kaos-no-such-command\"\n",
    )
    .unwrap();
    let output = kaos(dir.path()).args(["run", "--agent", "agent.toml", "hi"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("MCP server `ghost` of agent.toml is unavailable"), "{line}");
    assert!(line.contains("kaos-no-such-command"), "{line}");
    assert_each_cause_once(line);

    std::fs::write(dir.path().join("bad.toml"), "name = \"a\"\n[[mcp_servers]]\nname = \"x\"\n").unwrap();
    let output = kaos(dir.path()).args(["tools", "ls", "--agent", "bad.toml"]).output().unwrap();
    assert!(
        stderr(&output).contains("MCP server `x` (bad.toml): give either `command` (stdio) or `url`"),
        "{}",
        stderr(&output)
    );
}
