//! What the HTTP tests share: a runner whose scripted model calls a destructive tool, with
//! usage priced by the shipped price table, and helpers for the API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kaos_agent::Agent;
use kaos_providers::{Message, ModelResponse, Pricing, ScriptedClient, ScriptedReply, ToolCall, Usage};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_server::{HttpOptions, HttpServer, serve_http};
use kaos_tools::{ToolAnnotations, ToolResult, schemars, tool_fn};
use serde::Deserialize;
use serde_json::{Value, json};

pub const ALICE: &str = "alice-token-0123456789abcdef";
pub const BOB: &str = "bob-token-0123456789abcdef";
/// The model the scripted replies claim to be, priced by the shipped `pricing.toml`.
pub const PRICED_MODEL: &str = "gpt-4o-mini";

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
pub struct DeleteInput {
    /// The file to delete.
    pub path: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
pub struct WaitInput {
    /// Milliseconds to wait.
    pub ms: u64,
}

fn priced(mut response: ModelResponse, input: u64, output: u64) -> ScriptedReply {
    let mut usage = Usage::default();
    usage.input_tokens = input;
    usage.output_tokens = output;
    response.usage = usage;
    response.cost_usd = Pricing::default().cost(PRICED_MODEL, &response.usage);
    assert!(response.cost_usd.unwrap() > 0.0, "{PRICED_MODEL} has a price in pricing.toml");
    ScriptedReply::Response(response)
}

/// A user message makes the model call `delete_file` (destructive: it needs approval); a tool
/// result makes it answer with it. `wait` first when the message says so.
pub fn destructive_model() -> ScriptedClient {
    let calls = Arc::new(AtomicUsize::new(0));
    ScriptedClient::from_fn(move |request| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        match request.messages.last() {
            Some(Message::User { content }) => {
                let (tool, args) = if let Some(ms) = content.strip_prefix("wait ") {
                    ("wait", json!({"ms": ms.trim().parse::<u64>().unwrap_or(0)}))
                } else {
                    ("delete_file", json!({"path": "notes.txt"}))
                };
                let mut response = ModelResponse::text(PRICED_MODEL, "");
                response.tool_calls = vec![ToolCall::new(format!("call_{n}"), tool, args)];
                priced(response, 1_000, 20)
            }
            Some(Message::Tool { content, .. }) => {
                let turns = request.messages.iter().filter(|m| matches!(m, Message::User { .. })).count();
                priced(
                    ModelResponse::text(PRICED_MODEL, format!("Done: {content} (turn {turns})")),
                    1_200,
                    40,
                )
            }
            _ => ScriptedReply::text("?"),
        }
    })
}

pub fn destructive_runtime() -> Runtime {
    let delete = tool_fn("delete_file", "Deletes a file.", |input: DeleteInput, _ctx| async move {
        Ok(ToolResult::text(format!("deleted {}", input.path)))
    })
    .annotations(ToolAnnotations::destructive())
    .build()
    .unwrap();
    let wait = tool_fn("wait", "Waits a while.", |input: WaitInput, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(input.ms)).await;
        Ok(ToolResult::text(format!("waited {} ms", input.ms)))
    })
    .annotations(ToolAnnotations::read_only())
    .build()
    .unwrap();
    Runtime::builder().tool(delete).unwrap().tool(wait).unwrap().build()
}

pub fn destructive_runner(runtime: Runtime) -> Runner {
    let agent = Agent::builder().name("janitor").tools(["delete_file", "wait"]).build().unwrap();
    Runner::builder(agent, runtime).model(Arc::new(destructive_model())).build().unwrap()
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub async fn serve(runner: Runner) -> HttpServer {
    serve_http(runner, loopback(), HttpOptions::new().with_token(ALICE, "alice").with_token(BOB, "bob"))
        .await
        .unwrap()
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub id: Option<u64>,
    pub data: Value,
}

pub fn parse_sse(text: &str) -> Vec<Frame> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut out = Frame { event: "message".into(), id: None, data: Value::Null };
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    out.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    out.id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    out.data = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
                }
            }
            out
        })
        .collect()
}

/// The API at `server`, as the caller with `token`.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(server: &HttpServer, token: &str) -> Self {
        Self { base: format!("{}/v1", server.base_url()), token: token.into(), http: reqwest::Client::new() }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.request(reqwest::Method::GET, path).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` asking for server-sent events; returns the status and the frames.
    pub async fn post_sse(&self, path: &str, body: Value) -> (u16, Vec<Frame>) {
        let response = self
            .request(reqwest::Method::POST, path)
            .header("accept", "text/event-stream")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, parse_sse(&response.text().await.unwrap()))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .header("accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
