//! `cargo xtask ci`: everything CI runs, in the order a failure is cheapest to find.

use anyhow::{Context as _, Result, bail};

use crate::{Cargo, codegen, features, package, tidy};

/// Runs format check, clippy, tidy, the codegen check, the feature matrix, the package check,
/// the install of the MCP interop packages, of the S3 test server, of the A2A Python SDK and of
/// Chromium, the whole test suite with every feature on (so each vendor's wire tests and the
/// MCP and A2A interop tests run), the examples, the user-crate samples and the example crates;
/// stops at the first failure.
pub(crate) fn run() -> Result<()> {
    Cargo::new(["fmt", "--all", "--check"]).run()?;
    Cargo::new([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])
    .run()?;
    eprintln!("$ cargo xtask tidy");
    tidy::run()?;
    eprintln!("$ cargo xtask codegen --check");
    codegen::run(true)?;
    eprintln!("$ cargo xtask features");
    features::run()?;
    // After clippy, whose checked dependencies it shares.
    eprintln!("$ cargo xtask package");
    package::run(package::Verify::Check)?;
    install_mcp_packages()?;
    install_s3_server()?;
    install_a2a_sdk()?;
    install_chromium()?;
    // The stdio interop test starts the example's binary as the server; `cargo test` builds
    // examples but does not put them at their plain path.
    Cargo::new(["build", "-p", "kaos-server", "--all-features", "--example", "mcp_serve", "--locked"])
        .run()?;
    Cargo::new(["test", "--workspace", "--all-targets", "--all-features", "--locked"]).run()?;
    Cargo::new(["test", "--workspace", "--doc", "--all-features", "--locked"]).run()?;
    examples()?;
    // The samples a user pastes into their own crate, in a fresh crate outside the workspace.
    eprintln!("$ cargo xtask user-crate");
    crate::user_crate::run()?;
    example_crates()?;
    semver()?;
    eprintln!("ci: all checks passed");
    Ok(())
}

/// The crates under `examples/crates/` (a SQLite VFS backend, an Ollama provider), built as a
/// user's crates would be: their own workspace and lock file, the KAOS crates by path. Format
/// and tests, in this workspace's target directory so the KAOS crates and dependencies
/// they share with it are not compiled twice.
fn example_crates() -> Result<()> {
    let manifest = crate::workspace_root().join("examples/crates/Cargo.toml");
    let manifest = manifest.to_str().context("the workspace path is not UTF-8")?.to_owned();
    let target = crate::package::target_directory()?;
    let in_examples = |args: &[&str]| {
        let mut cargo = Cargo::new(args.iter().copied()).env("CARGO_TARGET_DIR", &target);
        cargo = cargo.args(&["--manifest-path".to_owned(), manifest.clone()]);
        cargo
    };
    in_examples(&["fmt", "--all", "--check"]).run()?;
    // No clippy here: it would check every KAOS crate again under the examples' features
    // (80 s on the CI machine); the tests build them once.
    in_examples(&["test", "--workspace", "--locked"]).run().context(
        "the example crates failed; if `--locked` refused their lock file because a KAOS crate's \
         dependencies changed, refresh it with `cargo update --workspace --manifest-path \
         examples/crates/Cargo.toml` and commit it",
    )
}

/// `cargo-semver-checks` against the last tagged release (`v*`): skipped, saying so, while
/// there is none.
fn semver() -> Result<()> {
    let output = std::process::Command::new("git")
        .args(["tag", "--list", "v*", "--sort=-v:refname"])
        .current_dir(crate::workspace_root())
        .output()
        .context("cannot run git")?;
    if !output.status.success() {
        bail!("`git tag --list` failed ({})", output.status);
    }
    let tags = String::from_utf8_lossy(&output.stdout);
    let Some(last) = tags.lines().next() else {
        eprintln!("semver: skipped, no tagged release (v*) to compare with yet");
        return Ok(());
    };
    eprintln!("$ cargo semver-checks check-release --workspace --baseline-rev {last}");
    Cargo::new(["semver-checks", "check-release", "--workspace", "--baseline-rev", last]).run().context(
        "cargo-semver-checks failed or is not installed (`cargo install --locked cargo-semver-checks`)",
    )
}

