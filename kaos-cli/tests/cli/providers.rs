//! Provider settings and prices, through the real `kaos` binary against local servers shaped
//! like each vendor's API: every setting from every layer reaches the request.

use std::path::Path;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{kaos, stderr, stdout_json};

/// A vendor as the tests drive it.
struct Vendor {
    model: &'static str,
    /// The settings-key stem (`providers.{stem}_base_url`).
    stem: &'static str,
    /// The vendor's own variables: key, base URL.
    key_var: &'static str,
    url_var: &'static str,
    /// The path the request goes to, under the base URL.
    path: &'static str,
    /// The base URL's suffix the path is appended to.
    suffix: &'static str,
    /// The header carrying the key, and its value for the key `k-test`.
    auth: (&'static str, &'static str),
    /// The request body's output token limit, as a JSON pointer.
    max_tokens: &'static str,
    body: fn() -> String,
}

fn openai_sse() -> String {
    let chunk = |delta: Value, finish: Value, usage: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "tiny",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage})
    };
    format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(json!({"role": "assistant", "content": "pong"}), Value::Null, Value::Null),
        chunk(
            json!({}),
            json!("stop"),
            json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
        )
    )
}

fn anthropic_sse() -> String {
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "m1", "type": "message",
            "role": "assistant", "content": [], "model": "claude-haiku-4-5", "stop_reason": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "pong"}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

fn gemini_sse() -> String {
    let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "pong"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "totalTokenCount": 12}});
    format!("data: {chunk}\n\n")
}

const VENDORS: &[Vendor] = &[
    Vendor {
        model: "openai:gpt-4.1-mini",
        stem: "openai",
        key_var: "OPENAI_API_KEY",
        url_var: "OPENAI_BASE_URL",
        path: "/v1/chat/completions",
        suffix: "/v1",
        auth: ("authorization", "Bearer k-test"),
        max_tokens: "/max_completion_tokens",
        body: openai_sse,
    },
    Vendor {
        model: "anthropic:claude-haiku-4-5",
        stem: "anthropic",
        key_var: "ANTHROPIC_API_KEY",
        url_var: "ANTHROPIC_BASE_URL",
        path: "/v1/messages",
        suffix: "",
        auth: ("x-api-key", "k-test"),
        max_tokens: "/max_tokens",
        body: anthropic_sse,
    },
    Vendor {
        model: "gemini:gemini-2.5-flash",
        stem: "gemini",
        key_var: "GEMINI_API_KEY",
        url_var: "GOOGLE_GEMINI_BASE_URL",
        path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        suffix: "/v1beta",
        auth: ("x-goog-api-key", "k-test"),
        max_tokens: "/generationConfig/maxOutputTokens",
        body: gemini_sse,
    },
    Vendor {
        model: "openai-compatible:tiny",
        stem: "openai_compatible",
        key_var: "KAOS_OPENAI_COMPATIBLE_API_KEY",
        url_var: "KAOS_OPENAI_COMPATIBLE_BASE_URL",
        path: "/v1/chat/completions",
        suffix: "/v1",
        auth: ("authorization", "Bearer k-test"),
        max_tokens: "/max_tokens",
        body: openai_sse,
    },
];

/// Where a setting is given.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    /// The vendor's own variable where it has one (else `KAOS_PROVIDERS_*`).
    VendorEnv,
    /// `KAOS_PROVIDERS_*`.
    KaosEnv,
    /// `./.env`, with the vendor's own names.
    DotEnv,
    /// The agent file's `[providers]` table.
    AgentFile,
    /// `--set providers.…=…`.
    Flag,
}

const LAYERS: [Layer; 5] = [Layer::VendorEnv, Layer::KaosEnv, Layer::DotEnv, Layer::AgentFile, Layer::Flag];

/// One setting: its key under `providers.`, its KAOS variable, the vendor's own, its value.
struct Setting {
    key: String,
    vendor_var: Option<&'static str>,
    value: String,
}

impl Setting {
    fn kaos_var(&self) -> String {
        format!("KAOS_PROVIDERS_{}", self.key.to_ascii_uppercase())
    }
}

