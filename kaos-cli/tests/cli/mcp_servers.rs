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

/// An entry's `tools` follows the agent's own rule: without the key every tool of the server is
/// mounted, an empty list mounts none.
#[test]
fn an_empty_tools_list_mounts_no_tool_of_the_server_and_no_list_every_tool() {
    let mounted = |tools: &str| {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "name = \"assistant\"\nmodel = \"openai-compatible:tiny\"\n\
             [[mcp_servers]]\nname = \"everything\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n{tools}",
            everything_script()
        );
        std::fs::write(dir.path().join("agent.toml"), text).unwrap();
        let output =
            kaos(dir.path()).args(["tools", "ls", "--json", "--agent", "agent.toml"]).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout_json(&output)
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str().filter(|n| n.starts_with("everything-")).map(str::to_owned))
            .collect::<Vec<String>>()
    };
    assert_eq!(mounted("tools = []\n"), Vec::<String>::new());
    let all = mounted("");
    assert!(all.len() > 2 && all.iter().any(|n| n == "everything-echo"), "{all:?}");
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

/// The streamable HTTP form (`url` + `token_env`), against a real streamable-HTTP MCP server on
/// loopback: `kaos serve --http` itself, which refuses any request without its bearer token.
mod over_http {
    use std::process::Stdio;

    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use super::super::{assert_each_cause_once, kaos, sse, stderr, stdout_json};

    const TOKEN: &str = "remote-token-0123456789abcdef";

    /// `kaos serve --http` on an unused loopback port, its own data directory, and its MCP URL.
    async fn remote_kaos() -> (tokio::process::Child, String, tempfile::TempDir) {
        let data = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaos"))
            .args(["serve", "--http", "127.0.0.1:0", "--token", &format!("agent={TOKEN}")])
            .arg("--data-dir")
            .arg(data.path())
            .env_remove("KAOS_MCP_TOKEN")
            .env_remove("KAOS_MCP_TOKENS")
            .env_remove("KAOS_MODEL")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut line = String::new();
        while !line.starts_with("listening on ") {
            line = lines.next_line().await.unwrap().expect("kaos serve exited before listening");
        }
        let base =
            line.strip_prefix("listening on ").and_then(|rest| rest.split_whitespace().next()).unwrap();
        // Keep draining its stderr so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, format!("{base}/mcp"), data)
    }

    fn agent_file(dir: &std::path::Path, url: &str) {
        let text = format!(
            "name = \"assistant\"\nmodel = \"openai-compatible:tiny\"\n\
             [[mcp_servers]]\nname = \"remote\"\nurl = {url:?}\ntoken_env = \"REMOTE_MCP_TOKEN\"\n\
             tools = [\"kaos-agent-turn\", \"kaos-vfs-list\"]\n"
        );
        std::fs::write(dir.join("agent.toml"), text).unwrap();
    }

    /// `kaos` in `dir` with the agent file, the token in its variable, the rest blocking-safe.
    async fn run(
        dir: &std::path::Path,
        token: Option<&str>,
        args: &[&str],
        model_url: Option<String>,
    ) -> std::process::Output {
        let mut command = kaos(dir);
        if let Some(token) = token {
            command.env("REMOTE_MCP_TOKEN", token);
        }
        if let Some(url) = model_url {
            command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", url);
        }
        command.args(args).args(["--agent", "agent.toml"]);
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    fn error_line(output: &std::process::Output) -> String {
        let err = stderr(output);
        err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}")).to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tools_of_a_server_over_streamable_http_are_listed_and_called_with_the_token() {
        let (mut server, url, _data) = remote_kaos().await;
        let dir = tempfile::tempdir().unwrap();
        agent_file(dir.path(), &url);

        let output = run(dir.path(), Some(TOKEN), &["tools", "ls", "--json"], None).await;
        assert!(output.status.success(), "{}", stderr(&output));
        let names: Vec<String> = stdout_json(&output)
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str().filter(|n| n.starts_with("remote-")).map(str::to_owned))
            .collect();
        assert_eq!(names, ["remote-kaos-agent-turn", "remote-kaos-vfs-list"]);

        // A turn whose model calls the remote agent: the remote kaos answers with its offline model.
        let model = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(|request: &Request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                let last = body["messages"].as_array().unwrap().last().unwrap().clone();
                let stream = if last["role"] == "tool" {
                    sse(json!({"role": "assistant", "content": format!("remote said: {}", last["content"])}), "stop")
                } else {
                    sse(
                        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "remote-kaos-agent-turn",
                                         "arguments": "{\"message\":\"hello remote\",\"session_id\":\"s\"}"}}]}),
                        "tool_calls",
                    )
                };
                ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(stream)
            })
            .mount(&model)
            .await;
        let output =
            run(dir.path(), Some(TOKEN), &["run", "--json", "ask"], Some(format!("{}/v1", model.uri())))
                .await;
        assert!(output.status.success(), "{}", stderr(&output));
        let response = stdout_json(&output);
        assert_eq!(response["tool_calls"][0]["name"], "remote-kaos-agent-turn", "{response}");
        assert!(
            response["text"].as_str().unwrap().contains("hello remote")
                && response["text"].as_str().unwrap().contains("I have seen 1 user message"),
            "{response}"
        );

        // Without the right token the server refuses: an error naming the server.
        let output = run(dir.path(), Some("wrong-token-0123456789abcdef"), &["tools", "ls"], None).await;
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let line = error_line(&output);
        assert!(line.contains("MCP server `remote` of agent.toml is unavailable"), "{line}");
        assert!(line.contains(&format!("{url}: Auth required")), "the URL and the refusal: {line}");
        assert!(!line.contains("rmcp::"), "no library internals: {line}");
        assert_each_cause_once(&line);
        // Without its variable: said before connecting.
        let output = run(dir.path(), None, &["tools", "ls"], None).await;
        assert_eq!(output.status.code(), Some(1));
        let line = error_line(&output);
        assert!(
            line.contains("MCP server `remote` (agent.toml): its token variable REMOTE_MCP_TOKEN"),
            "{line}"
        );
        server.kill().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_url_is_an_error_naming_the_server_and_the_url() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let dir = tempfile::tempdir().unwrap();
        agent_file(dir.path(), &url);
        let output = run(dir.path(), Some(TOKEN), &["run", "hi"], None).await;
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let line = error_line(&output);
        assert!(line.contains("MCP server `remote` of agent.toml is unavailable"), "{line}");
        assert!(line.contains(&url), "the URL is named: {line}");
        assert!(line.contains("error sending request"), "the cause: {line}");
        assert!(!line.contains("rmcp::"), "no library internals: {line}");
        assert_each_cause_once(&line);
    }
}
