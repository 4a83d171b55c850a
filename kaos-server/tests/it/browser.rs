//! The console in a real browser: Debian's Chromium, headless, driven over the Chrome
//! DevTools Protocol (raw CDP over a websocket on loopback). It opens the console, chats two
//! turns with a scripted model that calls a destructive tool, approves it in the page with the
//! keyboard, checks the waterfall shows the tool span with its cost, and saves screenshots
//! (under `target/tmp/browser/`). Chromium comes from `tests/browser/install.sh`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::support::{ALICE, destructive_runner, destructive_runtime, serve};

const CHROMIUM: &str = "/usr/bin/chromium";

/// One page of Chromium, driven over CDP.
struct Page {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::Text(message.into())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .unwrap()
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits until `condition` (a JS expression) is true.
    async fn wait_for(&mut self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(condition).await != Value::Bool(true) {
            if Instant::now() > deadline {
                let body = self.eval("document.body.innerText").await;
                panic!("timed out waiting for {condition}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text})).await;
    }

    async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let mut params =
                json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13});
            if kind == "keyDown" {
                params["text"] = json!("\r");
            }
            self.call("Input.dispatchKeyEvent", params).await;
        }
    }

    async fn screenshot(&mut self, dir: &Path, name: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}))
            .await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Starts headless Chromium on a fresh profile; returns it and the websocket URL of its page.
async fn chromium(profile: &Path) -> (tokio::process::Child, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is not installed: run tests/browser/install.sh (apt-get install chromium)"
    );
    let child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Chromium writes the port it picked to DevToolsActivePort in the profile.
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Some(port) = text.lines().next().and_then(|l| l.trim().parse::<u16>().ok())
        {
            break port;
        }
        assert!(Instant::now() < deadline, "Chromium did not start (no {})", file.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let targets: Value =
        reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await.unwrap().json().await.unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .unwrap_or_else(|| panic!("no page target: {targets}"));
    (child, page["webSocketDebuggerUrl"].as_str().unwrap().to_owned())
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends `message` from the composer with the keyboard, waits for the approval request, and
/// approves it with the keyboard (the page puts the focus on Approve).
async fn chat_and_approve(page: &mut Page, message: &str, turn: u32) {
    page.eval("document.getElementById('composer-input').focus(); true").await;
    page.type_text(message).await;
    page.press_enter().await;
    page.wait_for("!document.getElementById('approval').hidden").await;
    page.wait_for("document.activeElement && document.activeElement.id === 'approve'").await;
    let asked = page.eval("document.getElementById('approval-text').textContent").await;
    assert!(asked.as_str().unwrap().contains("delete_file"), "{asked}");
    page.press_enter().await;
    let done = format!(
        "[...document.querySelectorAll('#messages .msg.assistant')].some(m => m.textContent === 'Done: deleted notes.txt (turn {turn})')"
    );
    page.wait_for(&done).await;
    page.wait_for(&format!("!!document.querySelector('#turns button[data-turn=\"{turn}\"]')")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_chats_approves_and_shows_the_waterfall_in_chromium() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let profile = tempfile::tempdir().unwrap();
    let (mut browser, ws) = chromium(profile.path()).await;
    let (socket, _) = tokio_tungstenite::connect_async(ws.as_str()).await.unwrap();
    let mut page = Page { socket, next_id: 0 };
    let shots = screenshot_dir();
    page.call("Page.enable", json!({})).await;
    page.call("Runtime.enable", json!({})).await;
    // The token travels in the fragment, which never reaches the server.
    page.call("Page.navigate", json!({"url": format!("{}/#token={ALICE}", server.base_url())})).await;
    page.wait_for("document.readyState === 'complete' && !document.getElementById('app').hidden").await;
    page.wait_for("document.getElementById('status').textContent === 'connected'").await;
    assert_eq!(page.eval("location.hash").await, "", "the token is taken out of the address");

    // A new session, opened with the keyboard.
    page.eval("document.getElementById('new-session-id').focus(); true").await;
    page.type_text("web").await;
    page.press_enter().await;
    page.wait_for("document.getElementById('chat-title').textContent === 'web'").await;
    page.wait_for("document.activeElement && document.activeElement.id === 'composer-input'").await;

    chat_and_approve(&mut page, "please delete my notes", 1).await;
    page.wait_for("[...document.querySelectorAll('#messages .msg.tool.ok')].some(m => m.textContent.includes('delete_file'))").await;
    page.screenshot(&shots, "1-chat-after-approval").await;
    chat_and_approve(&mut page, "and again", 2).await;
    page.wait_for("document.querySelector('#session-list button[data-session=\"web\"] small').textContent.startsWith('2 ')").await;
    page.screenshot(&shots, "2-chat-two-turns").await;

    // The trace of turn 2 as a waterfall: the tool span, with its cost, and priced model calls.
    page.eval("document.querySelector('#turns button[data-turn=\"2\"]').click(); true").await;
    page.wait_for("!document.getElementById('trace').hidden && document.querySelectorAll('#waterfall tbody tr').length > 0").await;
    let rows = page
        .eval(
            "[...document.querySelectorAll('#waterfall tbody tr')].map(r => ({subject: r.dataset.subject, \
             name: r.querySelector('.span-name').textContent, cost: r.querySelector('.span-cost').textContent}))",
        )
        .await;
    let rows = rows.as_array().unwrap();
    let tool = rows.iter().find(|r| r["subject"] == "tool_call").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(tool["name"], "tool.delete_file");
    assert_eq!(tool["cost"], "$0.0000");
    let llm: Vec<&Value> = rows.iter().filter(|r| r["subject"] == "llm_call").collect();
    assert_eq!(llm.len(), 2, "{rows:?}");
    assert!(llm.iter().all(|r| r["cost"] != "$0.0000"), "{rows:?}");
    let api = super::support::Api::new(&server, ALICE);
    let (_, trace) = api.get("/sessions/web/turns/2/trace").await;
    let total = format!("${:.4}", trace["cost_usd"].as_f64().unwrap());
    let shown = page.eval("document.querySelector('#waterfall tfoot td:last-child').textContent").await;
    assert_eq!(shown, total.as_str());
    let bar_width = page
        .eval("document.querySelector('#waterfall tr[data-subject=\"tool_call\"] .span-bar').style.width")
        .await;
    assert!(bar_width.as_str().unwrap().ends_with('%'));
    page.screenshot(&shots, "3-waterfall").await;

    // Phone width: nothing overflows sideways.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    )
    .await;
    page.wait_for("document.documentElement.scrollWidth <= window.innerWidth").await;
    page.screenshot(&shots, "4-phone").await;

    browser.kill().await.unwrap();
    server.shutdown().await;
    eprintln!("screenshots in {}", shots.display());
}