/// `kaos` in `dir` with `settings` given in `layer`; the agent file (written when the layer
/// needs it, or when `agent` has lines) is `agent.toml`.
fn configured(dir: &Path, layer: Layer, settings: &[Setting], agent: &str) -> assert_cmd::Command {
    let mut command = kaos(dir);
    let mut dotenv = String::new();
    let mut agent_file = agent.to_owned();
    let mut providers = String::new();
    for s in settings {
        match layer {
            Layer::VendorEnv => {
                command.env(s.vendor_var.map_or_else(|| s.kaos_var(), str::to_owned), &s.value);
            }
            Layer::KaosEnv => {
                command.env(s.kaos_var(), &s.value);
            }
            Layer::DotEnv => {
                dotenv +=
                    &format!("{}={}\n", s.vendor_var.map_or_else(|| s.kaos_var(), str::to_owned), s.value)
            }
            Layer::AgentFile => providers += &format!("{} = {:?}\n", s.key, s.value),
            Layer::Flag => {
                command.arg("--set").arg(format!("providers.{}={}", s.key, s.value));
            }
        }
    }
    if !providers.is_empty() {
        agent_file += &format!("\n[providers]\n{providers}");
    }
    std::fs::write(dir.join(".env"), dotenv).unwrap();
    if !agent_file.is_empty() {
        std::fs::write(dir.join("agent.toml"), format!("name = \"assistant\"\n{agent_file}")).unwrap();
        command.args(["--agent", "agent.toml"]);
    }
    command
}

async fn vendor_server(vendor: &Vendor) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(vendor.path))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string((vendor.body)()),
        )
        .mount(&server)
        .await;
    server
}

