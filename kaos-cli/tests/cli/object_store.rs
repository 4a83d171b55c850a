//! `kaos` processes sharing sessions in an S3-compatible bucket (moto on loopback,
//! `bash tests/s3/install.sh`), configured only by the `vfs.s3_*` settings: each run exits
//! right after its turn, and the next one, in any process, must find the session's lease
//! released rather than wait for it to expire — also when the run was stopped by Ctrl-C — and
//! reading a session never waits for its lease.

#[path = "../../../kaos-vfs/tests/support/s3_server.rs"]
mod s3_server;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaos_vfs::object_store::aws::AmazonS3Builder;
use kaos_vfs::object_store::path::Path;
use kaos_vfs::object_store::{Error as StoreError, ObjectStoreExt};
use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString, Vfs, VfsPath};
use s3_server::S3Server;

const BUCKET: &str = "cli-leases";

/// `kaos` with the bucket settings and nothing else of the environment.
fn kaos(server: &S3Server, prefix: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kaos"));
    command
        .env_clear()
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

/// `kaos run --json` of `message` on the session `shared`, in a fresh working directory; its
/// turn number and how long the process took.
fn run_turn(server: &S3Server, prefix: &str, message: &str) -> (u64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = kaos(server, prefix, &["run", "--json", "--session", "shared", message])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(output.status.success(), "kaos run {message}: {}", String::from_utf8_lossy(&output.stderr));
    assert!(!dir.path().join(".kaos").exists(), "nothing is written to the local data directory");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (json["turn_number"].as_u64().unwrap(), took)
}

/// The bucket, read directly.
fn bucket(server: &S3Server) -> kaos_vfs::object_store::aws::AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&server.endpoint)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .unwrap()
}

/// The keys of the objects under `{prefix}/leases/`: the leases and their waiters' tickets.
fn lease_objects(server: &S3Server, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt as _;
    use kaos_vfs::object_store::ObjectStore as _;
    let store = bucket(server);
    let under = Path::parse(format!("{prefix}/leases")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listed: Vec<_> = rt.block_on(store.list(Some(&under)).try_collect()).unwrap();
    listed.into_iter().map(|meta| meta.location.to_string()).collect()
}

/// The session lease's body; `None` when there is none.
fn lease(server: &S3Server, prefix: &str) -> Option<String> {
    let store = bucket(server);
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
        assert_eq!(turn, expected, "each process continues the session");
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

/// The session's turns as `kaos sessions show --json` prints them: (turn, user message).
#[cfg(feature = "openai-compatible")]
fn turns(server: &S3Server, prefix: &str) -> Vec<(u64, String)> {
    let output = kaos(server, prefix, &["sessions", "show", "--json", "shared"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let records: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["turn"].as_u64().unwrap(), r["messages"][0]["content"].as_str().unwrap().to_owned()))
        .collect()
}

/// Issue 21: Ctrl-C in the middle of a `kaos run` turn (its model call held by the server)
/// stops the turn, releases the session's lease (the lease object is marked released) and
/// exits 130; the next `kaos run`, in another process, takes the session at once and continues
/// it with the next turn number: the stopped turn left nothing.
#[cfg(feature = "openai-compatible")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kaos_run_releases_the_lease_and_the_next_run_starts_at_once() {
    use crate::interrupt::{model_server, signal_mid_turn};

    let model = model_server().await;
    let server = S3Server::shared();
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("ctrl-c");
    let run = |message: &str| {
        let mut command = kaos(server, &prefix, &["run", "--json", "--session", "shared"]);
        command
            .args(["--model", "openai-compatible:tiny", message])
            .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.uri()));
        command
    };
    let output = run("first").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let (output, to_exit) = signal_mid_turn(run("slow: stopped by Ctrl-C"), &model, "INT").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("kaos: interrupted by SIGINT"), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    let body = tokio::task::block_in_place(|| lease(server, &prefix)).expect("the turn took a lease");
    assert!(body.contains("\"released\":true"), "kaos exited holding its lease: {body}");

    let started = Instant::now();
    let output = tokio::task::block_in_place(|| run("after").output().unwrap());
    let hand_over = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("waiting for session"), "the next run waited for the lease: {stderr}");
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["turn_number"], 2, "{response}");
    // Figures for the report; the failure mode this guards against is a wait of a whole TTL (15 s).
    eprintln!("S3: SIGINT to exit {to_exit:?}; the next kaos run (a new process) took {hand_over:?} in all");
    assert!(hand_over < Duration::from_secs(5), "the next run took {hand_over:?}");
    let turns = tokio::task::block_in_place(|| turns(server, &prefix));
    assert_eq!(turns, [(1, "first".to_owned()), (2, "after".to_owned())]);
}