/// The MCP side (kaos-tools' `mcp` feature, kaos-server, `kaos serve`): lints, unit and doc tests, then the
/// interop tests against the pinned npm packages, installed first by the project's own script
/// (CI starts from a fresh clone with no `node_modules`).
fn install_mcp_packages() -> Result<()> {
    // The MCP interop tests drive pinned npm packages; CI starts from a fresh clone.
    let install = crate::workspace_root().join("tests/mcp/install.sh");
    eprintln!("$ bash {}", install.display());
    let status = std::process::Command::new("bash").arg(&install).status().context("cannot run bash")?;
    if !status.success() {
        bail!("{} failed ({status}); it needs node >= 20 and npm", install.display());
    }
    Ok(())
}

/// Debian's Chromium, which kaos-server's browser test drives headless over the DevTools
/// Protocol; without it that test fails rather than skips.
fn install_chromium() -> Result<()> {
    let install = crate::workspace_root().join("tests/browser/install.sh");
    eprintln!("$ bash {}", install.display());
    let status = std::process::Command::new("bash").arg(&install).status().context("cannot run bash")?;
    if !status.success() {
        bail!("{} failed ({status}); it needs apt-get (Debian) and root or sudo", install.display());
    }
    Ok(())
}

/// The S3-compatible server (moto, pinned in tests/s3/requirements.txt) that the object-store
/// conformance tests, the multi-process scale-out test and the object_store bench start on
/// loopback; without it those tests fail rather than skip.
fn install_s3_server() -> Result<()> {
    let install = crate::workspace_root().join("tests/s3/install.sh");
    eprintln!("$ bash {}", install.display());
    let status = std::process::Command::new("bash").arg(&install).status().context("cannot run bash")?;
    if !status.success() {
        bail!("{} failed ({status}); it needs python3 with pip", install.display());
    }
    Ok(())
}

/// The official A2A Python SDK (a2a-sdk, pinned in tests/a2a/requirements.txt) whose client
/// drives `kaos serve --http` in the A2A interop test (kaos-cli/tests/cli/a2a.rs); without it
/// that test fails rather than skips.
fn install_a2a_sdk() -> Result<()> {
    let install = crate::workspace_root().join("tests/a2a/install.sh");
    eprintln!("$ bash {}", install.display());
    let status = std::process::Command::new("bash").arg(&install).status().context("cannot run bash")?;
    if !status.success() {
        bail!("{} failed ({status}); it needs python3 (>= 3.10) with pip", install.display());
    }
    Ok(())
}

/// One run of an example and lines its output must contain.
struct ExampleRun {
    package: &'static str,
    example: &'static str,
    /// Arguments; `{dir}` is replaced by a fresh temporary directory shared by the runs of
    /// one [`EXAMPLES`] entry.
    args: &'static [&'static str],
    expect: &'static [&'static str],
}

