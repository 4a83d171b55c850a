//! `POST /v1/sessions/{id}/documents`: a multipart upload ingested into the session's
//! documents (each file whole or not at all, the same content once), then a bad file named
//! with its error and nothing of it stored.

use serde_json::Value;

use super::support::{ALICE, Api, BOB, destructive_runner, destructive_runtime, serve};

/// A `multipart/form-data` body with one part per `(file name, bytes)`.
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "kaos-test-boundary-7d2f";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(api: &Api, session: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
    let (content_type, body) = multipart(files);
    let response = api
        .request(reqwest::Method::POST, &format!("/sessions/{session}/documents"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn documents(api: &Api, session: &str) -> Vec<Value> {
    let (status, section) = api.get(&format!("/sessions/{session}/memory/documents")).await;
    assert_eq!(status, 200, "{section}");
    section["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_files_become_the_sessions_documents_whole_or_not_at_all() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let alice = Api::new(&server, ALICE);
    let bridge: &[u8] = b"# The bridge\n\nThe bridge opened on 19 March 1932 after six years.\n";
    let tolls: &[u8] = b"year,toll\n1932,6 pence\n";
    let (status, added) = upload(&alice, "docs", &[("bridge.md", bridge), ("tolls.csv", tolls)]).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["session_id"], "docs");
    let rows = added["documents"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["name"].as_str(), rows[0]["status"].as_str()), (Some("bridge.md"), Some("added")));
    assert_eq!(rows[0]["chunks"], 1);
    assert!(rows[0]["sha256"].as_str().unwrap().starts_with("sha256:"));
    let items = documents(&alice, "docs").await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["metadata"]["name"], "bridge.md");
    assert_eq!(items[0]["metadata"]["chunk"], 0);
    assert!(items[0]["content"].as_str().unwrap().contains("opened on 19 March 1932"));

    // The same content again: unchanged, nothing added.
    let (status, again) = upload(&alice, "docs", &[("bridge.md", bridge)]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["documents"][0]["status"], "unchanged");
    assert_eq!(documents(&alice, "docs").await.len(), 2);

    // A binary file and text that is not UTF-8: 422, each named, nothing of them stored; a
    // good file in the same upload still goes in.
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
    let latin1: &[u8] = b"Caf\xe9 on the bridge.\n";
    let ferry: &[u8] = b"The last ferry ran in 1933.\n";
    let (status, mixed) =
        upload(&alice, "docs", &[("photo.txt", png), ("latin1.txt", latin1), ("ferry.txt", ferry)]).await;
    assert_eq!(status, 422, "{mixed}");
    let rows = mixed["documents"].as_array().unwrap();
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["error"], "photo.txt: unsupported format: image/png");
    assert_eq!(rows[1]["status"], "failed");
    assert!(rows[1]["error"].as_str().unwrap().starts_with("latin1.txt: not valid UTF-8"), "{mixed}");
    assert_eq!(rows[2]["status"], "added");
    let names: Vec<String> = documents(&alice, "docs")
        .await
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["bridge.md", "tolls.csv", "ferry.txt"]);

    // Not multipart, or no file part: 400. Another caller does not see the documents.
    let (status, error) = alice.post_json("/sessions/docs/documents", serde_json::json!({})).await;
    assert_eq!((status, error["error"]["type"].as_str()), (400, Some("invalid_request")), "{error}");
    assert_eq!(Api::new(&server, BOB).get("/sessions/docs/memory/documents").await.0, 404);
    server.shutdown().await;
}