async fn run_blocking(mut command: assert_cmd::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

/// Every vendor, with its base URL, key and output token limit given in each layer, sends
/// its request to that URL with that key and limit (and OpenAI its organization and project).
#[tokio::test]
async fn every_vendor_reaches_its_configured_endpoint_from_every_layer() {
    for vendor in VENDORS {
        for layer in LAYERS {
            let server = vendor_server(vendor).await;
            let dir = tempfile::tempdir().unwrap();
            let mut settings = vec![
                Setting {
                    key: format!("{}_base_url", vendor.stem),
                    vendor_var: Some(vendor.url_var),
                    value: format!("{}{}", server.uri(), vendor.suffix),
                },
                Setting {
                    key: format!("{}_api_key", vendor.stem),
                    vendor_var: Some(vendor.key_var),
                    value: "k-test".into(),
                },
                Setting { key: "max_output_tokens".into(), vendor_var: None, value: "777".into() },
            ];
            if vendor.stem == "openai" {
                settings.push(Setting {
                    key: "openai_organization".into(),
                    vendor_var: Some("OPENAI_ORG_ID"),
                    value: "org-7".into(),
                });
                settings.push(Setting {
                    key: "openai_project".into(),
                    vendor_var: Some("OPENAI_PROJECT_ID"),
                    value: "proj-7".into(),
                });
            }
            let mut command = configured(dir.path(), layer, &settings, "");
            command.args(["run", "--json", "--model", vendor.model, "ping"]);
            let output = run_blocking(command).await;
            let case = format!("{} from {layer:?}", vendor.model);
            assert!(output.status.success(), "{case}: {}", stderr(&output));
            assert_eq!(stdout_json(&output)["text"], "pong", "{case}");
            let requests = server.received_requests().await.unwrap();
            assert_eq!(requests.len(), 1, "{case}");
            let request = &requests[0];
            let header =
                |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            assert_eq!(header(vendor.auth.0).as_deref(), Some(vendor.auth.1), "{case}");
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(body.pointer(vendor.max_tokens), Some(&json!(777)), "{case}: {body}");
            if vendor.stem == "openai" {
                assert_eq!(header("openai-organization").as_deref(), Some("org-7"), "{case}");
                assert_eq!(header("openai-project").as_deref(), Some("proj-7"), "{case}");
            }
        }
    }
}

/// `kaos config show` names the layer of each provider setting; a flag beats the agent file,
/// which beats the environment, which beats `.env`.
#[test]
fn config_show_names_the_layer_of_every_provider_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "KAOS_OPENAI_COMPATIBLE_BASE_URL=http://dotenv/v1\nANTHROPIC_BASE_URL=http://dotenv-a\nOPENAI_ORG_ID=org-dotenv\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        "name = \"a\"\n[providers]\nanthropic_base_url = \"http://agent-a\"\nmax_retries = 7\ntimeout_secs = 9\n",
    )
    .unwrap();
    let output = kaos(dir.path())
        .env("ANTHROPIC_BASE_URL", "http://env-a")
        .env("OPENAI_BASE_URL", "http://env-o/v1")
        .args(["config", "show", "--json", "--agent", "agent.toml", "--set", "providers.timeout_secs=2.5"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = stdout_json(&output);
    let entry = |key: &str| {
        let e =
            entries.as_array().unwrap().iter().find(|e| e["key"] == key).unwrap_or_else(|| panic!("{key}"));
        (e["value"].clone(), e["source"].clone())
    };
    assert_eq!(
        entry("providers.openai_compatible_base_url"),
        (
            json!("http://dotenv/v1"),
            json!({"layer": "dotenv", "path": ".env", "var": "KAOS_OPENAI_COMPATIBLE_BASE_URL"})
        )
    );
    assert_eq!(entry("providers.openai_organization").1["layer"], "dotenv");
    assert_eq!(
        entry("providers.openai_base_url"),
        (json!("http://env-o/v1"), json!({"layer": "env", "var": "OPENAI_BASE_URL"}))
    );
    assert_eq!(
        entry("providers.anthropic_base_url"),
        (json!("http://agent-a"), json!({"layer": "file", "path": "agent.toml"}))
    );
    assert_eq!(entry("providers.max_retries"), (json!("7"), json!({"layer": "file", "path": "agent.toml"})));
    assert_eq!(entry("providers.timeout_secs"), (json!("2.5"), json!({"layer": "override"})));
    assert_eq!(entry("providers.max_output_tokens"), (Value::Null, json!({"layer": "default"})));

    let text = kaos(dir.path()).args(["config", "show"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("providers.openai_compatible_base_url = http://dotenv/v1\t(KAOS_OPENAI_COMPATIBLE_BASE_URL in .env)"),
        "{text}"
    );

    // An unknown key in the agent file's [providers] names the file.
    std::fs::write(dir.path().join("bad.toml"), "name = \"a\"\n[providers]\nopenai_base_ulr = \"x\"\n")
        .unwrap();
    let bad = kaos(dir.path()).args(["config", "show", "--agent", "bad.toml"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = stderr(&bad);
    assert!(err.contains("providers.openai_base_ulr") && err.contains("bad.toml"), "{err}");
    super::assert_each_cause_once(err.trim_end());
}

fn compatible(server: &MockServer) -> String {
    format!("{}/v1", server.uri())
}

/// The time limit of a call and the retry count: a server that never answers in time is
/// asked `max_retries + 1` times, and the error says what timed out.
#[tokio::test]
async fn timeout_and_retries_come_from_the_settings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30)))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = kaos(dir.path());
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", compatible(&server)).args([
        "run",
        "--model",
        "openai-compatible:tiny",
        "--set",
        "providers.timeout_secs=0.2",
        "--set",
        "providers.max_retries=1",
        "--set",
        "providers.max_retry_wait_secs=0.01",
        "ping",
    ]);
    let output = run_blocking(command).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    let error = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    assert!(error.contains("timed out") || error.contains("no answer within 0.2 s"), "{err}");
    super::assert_each_cause_once(error);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    // Not a terminal: the status is plain lines — the wait for the model, then the retry.
    assert!(err.contains("  … waiting for openai-compatible:tiny\n"), "{err}");
    assert!(
        err.contains("  … openai-compatible:tiny: transport (") && err.contains("retry 1 in 0.0 s"),
        "{err}"
    );
}

/// A rate-limited server asking for a long wait: the longest wait setting caps it, and the
/// retry count bounds the attempts.
#[tokio::test]
async fn the_longest_retry_wait_caps_a_vendors_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3600")
                .set_body_json(json!({"error": {"message": "slow down"}})),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "KAOS_OPENAI_COMPATIBLE_BASE_URL={}\nKAOS_PROVIDERS_MAX_RETRIES=2\nKAOS_PROVIDERS_MAX_RETRY_WAIT_SECS=0.05\n",
            compatible(&server)
        ),
    )
    .unwrap();
    let mut command = kaos(dir.path());
    command.args(["run", "--events", "--model", "openai-compatible:tiny", "ping"]);
    let output = run_blocking(command).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("rate limited: HTTP 429: slow down"), "{}", stderr(&output));
    super::assert_each_cause_once(stderr(&output).trim_end());
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    // Each wait is reported, capped at the setting (not the hour the server asked for).
    let waits: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["type"] == "retry_scheduled")
        .collect();
    assert_eq!(waits.len(), 2, "{waits:?}");
    for (i, wait) in waits.iter().enumerate() {
        assert_eq!(wait["attempt"], json!(i + 1));
        assert_eq!(wait["wait_ms"], json!(50));
        assert_eq!(wait["reason"], "rate_limited");
    }
}

