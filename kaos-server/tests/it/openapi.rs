//! The OpenAPI document at `/v1/openapi.json` against the routes: every documented operation
//! is served (the router answers it, not the fallback), and the document lists exactly the
//! operations this version promises.

use std::collections::BTreeSet;

use serde_json::Value;

use super::support::{ALICE, destructive_runner, destructive_runtime, serve};

const EXPECTED: &[(&str, &str)] = &[
    ("delete", "/v1/sessions/{id}"),
    ("get", "/v1/runs/{run_id}"),
    ("get", "/v1/sessions"),
    ("get", "/v1/sessions/{id}"),
    ("get", "/v1/sessions/{id}/memory/{section}"),
    ("get", "/v1/sessions/{id}/search"),
    ("get", "/v1/sessions/{id}/turns/{n}/trace"),
    ("post", "/v1/runs/{run_id}/approval"),
    ("post", "/v1/sessions/{id}/documents"),
    ("post", "/v1/sessions/{id}/turns"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let server = serve(destructive_runner(destructive_runtime())).await;
    let base = server.base_url();
    let http = reqwest::Client::new();
    let document: Value =
        http.get(format!("{base}/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<_> = EXPECTED.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected);

    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "s")
            .replace("{run_id}", "run_x")
            .replace("{section}", "messages")
            .replace("{n}", "1");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = http
            .request(method.clone(), format!("{base}{concrete}"))
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The router's own answers for an unserved operation.
        assert_ne!(status, 405, "{method} {concrete}: {body}");
        assert_ne!(body["error"]["message"], "no such route", "{method} {concrete}");
    }
    server.shutdown().await;
}
