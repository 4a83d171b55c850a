//! `kaos`: the KAOS command line.
//!
//! Talk to an agent (`chat`, `run`), look at what it stored (`sessions`, `vfs`), and check
//! what it would do (`tools`, `config`, `policy`). With no model configured it runs on the
//! offline `scripted:echo` model, so it works without an API key.
//!
//! Exit codes (also in `docs/reference/cli.md`): 0 success, 1 error (message on stderr),
//! 2 usage error (clap's), 3 a turn stopped by its budget, 4 a turn paused because a tool call
//! needs approval (`kaos run`, continued by `kaos resume`; `kaos chat` asks y/n and resumes),
//! 5 a turn stopped short of an answer for another reason, 130 (SIGINT, Ctrl-C) and 143
//! (SIGTERM) the command was stopped by a signal: the turn under way was stored whole or not at
//! all and the session released (a second signal quits at once).

// First: its `out!`/`outln!` macros are used by the modules below.
#[macro_use]
mod output;
mod chat;
mod commands;
mod docs;
mod interrupt;
mod setup;
mod status;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// KAOS: run an agent from the command line.
#[derive(Debug, Parser)]
#[command(
    name = "kaos",
    version,
    about = "KAOS: run an agent from the command line (offline on scripted:echo when no model is configured)",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage error, 3 budget stop, 4 approval needed \
                  (kaos resume RUN_ID --approve | --always | --deny), 5 stopped short of an answer \
                  (iteration limit, model unavailable, refusal), 130 stopped by Ctrl-C (SIGINT) \
                  or 143 by SIGTERM: the turn under way is stored whole or not at all and the \
                  session released (a second Ctrl-C quits at once).\n\
                  Docs: docs/reference/cli.md"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The agent file (TOML); the built-in default agent when absent.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) agent: Option<std::path::PathBuf>,
    /// The model, as `provider:model` (beats the agent file and KAOS_MODEL).
    #[arg(long, global = true, value_name = "PROVIDER:MODEL")]
    pub(crate) model: Option<String>,
    /// Where sessions are stored [settings: runtime.data_dir, default .kaos].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<std::path::PathBuf>,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Whether each session append is fsynced before a turn is acknowledged: `always`
    /// survives a machine crash, `never` a process crash [settings: vfs.sync, default never].
    #[arg(long, global = true, value_name = "WHEN", value_parser = ["always", "never"])]
    pub(crate) sync: Option<String>,
    /// Sets a setting (`kaos config show` lists them), e.g.
    /// `--set providers.openai_base_url=http://127.0.0.1:8080/v1` (repeatable; the highest layer).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub(crate) set: Vec<(String, String)>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Talk with the agent, turn after turn (reads lines from stdin when it is not a terminal).
    Chat {
        /// The session to continue or start.
        #[arg(long, short, default_value = "default")]
        session: String,
    },
    /// Run one turn and print the answer.
    Run {
        /// What the user says.
        message: String,
        /// The session to continue or start.
        #[arg(long, short, default_value = "default")]
        session: String,
        /// Print every event as one JSON line while the turn runs.
        #[arg(long, conflicts_with = "json")]
        events: bool,
        /// Attach a file for this turn (repeatable): ingested into the session's documents
        /// before the turn, removed after it (a file the session already holds stays).
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<String>,
    },
    /// Continue a run that paused because a tool call needs approval (`kaos run` exit 4).
    #[command(group(clap::ArgGroup::new("answer").required(true).args(["approve", "always", "deny"])))]
    Resume {
        /// The paused run (`kaos runs ls` lists them).
        run_id: String,
        /// Run the pending call.
        #[arg(long)]
        approve: bool,
        /// Run it, and approve that tool for the rest of the run.
        #[arg(long)]
        always: bool,
        /// Do not run it; the model is told so.
        #[arg(long)]
        deny: bool,
        /// The reason given to the model with --deny.
        #[arg(long, requires = "deny", default_value = "the user declined")]
        reason: String,
    },
    /// Runs that paused for approval.
    #[command(subcommand)]
    Runs(commands::RunsCommand),
    /// Documents in a session (what the research and findings patterns quote).
    #[command(subcommand)]
    Docs(docs::DocsCommand),
    /// Stored sessions.
    #[command(subcommand)]
    Sessions(commands::SessionsCommand),
    /// The tools the runtime registers.
    #[command(subcommand)]
    Tools(commands::ToolsCommand),
    /// The files in the data directory's VFS.
    #[command(subcommand)]
    Vfs(commands::VfsCommand),
    /// The resolved settings.
    #[command(subcommand)]
    Config(commands::ConfigCommand),
    /// The agent's permission policy.
    #[command(subcommand)]
    Policy(commands::PolicyCommand),
    /// Serve the agent: MCP over stdio, or with `--http` one HTTP server with MCP (`/mcp`),
    /// the HTTP API (`/v1`) and the web console (`/`).
    ///
    /// Needs the `mcp` feature (on by default).
    Serve(ServeArgs),
}

