//! `kaos docs` and `kaos run --file`: the two commands a new user runs (add a folder, ask a
//! research agent) against an OpenAI-compatible server on loopback, and the bad-input cases.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{kaos, sse, stderr, stdout_json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A server whose model answers every call with `reply` (the research pattern's JSON).
async fn model(reply: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(sse(json!({"role": "assistant", "content": reply.to_string()}), "stop")),
        )
        .mount(&server)
        .await;
    server
}

fn claim(quote: &str, source: &str) -> Value {
    json!({"answer": "It opened in 1932.",
           "claims": [{"claim": "The bridge opened in 1932.", "quote": quote, "source": source}]})
}

async fn run(dir: &Path, server: &MockServer, args: &[&str]) -> std::process::Output {
    let mut command = kaos(dir);
    command
        .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.uri()))
        .env("KAOS_MODEL", "openai-compatible:tiny")
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn docs_ls(dir: &Path) -> Value {
    let output = kaos(dir).args(["docs", "ls", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout_json(&output)
}

/// The two commands of a new user: the folder goes in (a summary per file), then the research
/// agent answers with a quote verified against it, cited by document and chunk.
#[tokio::test]
async fn a_folder_added_then_a_research_answer_verified_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo().join("examples/data");
    let agent = repo().join("examples/research.toml");
    let output = kaos(dir.path()).args(["docs", "add"]).arg(&data).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // Adding documents calls no model, so none is announced.
    assert!(!stderr(&output).contains("no model configured"), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    for name in ["bridge-history.md", "ferry-notes.txt", "tolls.csv"] {
        assert!(out.contains(&format!("added {name}: 1 chunk(s), ")), "{out}");
    }
    let listed = docs_ls(dir.path());
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bridge-history.md", "ferry-notes.txt", "tolls.csv"]);
    assert!(listed[0]["sha256"].as_str().unwrap().starts_with("sha256:"));
    assert!(listed[0]["tokens"].as_u64().unwrap() > 0);

    // The same files again: nothing changes, and it says so.
    let again = kaos(dir.path()).args(["docs", "add"]).arg(&data).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("unchanged bridge-history.md: already in session default (same sha256)")
    );
    assert_eq!(docs_ls(dir.path()), listed);

    let server = model(claim("The bridge opened on 19 March 1932", "bridge-history.md")).await;
    let agent = agent.to_str().unwrap();
    let output = run(dir.path(), &server, &["run", "--agent", agent, "When did the bridge open?"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("Sources:\n- \"The bridge opened on 19 March 1932\" (bridge-history.md, chunk 1)"),
        "{text}"
    );
    // `--json` carries the citations structured, with where the quote was found.
    let output =
        run(dir.path(), &server, &["run", "--json", "--agent", agent, "When did the bridge open?"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let response = stdout_json(&output);
    assert_eq!(
        response["citations"],
        json!([{"claim": "The bridge opened in 1932.", "source": "bridge-history.md",
                "quote": "The bridge opened on 19 March 1932", "verified": true,
                "location": "bridge-history.md, chunk 1"}])
    );
}

/// A quote that is not in the documents is a typed refusal (exit 5), the citation unverified.
#[tokio::test]
async fn a_quote_not_in_the_documents_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = kaos(dir.path()).args(["docs", "add"]).arg(repo().join("examples/data")).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let server = model(claim("The bridge opened to great fanfare in 1931", "bridge-history.md")).await;
    let agent = repo().join("examples/research.toml");
    let output =
        run(dir.path(), &server, &["run", "--json", "--agent", agent.to_str().unwrap(), "When?"]).await;
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    let response = stdout_json(&output);
    assert_eq!(response["stop_reason"], "evidence_insufficient");
    assert_eq!(response["citations"][0]["verified"], false);
    assert_eq!(response["citations"][0].get("location"), None);
}

/// Bad files: each a clear error naming it, nothing of it stored, the good files still in,
/// and a session holding only bad files' attempts unchanged.
#[test]
fn bad_files_are_refused_by_name_and_nothing_of_them_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("good.md"), "The bridge opened in 1932.\n").unwrap();
    let before = {
        let output = kaos(dir.path()).args(["docs", "add", "input/good.md"]).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        docs_ls(dir.path())
    };
    std::fs::write(
        input.join("photo.txt"),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0",
    )
    .unwrap();
    std::fs::write(input.join("broken.pdf"), b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R\ntruncated")
        .unwrap();
    std::fs::write(input.join("latin1.txt"), b"Caf\xe9 au lait on the bridge, 1932.\n").unwrap();
    std::fs::write(input.join("big.txt"), "The bridge. ".repeat(100)).unwrap();
    let output = kaos(dir.path())
        .args(["docs", "add", "--set", "docs.max_file_bytes=1000"])
        .args(["input/photo.txt", "input/broken.pdf", "input/latin1.txt", "input/big.txt"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    for expected in [
        "error: photo.txt: unsupported format: image/png (nothing of it was stored)",
        "error: broken.pdf: corrupt PDF",
        "error: latin1.txt: not valid UTF-8 (first invalid byte at offset 3)",
        "error: big.txt: 1200 bytes is over the file size limit of 1000 bytes",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(err.contains("0 added, 0 unchanged, 4 failed"), "{err}");
    assert_eq!(docs_ls(dir.path()), before, "the session is unchanged");

    // A mix: the good file goes in, the bad one is named.
    std::fs::write(input.join("second.txt"), "Tolls were abolished in 1990.\n").unwrap();
    let output =
        kaos(dir.path()).args(["docs", "add", "input/second.txt", "input/latin1.txt"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("error: latin1.txt: not valid UTF-8"), "{}", stderr(&output));
    let names: Vec<String> = docs_ls(dir.path())
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["good.md", "second.txt"]);

    // A session's chunk limit refuses a file whole.
    let output = kaos(dir.path())
        .args(["docs", "add", "--set", "docs.max_chunks_per_session=2", "input/big.txt"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("error: big.txt: 1 chunk(s) would take session default over docs.max_chunks_per_session (2 held, limit 2)"), "{}", stderr(&output));
}

/// Globs, `docs rm`, and `kaos run --file` (attached for one turn).
#[tokio::test]
async fn globs_rm_and_a_file_attached_for_one_turn() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/*.md", repo().join("examples/data").display());
    let output = kaos(dir.path()).args(["docs", "add", "--session", "s", &pattern]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(out.contains("added bridge-history.md") && !out.contains("ferry"), "{out}");
    let output =
        kaos(dir.path()).args(["docs", "rm", "bridge-history.md", "--session", "s"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "removed bridge-history.md: 1 chunk(s)\n");
    let output = kaos(dir.path()).args(["docs", "ls", "--json", "--session", "s"]).output().unwrap();
    assert_eq!(stdout_json(&output), json!([]));
    let output =
        kaos(dir.path()).args(["docs", "rm", "bridge-history.md", "--session", "s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no document \"bridge-history.md\" in session s"),
        "{}",
        stderr(&output)
    );

    let server = model(claim("The last vehicle ferry stopped running in 1933", "ferry-notes.txt")).await;
    let agent = repo().join("examples/research.toml");
    let file = repo().join("examples/data/ferry-notes.txt");
    let args = [
        "run",
        "--json",
        "--session",
        "t",
        "--agent",
        agent.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "When did the ferry stop?",
    ];
    let output = run(dir.path(), &server, &args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["citations"][0]["location"], "ferry-notes.txt, chunk 1");
    let output = kaos(dir.path()).args(["docs", "ls", "--json", "--session", "t"]).output().unwrap();
    assert_eq!(stdout_json(&output), json!([]), "attached for one turn only");
}
