//! The shell samples of the pages that show the `kaos` command (the CLI reference and tutorial,
//! the documents page, the README), extracted from the Markdown
//! and run with the real binary (offline, in a fresh directory per page, one after another),
//! their output compared with what the page shows.
//!
//! The conventions a page follows (also in `docs/README.md`):
//! - Every line of a ` ```sh ` block is a command, run by `sh -c` (so pipes, redirections and
//!   `VAR=value` prefixes work); `# …` ends a line with a comment; `# exit N` in that comment
//!   is the exit code the command must end with. `cargo …`, `curl …` and `kaos serve` (which
//!   serves until stopped) are not run. No command may end in a usage error (exit 2) or crash.
//! - A ` ```json ` or ` ```text ` block that follows a ` ```sh ` block with nothing but blank
//!   lines between is the stdout of that block's **last** command (a command that shows its
//!   stderr says `2>&1`): a `json` block is compared as JSON (key order and layout do not
//!   matter), a `text` block line by line. That command must exit 0 unless its comment says
//!   otherwise. Anything else between the blocks (a sentence) makes the second one an
//!   illustration that is not compared.
//! - In an output block, `…` stands for what differs from run to run (ids, timings, paths,
//!   versions): inside a line it matches any text on that line, and a line holding only `…`
//!   matches any number of lines. snapbox's own `[..]` and `...` work too, and in JSON a
//!   `"{...}"` value matches any value.
//! - `<!-- file: NAME -->` on the line before a fenced block writes that block to `NAME` in the
//!   page's directory (an agent file the samples use), before the next command runs.
//!
//! The matching is snapbox's (the engine of trycmd): trycmd itself reads Markdown, but runs
//! each command without a shell (no pipes, redirections or environment prefixes, which these
//! pages show), wants each command's output inside its own block (a `$ ` transcript rather
//! than the ` ```sh ` samples a reader copies), and mixes stderr into it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use snapbox::data::DataFormat;
use snapbox::{Assert, Data};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One command line of a page.
#[derive(Debug)]
struct Sample {
    /// Where it is: `page:line`.
    at: String,
    command: String,
    /// The exit code its comment names (`# exit 4`).
    exit: Option<i32>,
    /// The output block that follows it, when it is its block's last command.
    output: Option<Expected>,
}

#[derive(Debug)]
struct Expected {
    at: String,
    json: bool,
    text: String,
}

/// What a page asks for, in order.
#[derive(Debug)]
enum Step {
    Run(Sample),
    Write { name: String, contents: String },
}

/// A fenced block of a page: its info string, first line number and contents.
struct Fence {
    info: String,
    line: usize,
    body: Vec<String>,
    /// `<!-- file: NAME -->` right before it.
    file: Option<String>,
    /// Only blank lines since the previous fence closed.
    adjacent: bool,
}

fn fences(page: &str) -> Vec<Fence> {
    let mut found = Vec::new();
    let mut open: Option<Fence> = None;
    let mut file = None;
    let mut adjacent = false;
    for (index, line) in page.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(mut fence) = open.take() {
            if trimmed.starts_with("```") {
                found.push(fence);
                adjacent = true;
            } else {
                fence.body.push(line.to_owned());
                open = Some(fence);
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            open = Some(Fence {
                info: info.trim().to_owned(),
                line: index + 1,
                body: Vec::new(),
                file: file.take(),
                adjacent,
            });
        } else if let Some(name) =
            trimmed.strip_prefix("<!-- file:").and_then(|rest| rest.strip_suffix("-->"))
        {
            file = Some(name.trim().to_owned());
        } else if !trimmed.is_empty() {
            adjacent = false;
            file = None;
        }
    }
    found
}

/// Splits a sample line into its command and its comment (` # …` outside quotes).
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        match (quote, byte) {
            (None, b'\'' | b'"') => quote = Some(byte),
            (Some(open), _) if open == byte => quote = None,
            (None, b'#') if at == 0 || bytes[at - 1].is_ascii_whitespace() => {
                return (&line[..at], &line[at + 1..]);
            }
            _ => {}
        }
    }
    (line, "")
}

fn steps(name: &str, page: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let fences = fences(page);
    for (index, fence) in fences.iter().enumerate() {
        if let Some(file) = &fence.file {
            let mut contents = fence.body.join("\n");
            contents.push('\n');
            steps.push(Step::Write { name: file.clone(), contents });
        }
        if fence.info != "sh" {
            continue;
        }
        let mut samples = Vec::new();
        let mut pending = String::new();
        let mut start = 0;
        for (offset, line) in fence.body.iter().enumerate() {
            let (code, comment) = split_comment(line);
            let code = code.trim_end();
            if pending.is_empty() {
                start = offset;
            }
            if let Some(head) = code.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(code);
            let command = std::mem::take(&mut pending).trim().to_owned();
            if command.is_empty() {
                continue;
            }
            let exit = comment
                .split([';', ','])
                .find_map(|part| part.trim().strip_prefix("exit ")?.trim().parse().ok());
            let at = format!("{name}:{}", fence.line + 1 + start);
            samples.push(Sample { at, command, exit, output: None });
        }
        if let (Some(next), Some(last)) = (fences.get(index + 1), samples.last_mut())
            && next.adjacent
            && (next.info == "json" || next.info == "text")
        {
            let mut text = next.body.join("\n");
            text.push('\n');
            last.output =
                Some(Expected { at: format!("{name}:{}", next.line), json: next.info == "json", text });
        }
        steps.extend(samples.into_iter().map(Step::Run));
    }
    steps
}