/// Every example is run in CI and checked against what its docs promise. An entry is a
/// sequence of runs sharing one temporary directory (e.g. a second process continuing a
/// session on disk).
const EXAMPLES: &[&[ExampleRun]] = &[
    &[ExampleRun {
        package: "kaos-runner",
        example: "first_agent",
        args: &[],
        expect: &["turn 1: saw 1 user message(s)", "turn 2: saw 2 user message(s)", "cost: $0.0000"],
    }],
    &[
        ExampleRun {
            package: "kaos-runner",
            example: "first_agent",
            args: &["--data-dir", "{dir}"],
            expect: &["turn 1: saw 1 user message(s)", "turn 2: saw 2 user message(s)"],
        },
        ExampleRun {
            package: "kaos-runner",
            example: "first_agent",
            args: &["--data-dir", "{dir}"],
            expect: &["turn 3: saw 3 user message(s)", "turn 4: saw 4 user message(s)", "cost: $0.0000"],
        },
    ],
    &[ExampleRun {
        package: "kaos-runner",
        example: "research",
        args: &[],
        expect: &[
            "The Harbour Bridge opened in 1932.",
            "- \"opened in 1932 after six years of construction\" (bridge.md)",
            "I cannot answer this from the documents:",
            "(stop: EvidenceInsufficient)",
            "cost: $0.0020",
        ],
    }],
    &[ExampleRun {
        package: "kaos-runner",
        example: "findings",
        args: &[],
        expect: &[
            "cats.md: refused the document (not_relevant_enough)",
            "tolls.md: kept \"Tolls paid for the bridge.\"",
            "bridge.md: kept \"The bridge opened in 1932.\"",
            "bridge.md: refused \"Tolls paid for the bridge.\" (duplicate)",
            "bridge.md: refused \"It was painted pink.\" (unverified_quote)",
            "archive.md: refused the document (document_token_cap)",
            "The Harbour Bridge opened in 1932; tolls introduced that year paid for it.",
            "- \"opened in 1932 after six years of construction\" (bridge.md)",
            "(stop: Completed)",
            "cost: $0.0040",
        ],
    }],
    &[ExampleRun {
        package: "kaos-runner",
        example: "plan",
        args: &[],
        expect: &[
            "plan (revision 1):",
            "  2. Count their words with word_count",
            "plan.step.2 [done]: 10 words",
            "plan.step.3 [failed]: the previous notes are not available",
            "replan (revision 2, step 3 failed: the previous notes are not available):",
            "plan.step.4 [done]:",
            "answer: This release (10 words of notes) brings faster startup",
            "(stop: Completed, model calls: 8)",
            "cost: $0.0080",
        ],
    }],
    &[ExampleRun {
        package: "kaos-runner",
        example: "team",
        args: &[],
        expect: &[
            "The writer says:",
            "no data races",
            "delegated: writer",
            "cost: $0.0015 (coordinator and writer)",
        ],
    }],
    &[ExampleRun {
        package: "kaos-runner",
        example: "router",
        args: &[],
        expect: &[
            "routed to chat (no keyword matched)",
            "routed to research (keyword \"bridge\")",
            "routed to research (scripted)",
            "- \"opened in 1932\" (bridge.md)",
            "cost: $0.0062",
        ],
    }],
    &[ExampleRun {
        package: "kaos-runner",
        example: "handoff",
        args: &[],
        expect: &[
            "(handoff_to_billing)",
            "[billing] Billing here: invoice #42 is paid, nothing is due.",
            "(handoff_to_triage)",
            "[triage] Triage here.",
            "cost: $0.0025",
        ],
    }],
];

fn examples() -> Result<()> {
    for (i, runs) in EXAMPLES.iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("kaos-xtask-example-{}-{i}", std::process::id()));
        let result = runs.iter().try_for_each(|run| run_example(run, &dir));
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    Ok(())
}

fn run_example(run: &ExampleRun, dir: &std::path::Path) -> Result<()> {
    let dir = dir.to_str().context("temporary directory is not UTF-8")?;
    let mut args = vec!["run", "--quiet", "--locked", "-p", run.package, "--example", run.example];
    if !run.args.is_empty() {
        args.push("--");
    }
    let extra: Vec<String> = run.args.iter().map(|a| a.replace("{dir}", dir)).collect();
    let mut cargo = Cargo::new(args);
    cargo = cargo.args(&extra);
    let stdout = String::from_utf8(cargo.stdout()?).context("example output is not UTF-8")?;
    eprint!("{stdout}");
    for line in run.expect {
        if !stdout.contains(line) {
            bail!("example `{}` did not print {line:?}", run.example);
        }
    }
    Ok(())
}
