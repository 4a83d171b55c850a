//! `cargo xtask`: the project's automation, written in Rust so it runs the same everywhere.
//!
//! Every command prints what it runs (`$ cargo …`) to stderr, passes the tools' output
//! through, stops at the first failure and exits non-zero with a message saying what failed.

mod bench;
mod ci;
mod codegen;
mod features;
mod modules;
mod package;
mod tidy;
mod user_crate;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci               everything CI runs, in order, stopping at the first failure:
                   cargo fmt --all --check
                   cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
                   cargo xtask tidy
                   cargo xtask codegen --check
                   cargo xtask features
                   cargo xtask package (every published crate checked from its .crate)
                   tests/mcp/install.sh (the pinned MCP interop packages, from npm)
                   cargo test --workspace --all-targets --all-features --locked
                   cargo test --workspace --doc --all-features --locked
                   every example, its output checked
                   cargo xtask user-crate
                   the crates under examples/crates (a user's VFS backend and provider):
                   fmt and tests, in this workspace's target directory
  user-crate       build and run the Rust samples marked <!-- user-crate --> (README, tutorials)
                   in a fresh crate under target/user-crate, outside the workspace, with only
                   the README's [dependencies] block (the workspace's lockfile and target dir)
  tidy             check the architecture invariants over `cargo metadata`: crate layering,
                   no async/IO crate under kaos-agent or kaos-ingest, HTTP clients only in
                   kaos-providers, #![deny(missing_docs)] and workspace lints everywhere, and
                   the module layers inside kaos-runner (no upward import, no cycle)
  codegen [--check]
                   write the generated files (schemas/agent.schema.json, the JSON Schema
                   of agent files); with --check, fail if a checked-in copy is stale
  features         cargo check kaos-runner with no provider feature, each provider feature
                   alone (openai, anthropic, gemini, openai-compatible), and all of them;
                   kaos-cli with no default feature
  package [--full] cargo package every published crate, then verify each from its .crate
                   alone (nothing may reach outside its crate): every target checked and
                   the doctests' includes resolved; with --full, every test and doctest
                   built and run instead (it builds every crate in full a second time)
  bench [ARGS]     run the criterion benchmarks and print one JSON line per benchmark
                   ({\"bench\",\"median_ns\",\"mean_ns\",\"unit\"}) on stdout; ARGS (e.g. a
                   filter) are passed to criterion
  help             this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    match command {
        "ci" => {
            no_args("ci", rest)?;
            ci::run()
        }
        "tidy" => {
            no_args("tidy", rest)?;
            tidy::run()
        }
        "codegen" => match rest {
            [] => codegen::run(false),
            [flag] if flag == "--check" => codegen::run(true),
            [arg, ..] => bail!("`cargo xtask codegen` takes only `--check`, got `{arg}`\n\n{USAGE}"),
        },
        "package" => match rest {
            [] => package::run(package::Verify::Check),
            [flag] if flag == "--full" => package::run(package::Verify::Full),
            [arg, ..] => bail!("`cargo xtask package` takes only `--full`, got `{arg}`\n\n{USAGE}"),
        },
        "user-crate" => {
            no_args("user-crate", rest)?;
            user_crate::run()
        }
        "features" => {
            no_args("features", rest)?;
            features::run()
        }
        "bench" => bench::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn no_args(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => bail!("`cargo xtask {command}` takes no arguments, got `{arg}`\n\n{USAGE}"),
    }
}

/// The workspace root: xtask lives at `<root>/xtask`. `cargo run` says where at run time,
/// which matters when several worktrees share one target directory (the binary may have
/// been built from another worktree); the build-time path is the fallback.
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// A cargo invocation run from the workspace root with the cargo that runs xtask.
#[derive(Debug)]
struct Cargo {
    args: Vec<String>,
    stdout_to_stderr: bool,
    envs: Vec<(String, std::ffi::OsString)>,
}

impl Cargo {
    fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cargo { args: args.into_iter().map(Into::into).collect(), stdout_to_stderr: false, envs: Vec::new() }
    }

    /// Sets an environment variable for the command.
    fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.envs.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Appends more arguments.
    fn args(mut self, args: &[String]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Sends the command's stdout to our stderr, keeping our stdout for machine-readable output.
    fn stdout_to_stderr(mut self) -> Self {
        self.stdout_to_stderr = true;
        self
    }

    /// Runs the command, output passed through; fails unless it exits successfully.
    fn run(&self) -> Result<()> {
        let mut command = self.command();
        if self.stdout_to_stderr {
            command.stdout(Stdio::from(std::io::stderr()));
        }
        let status = command.status().with_context(|| format!("cannot start `{self}`"))?;
        if !status.success() {
            bail!("`{self}` failed ({status})");
        }
        Ok(())
    }

    /// Runs the command and returns its stdout (stderr passes through).
    fn stdout(&self) -> Result<Vec<u8>> {
        let output = self
            .command()
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot start `{self}`"))?;
        if !output.status.success() {
            bail!("`{self}` failed ({})", output.status);
        }
        Ok(output.stdout)
    }

    fn command(&self) -> Command {
        eprintln!("$ {self}");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut command = Command::new(cargo);
        command.args(&self.args).current_dir(workspace_root());
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        command
    }
}

impl std::fmt::Display for Cargo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = String::from("cargo");
        for arg in &self.args {
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                write!(line, " '{arg}'")?;
            } else {
                write!(line, " {arg}")?;
            }
        }
        f.write_str(&line)
    }
}
