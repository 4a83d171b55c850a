//! The shell samples of `docs/reference/cli.md` and `docs/tutorials/the-kaos-command.md`,
//! extracted from the Markdown and run with the real binary (offline, in a fresh directory
//! per page, one after another): every documented command and option must exist — no sample
//! may end in a usage error (exit 2) — and a sample may not crash. `cargo …` lines (building
//! and installing) and `kaos serve` (which serves until stopped) are not run.
//!
//! Not yet: comparing each sample's output with the text or JSON block that follows it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The command lines of the page's ` ```sh ` blocks, comments removed, continuations joined.
fn shell_samples(page: &str) -> Vec<String> {
    let mut samples = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in page.lines() {
        let fence = line.trim_start();
        if fence.starts_with("```") {
            in_sh = !in_sh && fence.trim_start_matches('`').trim() == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = match line.find(" #") {
            Some(at) if !line[..at].contains('\'') || line[..at].matches('\'').count() % 2 == 0 => {
                &line[..at]
            }
            _ => line,
        };
        let code = code.trim_end();
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(code);
        let command = std::mem::take(&mut pending).trim().to_owned();
        if !command.is_empty() {
            samples.push(command);
        }
    }
    samples
}

fn run_page(page: &str) -> Vec<(String, Option<i32>)> {
    let text = std::fs::read_to_string(repo().join(page)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_kaos")).parent().unwrap().to_owned();
    let mut ran = Vec::new();
    for sample in shell_samples(&text) {
        if sample.starts_with("cargo ") || sample.contains("kaos serve") {
            continue;
        }
        assert!(
            sample.contains("kaos ") || sample.starts_with("echo ") || sample.starts_with("cat "),
            "{sample}"
        );
        let output = Command::new("sh")
            .arg("-c")
            .arg(&sample)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let code = output.status.code();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(code, Some(2), "{page}: `{sample}` is a usage error: {stderr}");
        assert!(code.is_some() && !stderr.contains("panicked"), "{page}: `{sample}` crashed: {stderr}");
        ran.push((sample, code));
    }
    ran
}

#[test]
fn every_shell_sample_of_the_cli_reference_runs() {
    let ran = run_page("docs/reference/cli.md");
    assert!(ran.len() >= 15, "{ran:?}");
    // The samples that need nothing but the offline model succeed.
    for (sample, code) in &ran {
        if sample.starts_with("kaos run --json")
            || sample.starts_with("printf")
            || sample.contains("config show")
        {
            assert_eq!(*code, Some(0), "{sample}");
        }
    }
}

#[test]
fn every_shell_sample_of_the_tutorial_runs() {
    let ran = run_page("docs/tutorials/the-kaos-command.md");
    assert!(ran.len() >= 8, "{ran:?}");
    for (sample, code) in &ran {
        if sample.starts_with("kaos run --json")
            || sample.starts_with("kaos sessions")
            || sample.starts_with("printf")
        {
            assert_eq!(*code, Some(0), "{sample}");
        }
    }
}