/// A local model priced in the agent file: the cost is computed from its price, a cost cap
/// stops the turn, and without a price every text output says `unpriced`, never `$0.0000`.
#[tokio::test]
async fn prices_from_the_agent_file_and_unpriced_calls_say_so() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(openai_sse()),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = compatible(&server);
    std::fs::write(
        dir.path().join("priced.toml"),
        "name = \"assistant\"\nmodel = \"openai-compatible:tiny\"\n\
         [pricing.\"openai-compatible:tiny\"]\ninput = 2.0\noutput = 10.0\n",
    )
    .unwrap();
    let mut command = kaos(dir.path());
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", &url).args([
        "run",
        "--json",
        "--agent",
        "priced.toml",
        "ping",
    ]);
    let output = run_blocking(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let response = stdout_json(&output);
    // 1000 input tokens at $2/M + 500 output tokens at $10/M.
    assert_eq!(
        (response["cost_usd"].clone(), response["unpriced_model_calls"].clone()),
        (json!(0.007), json!(0))
    );

    // A cap below one call's cost stops the next turn at its budget (exit 3).
    std::fs::write(
        dir.path().join("capped.toml"),
        "name = \"assistant\"\nmodel = \"openai-compatible:tiny\"\n[budget]\nmax_cost_usd = 0.001\n\
         [pricing.\"openai-compatible:tiny\"]\ninput = 2.0\noutput = 10.0\n",
    )
    .unwrap();
    let mut command = kaos(dir.path());
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", &url).args([
        "run",
        "--agent",
        "capped.toml",
        "-s",
        "capped",
        "ping",
    ]);
    let output = run_blocking(command).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));

    // The same model unpriced: the turn line and `sessions ls` say so.
    let mut command = kaos(dir.path());
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", &url).args([
        "run",
        "--model",
        "openai-compatible:tiny",
        "-s",
        "free",
        "ping",
    ]);
    let output = run_blocking(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("[turn 1 · unpriced · 1500 tokens · 1 model call(s)]"), "{err}");
    assert!(!err.contains("$0.0000"), "{err}");
    let listed = kaos(dir.path()).args(["sessions", "ls"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("free\t1 turn(s)\tunpriced\t1500 tokens"), "{listed}");
    assert!(listed.contains("default\t1 turn(s)\t$0.0070\t1500 tokens"), "{listed}");
    let shown = kaos(dir.path()).args(["sessions", "show", "free"]).output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("── turn 1 · unpriced · Completed"));

    // A pricing file named by the `pricing.file` setting prices it too.
    std::fs::write(
        dir.path().join("prices.toml"),
        "[pricing.\"openai-compatible:tiny\"]\ninput = 1.0\noutput = 1.0\n",
    )
    .unwrap();
    let mut command = kaos(dir.path());
    command.env("KAOS_OPENAI_COMPATIBLE_BASE_URL", &url).env("KAOS_PRICING_FILE", "prices.toml").args([
        "run",
        "--json",
        "--model",
        "openai-compatible:tiny",
        "-s",
        "file",
        "ping",
    ]);
    let output = run_blocking(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["cost_usd"], json!(0.0015));
}

/// Each vendor's own limits (`providers.{vendor}_max_output_tokens`, …) beat the vendor-wide
/// ones, from every layer: its requests carry its own output token limit.
#[tokio::test]
async fn a_vendors_own_limits_beat_the_vendor_wide_ones_from_every_layer() {
    for vendor in VENDORS {
        for layer in LAYERS {
            let server = vendor_server(vendor).await;
            let dir = tempfile::tempdir().unwrap();
            let settings = [
                Setting {
                    key: format!("{}_base_url", vendor.stem),
                    vendor_var: Some(vendor.url_var),
                    value: format!("{}{}", server.uri(), vendor.suffix),
                },
                Setting {
                    key: format!("{}_api_key", vendor.stem),
                    vendor_var: Some(vendor.key_var),
                    value: "k-test".into(),
                },
                Setting { key: "max_output_tokens".into(), vendor_var: None, value: "777".into() },
                Setting {
                    key: format!("{}_max_output_tokens", vendor.stem),
                    vendor_var: None,
                    value: "555".into(),
                },
            ];
            let mut command = configured(dir.path(), layer, &settings, "");
            command.args(["run", "--json", "--model", vendor.model, "ping"]);
            let output = run_blocking(command).await;
            let case = format!("{} from {layer:?}", vendor.model);
            assert!(output.status.success(), "{case}: {}", stderr(&output));
            let requests = server.received_requests().await.unwrap();
            assert_eq!(requests.len(), 1, "{case}");
            let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
            assert_eq!(body.pointer(vendor.max_tokens), Some(&json!(555)), "{case}: {body}");
        }
    }
}

