//! Stateless runner processes sharing sessions on a real S3-compatible server (moto on
//! loopback, kaos-vfs/tests/support/server.py, installed by tests/s3/install.sh; without it these tests
//! fail with a message saying so).
//!
//! The test binary re-runs itself as the child process: `child_entry` does nothing unless
//! `KAOS_S3_CHILD` is set, in which case it runs its turns and prints `ACK <message>` after
//! each completed turn.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../kaos-vfs/tests/support/s3_server.rs"]
mod s3_server;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use kaos_agent::Agent;
use kaos_providers::{ScriptedClient, ScriptedReply};
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString};
use s3_server::S3Server;

const PROCESSES: usize = 4;
const TURNS_PER_PROCESS: usize = 100;
const SESSIONS: usize = 20;

fn runner(endpoint: &str, bucket: &str, prefix: &str) -> Runner {
    let model = ScriptedClient::from_fn(|r| {
        ScriptedReply::text(format!("echo {}", r.last_user_message().unwrap_or_default()))
    })
    .without_recording();
    let vfs = Arc::new(ObjectStoreVfs::s3(s3_config(endpoint, bucket, prefix)).unwrap());
    Runner::builder(Agent::builder().name("scale-out").build().unwrap(), Runtime::builder().vfs(vfs).build())
        .model(Arc::new(model))
        .build()
        .unwrap()
}

fn s3_config(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
    S3Config::new(bucket)
        .with_prefix(prefix)
        .with_endpoint(endpoint)
        .with_region("us-east-1")
        .with_credentials("test", SecretString::from("test"))
        .with_allow_http(true)
}

/// The session a process's `i`-th turn goes to: every process walks all sessions, starting at
/// a different one, so they meet on sessions all the time.
fn session_of(process: usize, i: usize) -> String {
    format!("s{:02}", (i + process * 7) % SESSIONS)
}

#[test]
fn child_entry() {
    let Ok(process) = std::env::var("KAOS_S3_CHILD") else { return };
    let process: usize = process.parse().unwrap();
    let endpoint = std::env::var("KAOS_S3_ENDPOINT").unwrap();
    let prefix = std::env::var("KAOS_S3_PREFIX").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let runner = runner(&endpoint, "scale-out", &prefix);
        for i in 0..TURNS_PER_PROCESS {
            let message = format!("p{process}-{i}");
            runner.turn(&message, session_of(process, i)).await.unwrap();
            println!("ACK {message}");
        }
    });
}

#[test]
fn four_processes_share_twenty_sessions_and_keep_every_turn_once_in_order() {
    let server = S3Server::start().unwrap_or_else(|why| panic!("{why}"));
    server.create_bucket("scale-out");
    let prefix = s3_server::unique("procs");
    let children: Vec<_> = (0..PROCESSES)
        .map(|process| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "object_store::child_entry", "--nocapture", "--test-threads=1"])
                .env("KAOS_S3_CHILD", process.to_string())
                .env("KAOS_S3_ENDPOINT", &server.endpoint)
                .env("KAOS_S3_PREFIX", &prefix)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut acknowledged = 0;
    for mut child in children {
        let stdout = child.stdout.take().unwrap();
        acknowledged +=
            BufReader::new(stdout).lines().map_while(Result::ok).filter(|l| l.contains("ACK p")).count();
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(acknowledged, PROCESSES * TURNS_PER_PROCESS);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reader = runner(&server.endpoint, "scale-out", &prefix);
    let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in 0..SESSIONS {
        let session = format!("s{s:02}");
        let export = rt.block_on(reader.export_session(&session)).unwrap();
        // Turn numbers 1..=n, no gap, no duplicate: the turns were serialized across processes.
        let numbers: Vec<u32> = export.records.iter().map(|r| r.turn).collect();
        assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>(), "{session}");
        let users: Vec<String> = export
            .records
            .iter()
            .flat_map(|r| r.messages.iter().filter(|m| m.is_user()).map(|m| m.content().to_owned()))
            .collect();
        stored.insert(session, users);
    }
    // Every session holds exactly its turns, each once, each process's in its own order.
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for process in 0..PROCESSES {
        for i in 0..TURNS_PER_PROCESS {
            expected.entry(session_of(process, i)).or_default().push(format!("p{process}-{i}"));
        }
    }
    for (session, users) in &stored {
        for process in 0..PROCESSES {
            let mine: Vec<&String> =
                users.iter().filter(|m| m.starts_with(&format!("p{process}-"))).collect();
            let wanted: Vec<&String> =
                expected[session].iter().filter(|m| m.starts_with(&format!("p{process}-"))).collect();
            assert_eq!(mine, wanted, "{session}, process {process}");
        }
        let mut sorted = users.clone();
        sorted.sort();
        let mut wanted = expected[session].clone();
        wanted.sort();
        assert_eq!(sorted, wanted, "{session}");
    }
}

/// Exporting a session, or reading its memory, never waits for the lease of a turn in
/// progress in another process.
#[tokio::test]
async fn reading_a_session_never_waits_for_its_lease() {
    use kaos_vfs::{Vfs, VfsPath};
    let server = S3Server::shared();
    server.create_bucket("readers");
    let prefix = s3_server::unique("read");
    let writer = runner(&server.endpoint, "readers", &prefix);
    writer.turn("hello", "busy").await.unwrap();
    // Another process is in the middle of a turn on the session: it holds the lease.
    let other = ObjectStoreVfs::s3(s3_config(&server.endpoint, "readers", &prefix)).unwrap();
    let held = other.lock(&VfsPath::new(".locks/sessions/busy.lock").unwrap()).await.unwrap();
    // A reader whose lock wait would give up after 300 ms.
    let config = s3_config(&server.endpoint, "readers", &prefix)
        .with_lock_timeout(std::time::Duration::from_millis(300));
    let reader = Runner::builder(
        Agent::builder().name("scale-out").build().unwrap(),
        Runtime::builder().vfs(Arc::new(ObjectStoreVfs::s3(config).unwrap())).build(),
    )
    .model(Arc::new(ScriptedClient::from_fn(|_| ScriptedReply::text("unused")).without_recording()))
    .build()
    .unwrap();
    let export = reader.export_session("busy").await.unwrap();
    assert_eq!(export.records.len(), 1);
    assert_eq!(reader.memory("busy").await.unwrap().turn(), 1);
    held.release().await.unwrap();
}