/// `kaos serve`'s options.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Serve HTTP at this address (e.g. 127.0.0.1:8080) instead of MCP over stdio. It refuses
    /// to start without a bearer token and binds loopback addresses only unless
    /// `--allow-remote`.
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// A caller and its bearer token (at least 16 visible ASCII characters), repeatable; each
    /// caller sees only its own sessions. Also from the settings `mcp.tokens`
    /// (`KAOS_MCP_TOKENS=alice=…,bob=…`) and `mcp.token` (`KAOS_MCP_TOKEN`, the caller
    /// `default`), which keep tokens out of the process list.
    #[arg(long = "token", value_name = "CALLER=TOKEN", requires = "http")]
    pub(crate) tokens: Vec<String>,
    /// Allow a non-loopback address (e.g. 0.0.0.0:8080). Still refused without a token.
    #[arg(long, requires = "http")]
    pub(crate) allow_remote: bool,
    /// With --allow-remote: accept only these `Host` names (repeatable; `localhost`, loopback
    /// addresses and the bound address are always accepted). Without it any `Host` is accepted.
    #[arg(long = "allowed-host", value_name = "HOST", requires = "allow_remote")]
    pub(crate) allowed_hosts: Vec<String>,
    /// The largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024, requires = "http")]
    pub(crate) max_body_bytes: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => match output::failure() {
            None => code,
            Some(error) => {
                eprintln!("error: cannot write the output: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            if let Some(interrupted) = error.downcast_ref::<interrupt::Interrupted>() {
                eprintln!("kaos: {interrupted}");
                return ExitCode::from(interrupted.0.exit_code());
            }
            eprintln!("error: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes (`source()` chain), joined by ": ", each cause once: a cause
/// whose text the message so far already ends with (an error type that repeats its source
/// in its own message) is not repeated.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let part = error.to_string();
        if !text.ends_with(&part) {
            text = format!("{text}: {part}");
        }
        cause = error.source();
    }
    text
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Multi-threaded: `kaos serve` runs many sessions' turns at once.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Synchronous commands may connect to MCP servers, whose connections live on this runtime.
    let _entered = runtime.enter();
    let global = &cli.global;
    let rt = &runtime;
    // Ctrl-C and SIGTERM stop the work of a command that may hold a session, which gives the
    // session back, and `kaos` exits 130 or 143 (see `interrupt`). `kaos serve` handles Ctrl-C
    // itself (it lets running turns finish and commit).
    let interrupts = || interrupt::Interrupts::install(rt);
    let done = match cli.command {
        Command::Chat { session } => chat::run(global, &session, rt, &interrupts()?),
        Command::Run { message, session, events, files } => {
            let turn = commands::run_turn(global, &message, &session, events, &files);
            return interrupts()?.block_on(rt, turn)?;
        }
        Command::Docs(command) => return interrupts()?.block_on(rt, docs::docs(global, command))?,
        Command::Resume { run_id, approve: _, always, deny, reason } => {
            let approval = if deny {
                kaos_runner::Approval::deny(reason)
            } else if always {
                kaos_runner::Approval::approve_and_remember()
            } else {
                kaos_runner::Approval::approve()
            };
            return interrupts()?.block_on(rt, commands::resume_run(global, &run_id, approval))?;
        }
        Command::Runs(command) => interrupts()?.block_on(rt, commands::runs(global, command))?,
        Command::Sessions(command) => interrupts()?.block_on(rt, commands::sessions(global, command))?,
        Command::Tools(command) => commands::tools(global, command),
        Command::Vfs(command) => interrupts()?.block_on(rt, commands::vfs(global, command))?,
        Command::Config(command) => commands::config(global, command),
        Command::Policy(command) => commands::policy(global, command),
        Command::Serve(args) => runtime.block_on(commands::serve(global, args)),
    };
    done.map(|()| ExitCode::SUCCESS)
}
