//! The session log under crashes, corruption, concurrency and hostile input, through the real
//! `kaos` binary on a disk data directory (issue 14's reliability suite; run by `cargo xtask ci`).
//!
//! The offline model `scripted:echo` answers "You said: "…". I have seen N user messages in
//! this session.", so every answer also says how many user messages the session's memory held:
//! a lost, repeated or forgotten turn shows in the text.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{kaos, stderr, stdout_json};

/// `kaos run --json` of one message on `session`; the output.
fn run(dir: &Path, session: &str, message: &str) -> std::process::Output {
    kaos(dir).args(["run", "--json", "--data-dir", "data", "--session", session, message]).output().unwrap()
}

fn log_path(dir: &Path, session: &str) -> PathBuf {
    dir.join("data/sessions").join(session).join("turns.jsonl")
}

fn checkpoint_path(dir: &Path, session: &str) -> PathBuf {
    dir.join("data/sessions").join(session).join("checkpoint.json")
}

/// The session's turns as `kaos sessions show --json` prints them: (turn, user message).
fn turns(dir: &Path, session: &str) -> Vec<(u64, String)> {
    let output =
        kaos(dir).args(["sessions", "show", "--json", "--data-dir", "data", session]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout_json(&output)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["turn"].as_u64().unwrap(), r["messages"][0]["content"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// How many user messages the answer says the session's memory held.
fn seen(output: &std::process::Output) -> u64 {
    let text = stdout_json(output)["text"].as_str().unwrap().to_owned();
    let n = text.rsplit("I have seen ").next().unwrap().split(' ').next().unwrap();
    n.parse().unwrap_or_else(|_| panic!("{text}"))
}

/// A message of about `size` bytes starting with `tag`.
fn big(tag: &str, size: usize) -> String {
    format!("{tag} {}", "z".repeat(size))
}

/// A session `s` of `n` turns with 100 KB messages: the log passes the checkpoint threshold
/// (512 KB) at turn 3, so it has a checkpoint.
fn session_with_checkpoint(dir: &Path, session: &str, n: usize) -> Vec<u8> {
    for i in 1..=n {
        let output = run(dir, session, &big(&format!("t{i}"), 100_000));
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert!(checkpoint_path(dir, session).is_file(), "no checkpoint was written");
    std::fs::read(log_path(dir, session)).unwrap()
}

/// Byte offsets just after each line of a log.
fn line_ends(log: &[u8]) -> Vec<usize> {
    log.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect()
}

fn checkpoint(dir: &Path, session: &str) -> Value {
    serde_json::from_slice(&std::fs::read(checkpoint_path(dir, session)).unwrap()).unwrap()
}

fn stray_temps(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        // A temp file is `.{name}.kaos-tmp-{pid}-{n}`; the lock's queue directory and waiters
        // file under `.locks/` (`….kaos-tmp-queue`, `….kaos-tmp-waiters`) are reserved names
        // too, but not temp files.
        let temp = name.split_once(".kaos-tmp-").is_some_and(|(_, rest)| {
            rest.split_once('-').is_some_and(|(pid, n)| {
                [pid, n].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            })
        });
        if temp {
            out.push(entry.display().to_string());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Finding 3: a checkpoint ahead of the log (the log lost its last appends in a power loss,
/// the fsynced checkpoint did not) is ignored; the next turn is numbered after the log's last
/// turn, the model sees every kept turn, and the session stays readable.
#[test]
fn a_checkpoint_ahead_of_the_log_is_ignored_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = session_with_checkpoint(dir.path(), "s", 4);
    let covered = checkpoint(dir.path(), "s")["turn"].as_u64().unwrap();
    assert!(covered >= 2, "checkpoint at turn {covered}");
    // The power loss: the log keeps only the records before the checkpoint's last one.
    let ends = line_ends(&log);
    let kept = covered - 1;
    std::fs::write(log_path(dir.path(), "s"), &log[..ends[kept as usize - 1]]).unwrap();

    let output = run(dir.path(), "s", "after the crash");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("ignored the checkpoint"), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["turn_number"].as_u64(), Some(kept + 1));
    let again = run(dir.path(), "s", "and again");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout_json(&again)["turn_number"].as_u64(), Some(kept + 2));
    let numbers: Vec<u64> = turns(dir.path(), "s").into_iter().map(|(n, _)| n).collect();
    assert_eq!(numbers, (1..=kept + 2).collect::<Vec<_>>());
    let export = kaos(dir.path()).args(["sessions", "export", "--data-dir", "data", "s"]).output().unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
}

/// Finding 4: one bad byte in the complete last record is a typed error, the file is left
/// exactly as it was, and `--salvage` reads the intact turns.
#[test]
fn a_bad_byte_in_the_complete_last_record_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        assert!(run(dir.path(), "s", &format!("m{i}")).status.success());
    }
    let path = log_path(dir.path(), "s");
    let mut log = std::fs::read(&path).unwrap();
    let last_start = line_ends(&log)[1];
    log[last_start + 1] = b'#';
    std::fs::write(&path, &log).unwrap();

    let output = run(dir.path(), "s", "m4");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("is corrupt at sessions/s/turns.jsonl line 3"), "{}", stderr(&output));
    assert_eq!(std::fs::read(&path).unwrap(), log, "the log was changed");
    let show = kaos(dir.path()).args(["sessions", "show", "--data-dir", "data", "s"]).output().unwrap();
    assert_eq!(show.status.code(), Some(1));
    let salvage = kaos(dir.path())
        .args(["sessions", "show", "--json", "--salvage", "--data-dir", "data", "s"])
        .output()
        .unwrap();
    assert!(salvage.status.success(), "{}", stderr(&salvage));
    assert!(stderr(&salvage).contains("left out line 3"), "{}", stderr(&salvage));
    let kept: Vec<u64> =
        stdout_json(&salvage).as_array().unwrap().iter().map(|r| r["turn"].as_u64().unwrap()).collect();
    assert_eq!(kept, vec![1, 2]);
    let export = kaos(dir.path())
        .args(["sessions", "export", "--salvage", "--data-dir", "data", "s"])
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(stdout_json(&export)["turns"], 2);
    assert_eq!(std::fs::read(&path).unwrap(), log, "reading changed the log");
}

/// Finding 7: repairs are said on stderr by `kaos run`, `kaos run --json` and `kaos chat`; a
/// repeated record and a skipped turn number are errors, not silently replayed.
#[test]
fn repairs_are_printed_and_bad_numbering_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), "s", "m1").status.success());
    let path = log_path(dir.path(), "s");
    let torn = |path: &Path| {
        let mut log = std::fs::read(path).unwrap();
        log.extend_from_slice(b"{\"v\":2,\"turn\":");
        std::fs::write(path, log).unwrap();
    };
    torn(&path);
    let human =
        kaos(dir.path()).args(["run", "--data-dir", "data", "--session", "s", "m2"]).output().unwrap();
    assert!(human.status.success(), "{}", stderr(&human));
    assert!(stderr(&human).contains("dropped a torn last line"), "{}", stderr(&human));
    torn(&path);
    let json = run(dir.path(), "s", "m3");
    assert!(json.status.success(), "{}", stderr(&json));
    assert!(stderr(&json).contains("dropped a torn last line"), "{}", stderr(&json));
    torn(&path);
    let chat = kaos(dir.path())
        .args(["chat", "--data-dir", "data", "--session", "s"])
        .write_stdin("m4\n")
        .output()
        .unwrap();
    assert!(chat.status.success(), "{}", stderr(&chat));
    assert!(stderr(&chat).contains("dropped a torn last line"), "{}", stderr(&chat));
    let numbers: Vec<u64> = turns(dir.path(), "s").into_iter().map(|(n, _)| n).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4]);

    // A duplicated last line: the model would see a message twice.
    let log = std::fs::read(&path).unwrap();
    let ends = line_ends(&log);
    let mut doubled = log.clone();
    doubled.extend_from_slice(&log[ends[2]..ends[3]]);
    std::fs::write(&path, &doubled).unwrap();
    let output = run(dir.path(), "s", "m5");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("recorded twice"), "{}", stderr(&output));
    assert_eq!(std::fs::read(&path).unwrap(), doubled);

    // A renumbered record: turn numbers skip.
    let text = String::from_utf8(log.clone()).unwrap().replacen("\"turn\":3,", "\"turn\":7,", 1);
    std::fs::write(&path, &text).unwrap();
    let output = run(dir.path(), "s", "m5");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("turn 7 follows turn 2"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

/// Finding 7: a session directory symlinked outside the data directory fails before the
/// model is called (no request reaches the server).
#[cfg(feature = "openai-compatible")]
#[tokio::test]
async fn a_symlinked_session_fails_before_the_paid_call() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(
                super::sse(serde_json::json!({"role": "assistant", "content": "hi"}), "stop"),
            ),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(dir.path().join("data/sessions")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("data/sessions/s")).unwrap();
    let base_url = format!("{}/v1", server.uri());
    let cwd = dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        kaos(&cwd)
            .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", base_url)
            .args(["run", "--data-dir", "data", "--session", "s", "--model", "openai-compatible:tiny", "Hi"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot be stored"), "{}", stderr(&output));
    assert_eq!(server.received_requests().await.unwrap().len(), 0, "the model was called");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was written outside");
}

/// Finding 5: `kaos sessions rm` during a turn (in another process) waits for the turn; the
/// turn does not recreate the session afterwards.
#[cfg(feature = "openai-compatible")]
#[tokio::test]
async fn sessions_rm_during_a_turn_waits_for_it() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(super::sse(
                    serde_json::json!({"role": "assistant", "content": "slow"}),
                    "stop",
                ))
                .set_delay(Duration::from_millis(1_500)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        assert!(run(dir.path(), "s", &format!("m{i}")).status.success());
    }
    let base_url = format!("{}/v1", server.uri());
    let turn = StdCommand::new(env!("CARGO_BIN_EXE_kaos"))
        .env_clear()
        .env("KAOS_OPENAI_COMPATIBLE_BASE_URL", base_url)
        .current_dir(dir.path())
        .args([
            "run",
            "--json",
            "--data-dir",
            "data",
            "--session",
            "s",
            "--model",
            "openai-compatible:tiny",
            "m4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The turn holds the session once its model call has reached the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.received_requests().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the turn never called the model");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cwd = dir.path().to_owned();
    let rm = tokio::task::spawn_blocking(move || {
        kaos(&cwd).args(["sessions", "rm", "--data-dir", "data", "s"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(rm.status.success(), "{}", stderr(&rm));
    let turn = tokio::task::spawn_blocking(move || turn.wait_with_output().unwrap()).await.unwrap();
    assert!(turn.status.success(), "{}", stderr(&turn));
    assert_eq!(stdout_json(&turn)["turn_number"], 4);
    // The delete came after the turn's commit: nothing of the session is left.
    assert!(!dir.path().join("data/sessions/s").exists(), "the turn recreated the deleted session");
}

/// Finding 6 and the kill loop: `kaos run` killed with SIGKILL at random moments (before,
/// inside and after its append, and while writing checkpoints) on a disk session, each kill
/// followed by a run that must succeed. Every acknowledged turn is in the log, turns are
/// numbered 1..N, and no temp file of a killed writer is left behind.
#[test]
fn sigkill_loop_loses_no_acknowledged_turn() {
    const KILLS: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    // How long one turn takes here, to spread the kills over it.
    let start = Instant::now();
    let first = run(dir.path(), "s", &big("ack-first", 100_000));
    assert!(first.status.success(), "{}", stderr(&first));
    let span = start.elapsed().as_micros() as u64 * 12 / 10;
    let mut acknowledged = vec!["ack-first".to_owned()];
    let (mut finished, mut killed) = (0, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let tag = format!("kill-{i}");
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_kaos"))
            .env_clear()
            .current_dir(dir.path())
            .args(["run", "--json", "--data-dir", "data", "--session", "s", &big(&tag, 100_000)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % span.max(1)));
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            finished += 1;
            acknowledged.push(tag);
        } else {
            killed += 1;
        }
        let tag = format!("ack-{i}");
        let next = run(dir.path(), "s", &big(&tag, 100_000));
        assert!(next.status.success(), "run after kill {i}: {}", stderr(&next));
        acknowledged.push(tag);
    }
    let stored = turns(dir.path(), "s");
    let numbers: Vec<u64> = stored.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=stored.len() as u64).collect::<Vec<_>>());
    for tag in &acknowledged {
        assert!(
            stored.iter().any(|(_, m)| m.starts_with(&format!("{tag} "))),
            "acknowledged turn {tag} lost"
        );
    }
    let in_log_killed = stored.len() - acknowledged.len();
    assert!(stray_temps(dir.path()).is_empty(), "{:?}", stray_temps(dir.path()));
    eprintln!(
        "kill loop: {KILLS} kills, {killed} killed mid-run ({in_log_killed} of them after their append), \
         {finished} finished first; {} turns stored, numbered 1..{}, every acknowledged turn found",
        stored.len(),
        stored.len()
    );
}

/// Finding 6: temp files a dead writer left next to the log and the checkpoint are removed
/// by the next repair or checkpoint.
#[test]
fn temp_files_of_a_dead_writer_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), "s", "m1").status.success());
    // A pid that is no running process.
    let dead = (400_000..4_000_000).find(|pid| !Path::new(&format!("/proc/{pid}")).exists()).unwrap();
    let session = dir.path().join("data/sessions/s");
    for name in [format!(".turns.jsonl.kaos-tmp-{dead}-0"), format!(".checkpoint.json.kaos-tmp-{dead}-3")] {
        std::fs::write(session.join(name), vec![b'x'; 1 << 20]).unwrap();
    }
    let mut log = std::fs::read(log_path(dir.path(), "s")).unwrap();
    log.extend_from_slice(b"{\"torn");
    std::fs::write(log_path(dir.path(), "s"), &log).unwrap();
    let output = run(dir.path(), "s", "m2");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!session.join(format!(".turns.jsonl.kaos-tmp-{dead}-0")).exists(), "the log's temp file stayed");
    // The checkpoint's temp files go with the next checkpoint.
    session_with_checkpoint(dir.path(), "s", 4);
    assert!(stray_temps(dir.path()).is_empty(), "{:?}", stray_temps(dir.path()));
}