/// Issue 21: `kaos sessions show` and `kaos sessions export` (with `--salvage` too) read a
/// session while another process holds its lease (in the middle of a turn), without waiting
/// for it: with a lock timeout of 1 s, a wait would fail.
#[test]
fn reading_a_session_never_waits_for_its_lease() {
    let server = S3Server::shared();
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("read");
    run_turn(server, &prefix, "hello");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
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
    let reads: [&[&str]; 4] = [
        &["sessions", "show", "--json", "shared"],
        &["sessions", "show", "--json", "--salvage", "shared"],
        &["sessions", "export", "--json", "shared"],
        &["sessions", "export", "--json", "--salvage", "shared"],
    ];
    for args in reads {
        let started = Instant::now();
        let output = kaos(server, &prefix, args).env("KAOS_VFS_S3_LOCK_TIMEOUT_SECS", "1").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kaos {}: {stderr}", args.join(" "));
        assert!(!stderr.contains("waiting for session"), "kaos {}: {stderr}", args.join(" "));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let records = if args[1] == "show" { &json } else { &json["records"] };
        assert_eq!(records.as_array().unwrap().len(), 1, "{json}");
        eprintln!("kaos {} while the lease is held: {:?}", args.join(" "), started.elapsed());
    }
    rt.block_on(held.release()).unwrap();
}

/// Issue 21: a second Ctrl-C while the lease is being released quits at once. The store stops
/// answering (the S3 server is paused with SIGSTOP) in the middle of the turn, so the release
/// the first Ctrl-C starts cannot finish; the second one ends the process anyway, exit 130.
#[cfg(feature = "openai-compatible")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_while_the_lease_is_being_released_quits_at_once() {
    use crate::interrupt::model_server;

    let model = model_server().await;
    // A server of its own: pausing it must not stall the other tests.
    let server = S3Server::start().unwrap_or_else(|why| panic!("{why}"));
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("twice");
    let signal = |signal: &str, pid: u32| {
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    };
    let mut child = kaos(&server, &prefix, &["run", "--json", "--session", "shared"])
        .args(["--model", "openai-compatible:tiny", "slow: stopped twice"])
        .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.uri()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while model.received_requests().await.unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "the turn never called the model");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal("STOP", server.pid());
    signal("INT", child.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let releasing = child.try_wait().unwrap().is_none();
    let sent = Instant::now();
    signal("INT", child.id());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let to_exit = sent.elapsed();
    signal("CONT", server.pid());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(releasing, "kaos exited before the second Ctrl-C: {stderr}");
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("kaos: SIGINT again: quitting at once"), "{stderr}");
    eprintln!("S3 store not answering: the second SIGINT to exit {to_exit:?}");
    assert!(to_exit < Duration::from_secs(5), "{to_exit:?}");
}

/// Issue 21: Ctrl-C while a `kaos run` waits for the session's lease (another process holds
/// it) ends the wait at once, exit 130, and leaves no ticket in the lease's queue: a ticket
/// left behind would have the holder's release hand the lease to a waiter that is gone.
#[test]
fn ctrl_c_while_a_kaos_run_waits_for_the_lease_leaves_no_ticket_behind() {
    use std::io::{BufRead as _, BufReader, Read as _};

    let server = S3Server::shared();
    server.create_bucket(BUCKET);
    let prefix = s3_server::unique("wait-int");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
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
    let lease_key = format!("{prefix}/leases/.locks/sessions/shared.lock");
    assert_eq!(lease_objects(server, &prefix), std::slice::from_ref(&lease_key));
    let mut child = kaos(server, &prefix, &["run", "--json", "--session", "shared", "hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its first progress line comes after it has queued up (its ticket is in the bucket).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("waiting for session") {
        assert_ne!(stderr.read_line(&mut seen).unwrap(), 0, "kaos exited: {seen}");
    }
    assert_eq!(lease_objects(server, &prefix).len(), 2, "a waiter's ticket is queued");
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    stderr.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("kaos: interrupted by SIGINT"), "{seen}");
    assert_eq!(lease_objects(server, &prefix), [lease_key], "the interrupted waiter left its ticket");
    rt.block_on(held.release()).unwrap();
}