/// An agent on OpenAI with Anthropic as its fallback: OpenAI's own time limit and retries
/// (none) give up on a server that does not answer in time after one attempt, though the
/// vendor-wide settings would wait 60 s three times; Anthropic then answers, asked with its
/// own output token limit. `kaos config show` names each setting's layer.
#[tokio::test]
async fn openai_with_an_anthropic_fallback_each_under_its_own_limits() {
    let openai = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30)))
        .mount(&openai)
        .await;
    let anthropic = vendor_server(&VENDORS[1]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        "name = \"assistant\"\nmodel = \"openai:gpt-4.1-mini\"\n\
         fallback_models = [\"anthropic:claude-haiku-4-5\"]\n\n\
         [providers]\nopenai_timeout_secs = 0.3\nanthropic_max_output_tokens = 300\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "KAOS_PROVIDERS_OPENAI_MAX_RETRY_WAIT_SECS=0.01\n").unwrap();
    let configure = |command: &mut assert_cmd::Command| {
        command
            .env("OPENAI_API_KEY", "k-test")
            .env("OPENAI_BASE_URL", format!("{}/v1", openai.uri()))
            .env("ANTHROPIC_API_KEY", "k-test")
            .env("ANTHROPIC_BASE_URL", anthropic.uri())
            .env("KAOS_PROVIDERS_TIMEOUT_SECS", "60")
            .env("KAOS_PROVIDERS_MAX_RETRIES", "2")
            .env("KAOS_PROVIDERS_MAX_OUTPUT_TOKENS", "900")
            .args(["--agent", "agent.toml", "--set", "providers.openai_max_retries=0"]);
    };
    let mut command = kaos(dir.path());
    configure(&mut command);
    command.args(["run", "--json", "ping"]);
    let output = run_blocking(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["text"], "pong");
    let asked_openai = openai.received_requests().await.unwrap();
    assert_eq!(asked_openai.len(), 1, "openai_max_retries = 0 beats max_retries = 2");
    let first: Value = serde_json::from_slice(&asked_openai[0].body).unwrap();
    assert_eq!(first["max_completion_tokens"], 900, "OpenAI has no limit of its own: {first}");
    let asked_anthropic = anthropic.received_requests().await.unwrap();
    assert_eq!(asked_anthropic.len(), 1);
    let fallback: Value = serde_json::from_slice(&asked_anthropic[0].body).unwrap();
    assert_eq!(fallback["max_tokens"], 300, "{fallback}");

    let mut show = kaos(dir.path());
    configure(&mut show);
    show.args(["config", "show", "--json"]);
    let output = show.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = stdout_json(&output);
    let entry = |key: &str| {
        let found = entries.as_array().unwrap().iter().find(|e| e["key"] == key).unwrap();
        (found["value"].clone(), found["source"].clone())
    };
    assert_eq!(entry("providers.openai_max_retries"), (json!("0"), json!({"layer": "override"})));
    assert_eq!(
        entry("providers.openai_timeout_secs"),
        (json!("0.3"), json!({"layer": "file", "path": "agent.toml"}))
    );
    assert_eq!(
        entry("providers.anthropic_max_output_tokens"),
        (json!("300"), json!({"layer": "file", "path": "agent.toml"}))
    );
    assert_eq!(
        entry("providers.openai_max_retry_wait_secs"),
        (
            json!("0.01"),
            json!({"layer": "dotenv", "path": ".env", "var": "KAOS_PROVIDERS_OPENAI_MAX_RETRY_WAIT_SECS"})
        )
    );
    assert_eq!(
        entry("providers.max_retries"),
        (json!("2"), json!({"layer": "env", "var": "KAOS_PROVIDERS_MAX_RETRIES"}))
    );
    assert_eq!(entry("providers.gemini_max_retries"), (Value::Null, json!({"layer": "default"})));
}