/// The corruption matrix over the log and the checkpoint: each damage either repairs (a torn
/// tail), is ignored with a warning (a checkpoint that does not fit the log), or is a typed
/// error that changes nothing; in every case the next turn's number and memory are right.
#[test]
fn corruption_matrix_over_log_and_checkpoint() {
    let base = tempfile::tempdir().unwrap();
    let log = session_with_checkpoint(base.path(), "s", 4);
    session_with_checkpoint(base.path(), "other", 4);
    let ends = line_ends(&log);
    let good_checkpoint = std::fs::read(checkpoint_path(base.path(), "s")).unwrap();
    let covered = checkpoint(base.path(), "s");

    enum Expect {
        /// The next turn succeeds as turn `.0`, saying `.1` on stderr (empty: nothing needed).
        Turn(u64, &'static str),
        /// The next turn fails with this on stderr and the log is unchanged.
        Corrupt(&'static str),
    }
    type Damage = Box<dyn Fn(&Path)>;
    let log_file = |f: fn(&[u8]) -> Vec<u8>| -> Damage {
        Box::new(move |dir: &Path| {
            let path = log_path(dir, "s");
            std::fs::write(&path, f(&std::fs::read(&path).unwrap())).unwrap();
        })
    };
    let set_checkpoint = |f: Box<dyn Fn(&mut Value)>| -> Damage {
        Box::new(move |dir: &Path| {
            let mut c = checkpoint(dir, "s");
            f(&mut c);
            std::fs::write(checkpoint_path(dir, "s"), serde_json::to_vec(&c).unwrap()).unwrap();
        })
    };
    let second_end = ends[1];
    let covered_turn = covered["turn"].as_u64().unwrap();
    assert!(covered_turn >= 2, "checkpoint at turn {covered_turn}");
    let before_checkpoint = ends[covered_turn as usize - 2];
    let cases: Vec<(&str, Damage, Expect)> = vec![
        (
            "torn tail",
            log_file(|l| [l, b"{\"v\":2,\"turn\":5,\"run".as_slice()].concat()),
            Expect::Turn(5, "torn"),
        ),
        (
            "torn invalid UTF-8 tail",
            log_file(|l| [l, b"\xff\xfe\xfd".as_slice()].concat()),
            Expect::Turn(5, "torn"),
        ),
        ("garbage last line", log_file(|l| [l, b"garbage\n".as_slice()].concat()), Expect::Corrupt("line 5")),
        (
            "invalid UTF-8 line in the middle",
            Box::new(move |dir: &Path| {
                let path = log_path(dir, "s");
                let l = std::fs::read(&path).unwrap();
                std::fs::write(
                    &path,
                    [&l[..second_end], b"\xff\xfe\n".as_slice(), &l[second_end..]].concat(),
                )
                .unwrap();
            }),
            Expect::Corrupt("line 3"),
        ),
        (
            "log lost its tail (checkpoint ahead)",
            Box::new(move |dir: &Path| {
                let path = log_path(dir, "s");
                let l = std::fs::read(&path).unwrap();
                std::fs::write(&path, &l[..before_checkpoint]).unwrap();
            }),
            Expect::Turn(covered_turn, "ignored the checkpoint"),
        ),
        (
            "checkpoint past EOF",
            set_checkpoint(Box::new(|c| {
                c["log_offset"] = (c["log_offset"].as_u64().unwrap() + 10_000_000).into()
            })),
            Expect::Turn(5, "ignored the checkpoint"),
        ),
        (
            "checkpoint inside a line",
            set_checkpoint(Box::new(|c| c["log_offset"] = (c["log_offset"].as_u64().unwrap() - 7).into())),
            Expect::Turn(5, "ignored the checkpoint"),
        ),
        (
            "checkpoint naming the wrong turn",
            set_checkpoint(Box::new(|c| c["turn"] = (c["turn"].as_u64().unwrap() + 1).into())),
            Expect::Turn(5, "ignored the checkpoint"),
        ),
        (
            "checkpoint behind the log (an older one)",
            {
                let older = good_checkpoint.clone();
                Box::new(move |dir: &Path| std::fs::write(checkpoint_path(dir, "s"), &older).unwrap())
            },
            Expect::Turn(5, ""),
        ),
        (
            "checkpoint copied from another session",
            Box::new(|dir: &Path| {
                std::fs::copy(checkpoint_path(dir, "other"), checkpoint_path(dir, "s")).map(drop).unwrap()
            }),
            Expect::Turn(5, "ignored the checkpoint"),
        ),
        (
            "checkpoint copied from another session, its session name removed",
            Box::new(|dir: &Path| {
                let mut c = checkpoint(dir, "other");
                c.as_object_mut().unwrap().remove("session");
                std::fs::write(checkpoint_path(dir, "s"), serde_json::to_vec(&c).unwrap()).unwrap();
            }),
            Expect::Turn(5, "ignored the checkpoint"),
        ),
        (
            "garbage checkpoint",
            Box::new(|dir: &Path| std::fs::write(checkpoint_path(dir, "s"), b"\xff{garbage").unwrap()),
            Expect::Turn(5, "ignored an unreadable checkpoint"),
        ),
        (
            "checkpoint symlinked to another session's",
            Box::new(|dir: &Path| {
                std::fs::remove_file(checkpoint_path(dir, "s")).unwrap();
                std::os::unix::fs::symlink(checkpoint_path(dir, "other"), checkpoint_path(dir, "s")).unwrap();
            }),
            Expect::Turn(5, ""),
        ),
        (
            "log symlinked outside",
            Box::new(|dir: &Path| {
                let outside = dir.join("outside.jsonl");
                std::fs::rename(log_path(dir, "s"), &outside).unwrap();
                std::os::unix::fs::symlink(&outside, log_path(dir, "s")).unwrap();
            }),
            Expect::Corrupt("cannot be stored"),
        ),
    ];
    // What the next turn's memory holds when nothing is damaged.
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&base.path().join("data"), &dir.path().join("data"));
        let output = run(dir.path(), "s", "next");
        assert!(output.status.success(), "{}", stderr(&output));
        // An undamaged checkpoint is used: nothing is ignored or repaired.
        assert!(!stderr(&output).contains("kaos: session s:"), "{}", stderr(&output));
        seen(&output)
    };
    for (name, damage, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&base.path().join("data"), &dir.path().join("data"));
        damage(dir.path());
        let before = std::fs::read(log_path(dir.path(), "s")).ok();
        let output = run(dir.path(), "s", "next");
        match expect {
            Expect::Turn(turn, says) => {
                assert!(output.status.success(), "{name}: {}", stderr(&output));
                if says.is_empty() {
                    assert!(!stderr(&output).contains("kaos: session s:"), "{name}: {}", stderr(&output));
                }
                assert!(stderr(&output).contains(says), "{name}: {}", stderr(&output));
                assert_eq!(stdout_json(&output)["turn_number"].as_u64(), Some(turn), "{name}");
                if turn == 5 {
                    assert_eq!(seen(&output), reference, "{name}: the memory is wrong");
                }
                let numbers: Vec<u64> = turns(dir.path(), "s").into_iter().map(|(n, _)| n).collect();
                assert_eq!(numbers, (1..=turn).collect::<Vec<_>>(), "{name}");
            }
            Expect::Corrupt(says) => {
                assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
                assert!(stderr(&output).contains(says), "{name}: {}", stderr(&output));
                assert_eq!(std::fs::read(log_path(dir.path(), "s")).ok(), before, "{name}: the log changed");
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Concurrent writers from several processes on one session: every turn stored once,
/// numbered 1..N, and each answer's memory counts every turn before it.
#[test]
fn concurrent_writers_from_several_processes() {
    const PROCESSES: usize = 4;
    const TURNS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let writers: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let path = path.clone();
            std::thread::spawn(move || {
                for t in 0..TURNS {
                    let output = run(&path, "shared", &format!("p{p}-t{t}"));
                    assert!(output.status.success(), "{}", stderr(&output));
                    let turn = stdout_json(&output)["turn_number"].as_u64().unwrap();
                    assert_eq!(seen(&output), turn, "p{p}-t{t}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let stored = turns(dir.path(), "shared");
    let numbers: Vec<u64> = stored.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=(PROCESSES * TURNS) as u64).collect::<Vec<_>>());
    for p in 0..PROCESSES {
        for t in 0..TURNS {
            let tag = format!("p{p}-t{t}");
            assert_eq!(stored.iter().filter(|(_, m)| *m == tag).count(), 1, "{tag}");
        }
    }
}

/// Hostile session ids are refused with a clear error and nothing is written outside the
/// data directory; odd but valid ones stay inside it.
#[test]
fn hostile_session_ids_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(300);
    for id in [
        "../escape",
        "a/b",
        "..",
        ".",
        "",
        " ",
        "a\\b",
        "/abs",
        ".locks",
        "con:1",
        long.as_str(),
        "é\u{202e}",
    ] {
        let output = kaos(dir.path())
            .args(["run", "--data-dir", "data", &format!("--session={id}"), "hi"])
            .output()
            .unwrap();
        if output.status.success() {
            let file = dir.path().join("data/sessions").join(id).join("turns.jsonl");
            assert!(file.is_file() && file.starts_with(dir.path().join("data/sessions")), "{id:?}");
        } else {
            assert_eq!(output.status.code(), Some(1), "{id:?}: {}", stderr(&output));
            assert!(stderr(&output).contains("invalid session id"), "{id:?}: {}", stderr(&output));
        }
        let valid = output.status.success();
        for command in [["sessions", "show"], ["sessions", "export"], ["sessions", "rm"]] {
            let output =
                kaos(dir.path()).args(command).args(["--data-dir", "data", "--", id]).output().unwrap();
            assert_eq!(output.status.success(), valid, "{command:?} {id:?}: {}", stderr(&output));
            assert_ne!(output.status.code(), Some(101), "{command:?} {id:?}: panicked");
        }
    }
    let outside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("data")], "written outside the data directory");
    // A data directory path through a symlink is resolved once; the session stays inside it.
    std::os::unix::fs::symlink(dir.path().join("data"), dir.path().join("link")).unwrap();
    let output =
        kaos(dir.path()).args(["run", "--data-dir", "link", "--session", "via-link", "hi"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("data/sessions/via-link/turns.jsonl").is_file());
}

/// Durable mode is reachable from the flag, the environment and the settings listing, and a
/// bad value is an error naming the setting.
#[test]
fn durable_mode_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        kaos(dir.path()).args(["run", "--sync", "always", "--data-dir", "data", "hi"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = kaos(dir.path()).env("KAOS_VFS_SYNC", "always").args(["config", "show"]).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("vfs.sync = always\t(environment variable KAOS_VFS_SYNC)"), "{text}");
    let bad = kaos(dir.path()).env("KAOS_VFS_SYNC", "sometimes").args(["run", "hi"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("vfs.sync"), "{}", stderr(&bad));
    let flag = kaos(dir.path()).args(["run", "--sync", "sometimes", "hi"]).output().unwrap();
    assert_eq!(flag.status.code(), Some(2));
}
