//! `kaos run` processes sharing one session in an S3-compatible bucket (moto on loopback,
//! `bash tests/s3/install.sh`), configured only by the `vfs.s3_*` settings: each run exits
//! right after its turn, and the next one, in any process, must find the session's lease
//! released rather than wait for it to expire.
#![cfg(feature = "object-store")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../kaos-vfs/tests/support/s3_server.rs"]
mod s3_server;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaos_vfs::object_store::aws::AmazonS3Builder;
use kaos_vfs::object_store::path::Path;
use kaos_vfs::object_store::{Error as StoreError, ObjectStoreExt};
use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString, Vfs, VfsPath};
use s3_server::S3Server;

const BUCKET: &str = "cli-leases";

/// `kaos` with the bucket settings, in a fresh working directory (no local state).
fn kaos(server: &S3Server, prefix: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kaos"));
    command
        .current_dir(std::env::temp_dir())
        .args(args)
        .env("KAOS_VFS_S3_BUCKET", BUCKET)
        .env("KAOS_VFS_S3_PREFIX", prefix)
        .env("KAOS_VFS_S3_ENDPOINT", &server.endpoint)
        .env("KAOS_VFS_S3_REGION", "us-east-1")
        .env("KAOS_VFS_S3_ACCESS_KEY_ID", "test")
        .env("KAOS_VFS_S3_SECRET_ACCESS_KEY", "test");
    command
}

fn run_turn(server: &S3Server, prefix: &str, message: &str) -> (u64, Duration) {
    let started = Instant::now();
    let output = kaos(server, prefix, &["run", "--json", "--session", "shared", message]).output().unwrap();
    let took = started.elapsed();
    assert!(output.status.success(), "kaos run {message}: {}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (json["turn_number"].as_u64().unwrap(), took)
}

/// The session lease's body; `None` when there is none.
fn lease(server: &S3Server, prefix: &str) -> Option<String> {
    let store = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&server.endpoint)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .unwrap();
    let key = Path::parse(format!("{prefix}/leases/.locks/sessions/shared.lock")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        match store.get(&key).await {
            Ok(got) => Some(String::from_utf8(got.bytes().await.unwrap().to_vec()).unwrap()),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => panic!("reading the lease: {e}"),
        }
    })
}

#[test]
fn kaos_run_releases_its_lease_before_it_exits() {
    let server = S3Server::shared();
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("exit");
    for expected in 1..=3 {
        let (turn, _) = run_turn(server, &prefix, &format!("turn {expected}"));
        assert_eq!(turn, expected);
        let body = lease(server, &prefix).expect("the turn took a lease");
        assert!(body.contains("\"released\":true"), "kaos exited holding its lease: {body}");
    }
}

#[test]
fn four_processes_times_25_kaos_runs_on_one_session_all_succeed() {
    const PROCESSES: usize = 4;
    const RUNS: usize = 25;
    let server = S3Server::shared();
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("fleet");
    let started = Instant::now();
    let loops: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                (0..RUNS)
                    .map(|i| run_turn(S3Server::shared(), &prefix, &format!("p{p}-{i}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut runs: Vec<(u64, Duration)> = loops.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let elapsed = started.elapsed();
    runs.sort();
    let all = (PROCESSES * RUNS) as u64;
    assert_eq!(runs.iter().map(|(turn, _)| *turn).collect::<Vec<_>>(), (1..=all).collect::<Vec<_>>());
    let export = kaos(server, &prefix, &["sessions", "export", "shared"]).output().unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let export: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(export["records"].as_array().unwrap().len() as u64, all);
    let mut took: Vec<Duration> = runs.iter().map(|(_, took)| *took).collect();
    took.sort();
    // Figures for the report (performance is measured by benches, not asserted here).
    eprintln!(
        "{PROCESSES} x {RUNS} kaos run on one session: {elapsed:?} in all; per run median {:?}, p90 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() * 9 / 10],
        took[took.len() - 1]
    );
}

#[test]
fn a_kaos_run_waiting_for_the_session_says_so() {
    let server = S3Server::shared();
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("wait");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // Another process is in the middle of a turn on the session.
    let other = ObjectStoreVfs::s3(
        S3Config::new(BUCKET)
            .with_prefix(&prefix)
            .with_endpoint(&server.endpoint)
            .with_region("us-east-1")
            .with_credentials("test", SecretString::from("test"))
            .with_allow_http(true),
    )
    .unwrap();
    let held = rt.block_on(other.lock(&VfsPath::new(".locks/sessions/shared.lock").unwrap())).unwrap();
    let child = kaos(server, &prefix, &["run", "--json", "--session", "shared", "hello"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    rt.block_on(held.release()).unwrap();
    let Output { status, stderr, .. } = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("waiting for session \"shared\", in use by another process"), "{stderr}");
}