/// The page's `…` placeholders as snapbox's wildcards.
fn pattern(shown: &str) -> String {
    shown
        .lines()
        .map(|line| if line.trim() == "…" { "...".to_owned() } else { line.replace('…', "[..]") })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn is_run(command: &str) -> bool {
    // The program, after any `VAR=value` prefixes.
    let program = command.split_whitespace().find(|word| !word.contains('=')).unwrap_or_default();
    !(program == "cargo" || program == "curl" || command.contains("kaos serve"))
}

/// Runs a page's samples; returns each command run with its exit code, and every mismatch.
fn run_page(page: &str, setup: impl FnOnce(&Path)) -> (Vec<(String, Option<i32>)>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join(page)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let bin = Path::new(env!("CARGO_BIN_EXE_kaos")).parent().unwrap().to_owned();
    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for step in steps(page, &text) {
        let sample = match step {
            Step::Write { name, contents } => {
                std::fs::write(dir.path().join(name), contents).unwrap();
                continue;
            }
            Step::Run(sample) if is_run(&sample.command) => sample,
            Step::Run(_) => continue,
        };
        let Sample { at, command, exit, output } = sample;
        assert!(
            command.contains("kaos ")
                || ["echo ", "cat ", "printf "].iter().any(|start| command.starts_with(start)),
            "{at}: `{command}` is not a kaos command"
        );
        let result = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let code = result.status.code();
        let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert_ne!(code, Some(2), "{at}: `{command}` is a usage error: {stderr}");
        assert!(code.is_some() && !stderr.contains("panicked"), "{at}: `{command}` crashed: {stderr}");
        let wanted = exit.or(output.as_ref().map(|_| 0));
        if let Some(wanted) = wanted
            && code != Some(wanted)
        {
            failures.push(format!("{at}: `{command}` exited with {code:?}, not {wanted}: {stderr}"));
        }
        if let Some(expected) = output {
            let (actual, shown) = if expected.json {
                (
                    Data::text(stdout).is(DataFormat::Json),
                    Data::text(pattern(&expected.text)).is(DataFormat::Json),
                )
            } else {
                (Data::text(stdout), Data::text(pattern(&expected.text)))
            };
            let name = format!("the output of `{command}` ({at}) against {}", expected.at);
            if let Err(error) = Assert::new().try_eq(Some(&name), actual, shown) {
                failures.push(format!("{name}:\n{error}"));
            }
        }
        ran.push((command, code));
    }
    (ran, failures)
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} sample(s) differ from their page:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_page_conventions_are_read_as_documented() {
    let page = "Intro\n\n<!-- file: a.toml -->\n```toml\nname = \"a\"\n```\n\n```sh\nkaos one # exit 4\n\
                echo 'a # b' \\\n  | kaos two   # note, exit 1\n```\n\n```json\n{\"a\": \"…\"}\n```\n\n\
                ```sh\nkaos three\n```\nSaid:\n```text\nnot compared\n```\n";
    let steps = steps("p.md", page);
    let described: Vec<String> = steps
        .iter()
        .map(|step| match step {
            Step::Write { name, contents } => format!("write {name}: {contents}"),
            Step::Run(s) => format!(
                "{} `{}` {:?} {:?}",
                s.at,
                s.command,
                s.exit,
                s.output.as_ref().map(|o| (&o.at, o.json, &o.text))
            ),
        })
        .collect();
    assert_eq!(
        described,
        [
            "write a.toml: name = \"a\"\n",
            "p.md:9 `kaos one` Some(4) None",
            "p.md:10 `echo 'a # b'   | kaos two` Some(1) Some((\"p.md:14\", true, \"{\\\"a\\\": \\\"…\\\"}\\n\"))",
            "p.md:19 `kaos three` None None",
        ]
    );
    assert_eq!(pattern("a … b\n…\nc\n"), "a [..] b\n...\nc\n");
}

#[test]
fn every_shell_sample_of_the_cli_reference_runs_and_shows_its_output() {
    let (ran, failures) = run_page("docs/reference/cli.md", |_| {});
    assert_no_failures(&failures);
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
fn every_shell_sample_of_the_tutorial_runs_and_shows_its_output() {
    let (ran, failures) = run_page("docs/tutorials/the-kaos-command.md", |_| {});
    assert_no_failures(&failures);
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

/// The documents page runs its samples in a copy of the repository's `examples/`.
#[test]
fn every_shell_sample_of_the_documents_page_runs_and_shows_its_output() {
    let (ran, failures) = run_page("docs/concepts/documents.md", |dir| {
        std::fs::create_dir_all(dir.join("examples/data")).unwrap();
        for file in ["research.toml", "data/bridge-history.md", "data/ferry-notes.txt", "data/tolls.csv"] {
            std::fs::copy(repo().join("examples").join(file), dir.join("examples").join(file)).unwrap();
        }
    });
    assert_no_failures(&failures);
    assert!(ran.len() >= 2, "{ran:?}");
}

/// The README's `kaos` lines (the rest of its samples are `cargo` commands).
#[test]
fn every_shell_sample_of_the_readme_runs() {
    let (ran, failures) = run_page("README.md", |_| {});
    assert_no_failures(&failures);
    assert!(ran.iter().any(|(sample, code)| sample == "kaos chat" && *code == Some(0)), "{ran:?}");
}
