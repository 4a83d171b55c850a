//! The commands other than `chat`.

use std::io::Write as _;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use futures::StreamExt as _;
use kaos_agent::Decision;
use kaos_runner::{
    Approval, Event, EventKind, MemoryEventKind, PermissionPolicy, RunState, Runner, SpanPhase, SpanSubject,
    StopReason, TurnFold, TurnResponse, VerdictReason,
};
use kaos_tools::{ToolAnnotations, ToolSelector};
use kaos_vfs::{EntryKind, VfsPath};
use serde_json::{Map, Value, json};

use crate::status::Status;
use crate::{GlobalArgs, setup};

/// How a turn is shown while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    /// Text as it streams on stdout; tool calls and the cost line on stderr.
    Human,
    /// Nothing while it runs; the `TurnResponse` as JSON at the end.
    Json,
    /// Every event as a JSON line on stdout.
    Events,
}

/// `kaos run`: exits 3 when a budget stopped the turn, 4 when it paused for approval (the
/// run id is in the response; `kaos chat` can answer approvals interactively).
pub(crate) async fn run_turn(
    global: &GlobalArgs,
    message: &str,
    session: &str,
    events: bool,
    files: &[String],
) -> Result<std::process::ExitCode> {
    let runner = setup::runner(global)?;
    let show = match (events, global.json) {
        (true, _) => Show::Events,
        (false, true) => Show::Json,
        (false, false) => Show::Human,
    };
    // Attached files: ingested whole or the turn does not run; removed after the turn.
    let mut attached = Vec::new();
    if !files.is_empty() {
        let settings = setup::settings(global)?;
        let paths = crate::docs::expand(files)?;
        let added = crate::docs::add_files(&runner, &settings, session, &paths, false).await?;
        let failed: Vec<String> = added
            .iter()
            .filter_map(|a| match &a.outcome {
                crate::docs::Outcome::Failed(_) => Some(a.name.clone()),
                _ => None,
            })
            .collect();
        attached = added.into_iter().flat_map(|a| a.ids).collect::<Vec<u64>>();
        if !failed.is_empty() {
            runner.forget(session, kaos_agent::SectionKind::Documents, attached).await?;
            bail!("--file: {} could not be attached; the turn did not run", failed.join(", "));
        }
    }
    // Declared before the turn, so a turn dropped by Ctrl-C (which releases the session) is
    // dropped first and the documents are then removed all the same.
    let attached = Attached { runner: &runner, session, ids: attached };
    let turn = turn_with_citations(&runner, message, session, show);
    let (response, citations) = turn.await?;
    attached.forget().await?;
    if show == Show::Json {
        let mut value = serde_json::to_value(&response)?;
        if let Value::Object(map) = &mut value
            && !citations.is_empty()
        {
            map.insert("citations".to_owned(), Value::Array(citations));
        }
        outln!("{}", serde_json::to_string_pretty(&value)?);
        // Printed: the exit code alone, as for `--events` (nothing more on stdout or stderr).
        return finish(global, &response, Show::Events);
    }
    finish(global, &response, show)
}

/// The documents `kaos run --file` attached for one turn: removed after it by
/// [`Attached::forget`], or, when the turn is dropped first (Ctrl-C), by the drop.
struct Attached<'a> {
    runner: &'a Runner,
    session: &'a str,
    ids: Vec<u64>,
}

impl Attached<'_> {
    async fn forget(mut self) -> Result<()> {
        let ids = std::mem::take(&mut self.ids);
        if !ids.is_empty() {
            self.runner.forget(self.session, kaos_agent::SectionKind::Documents, ids).await?;
        }
        Ok(())
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        if ids.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        // `kaos` runs on a multi-thread runtime, where this may wait (a second Ctrl-C quits).
        if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            let forget = self.runner.forget(self.session, kaos_agent::SectionKind::Documents, ids);
            if let Err(error) = tokio::task::block_in_place(|| runtime.block_on(forget)) {
                eprintln!(
                    "kaos: the documents attached with --file could not be removed from session {}: {}",
                    self.session,
                    crate::error_chain(&error)
                );
            }
        }
    }
}

/// A turn, and the `citation_found` events it emitted as JSON objects (claim, source, quote,
/// verified, location).
async fn turn_with_citations(
    runner: &Runner,
    message: &str,
    session: &str,
    show: Show,
) -> Result<(TurnResponse, Vec<Value>)> {
    let citations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = citations.clone();
    let response = watch_with(runner.run(message, session), show, move |event| {
        if let EventKind::CitationFound { .. } = &event.kind
            && let Ok(Value::Object(mut map)) = serde_json::to_value(&event.kind)
            && let Ok(mut list) = sink.lock()
        {
            map.remove("type");
            list.push(Value::Object(map));
        }
    })
    .await?;
    let list = citations.lock().map(|l| l.clone()).unwrap_or_default();
    Ok((response, list))
}

/// Prints a `--json` response and says why a turn stopped short; the exit code of a turn:
/// 0 completed, 3 budget stop, 4 paused for approval, 5 any other stop short of an answer.
fn finish(global: &GlobalArgs, response: &TurnResponse, show: Show) -> Result<std::process::ExitCode> {
    if show == Show::Json {
        outln!("{}", serde_json::to_string_pretty(response)?);
    }
    let human = show == Show::Human;
    if human && response.stop_reason != StopReason::Completed {
        if let (StopReason::ApprovalRequired, Some(pending)) =
            (response.stop_reason, &response.pending_approval)
        {
            eprintln!(
                "paused: {}({}) needs approval ({}); run id {}",
                pending.tool_name, pending.arguments, pending.reason, response.run_id
            );
            eprintln!("resume with: {}", resume_command(global, &response.run_id));
        } else {
            eprintln!("stopped: {}", stop_reason_text(response.stop_reason));
        }
    }
    Ok(match response.stop_reason {
        StopReason::BudgetExceeded => std::process::ExitCode::from(3),
        StopReason::ApprovalRequired => std::process::ExitCode::from(4),
        StopReason::Completed => std::process::ExitCode::SUCCESS,
        // Stopped short of an answer: iteration limit, model unavailable, a refusal for lack of
        // evidence, an incomplete plan (and whatever reasons come later).
        _ => std::process::ExitCode::from(5),
    })
}

/// The command that resumes a paused run, with the data directory when one was given.
fn resume_command(global: &GlobalArgs, run_id: &str) -> String {
    let data_dir =
        global.data_dir.as_ref().map(|d| format!(" --data-dir {}", d.display())).unwrap_or_default();
    format!("kaos resume {run_id} --approve | --always | --deny{data_dir}")
}

/// Why a turn stopped, for a person.
fn stop_reason_text(reason: StopReason) -> String {
    let name = serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned));
    let name = name.unwrap_or_else(|| format!("{reason:?}"));
    let why = match name.as_str() {
        "budget_exceeded" => " (a cost, token, tool-call or time cap of the agent's budget)",
        "max_iterations" => " (the agent's limits.max_iterations; raise it in the agent file)",
        _ => "",
    };
    format!("{name}{why}")
}

/// `kaos resume`: continues a paused run with a person's answer.
pub(crate) async fn resume_run(
    global: &GlobalArgs,
    run_id: &str,
    approval: Approval,
) -> Result<std::process::ExitCode> {
    let settings = setup::settings(global)?;
    let runtime = setup::runtime(&settings, false)?;
    let state = read_state(runtime.vfs().as_ref(), run_id).await?;
    // The paused agent, unless an agent file is given (resuming checks it is the same agent).
    let (agent, extras) = match &global.agent {
        Some(_) => setup::agent(global, &settings)?,
        None => (kaos_agent::Agent::from_config(state.agent.clone())?, setup::AgentFileExtras::default()),
    };
    let runner = setup::build_runner(&settings, agent, &extras, runtime)?;
    let show = if global.json { Show::Json } else { Show::Human };
    let response = watch(runner.resume(state, approval), show).await?;
    finish(global, &response, show)
}

/// The stored state of a paused run; errors say how to find one.
async fn read_state(vfs: &dyn kaos_vfs::Vfs, run_id: &str) -> Result<RunState> {
    let path = VfsPath::new("runs")?.join(run_id)?.join("state.json")?;
    match vfs.read(&path).await {
        Ok(bytes) => {
            Ok(serde_json::from_slice(&bytes).with_context(|| format!("run {run_id}: unreadable state"))?)
        }
        Err(e) if e.is_not_found() => {
            bail!(
                "no paused run {run_id:?} in this data directory (`kaos runs ls` lists them; --data-dir chooses the directory)"
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// `kaos runs …`
#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// List runs that paused for approval, and whether they were resumed.
    Ls,
}

pub(crate) async fn runs(global: &GlobalArgs, command: RunsCommand) -> Result<()> {
    let RunsCommand::Ls = command;
    let settings = setup::settings(global)?;
    let runtime = setup::runtime(&settings, false)?;
    let vfs = runtime.vfs();
    let root = VfsPath::new("runs")?;
    let entries = match vfs.list(&root).await {
        Ok(entries) => entries,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut states = Vec::new();
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        let Some(id) = entry.path.as_str().rsplit('/').next() else { continue };
        states.push(read_state(vfs.as_ref(), id).await?);
    }
    states.sort_by_key(|s| s.paused_at_ms);
    if global.json {
        let rows: Vec<Value> = states
            .iter()
            .map(|s| {
                json!({
                    "run_id": s.run_id,
                    "session_id": s.session_id,
                    "turn_number": s.turn_number,
                    "status": if s.resumed { "resumed" } else { "paused" },
                    "tool_name": s.pending.tool_name,
                    "arguments": s.pending.arguments,
                    "reason": s.pending.reason,
                    "paused_at_ms": s.paused_at_ms,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if states.is_empty() {
        eprintln!("no paused runs in {}", settings.data_dir.display());
    } else {
        for s in states {
            let status = if s.resumed { "resumed" } else { "paused" };
            outln!(
                "{}\t{status}\tsession {}\tturn {}\t{}({})\t{}",
                s.run_id,
                s.session_id,
                s.turn_number,
                s.pending.tool_name,
                s.pending.arguments,
                s.pending.reason
            );
        }
    }
    Ok(())
}

/// Runs one turn, showing it as it happens, and returns its response.
pub(crate) async fn turn(runner: &Runner, message: &str, session: &str, show: Show) -> Result<TurnResponse> {
    watch(runner.run(message, session), show).await
}

/// Resumes a paused run with a person's answer, showing it as it happens.
pub(crate) async fn resume(
    runner: &Runner,
    run_id: &str,
    approval: Approval,
    show: Show,
) -> Result<TurnResponse> {
    let state = runner.run_state(run_id).await?;
    watch(runner.resume(state, approval), show).await
}

/// Shows a run's events as they come and folds them into its response.
async fn watch(stream: kaos_runner::RunStream, show: Show) -> Result<TurnResponse> {
    watch_with(stream, show, |_| {}).await
}

/// [`watch`], handing every event to `observe` too.
async fn watch_with(
    mut stream: kaos_runner::RunStream,
    show: Show,
    mut observe: impl FnMut(&Event),
) -> Result<TurnResponse> {
    let mut fold = TurnFold::default();
    let mut status = Status::new();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(120));
    loop {
        let next = if show == Show::Human && status.spinning() {
            tokio::select! {
                next = stream.next() => next,
                _ = ticks.tick() => {
                    status.tick();
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let Some(event) = next else { break };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                status.clear();
                return Err(error.into());
            }
        };
        // Repairs of the session log and ignored checkpoints are said in every mode.
        if let EventKind::Memory { kind: MemoryEventKind::Warning, attributes, .. } = &event.kind {
            status.clear();
            let reason = attributes.get("reason").and_then(Value::as_str).unwrap_or("memory warning");
            eprintln!("kaos: session {}: {reason}", event.session_id);
        }
        match show {
            Show::Events => outln!("{}", serde_json::to_string(&event)?),
            Show::Human => {
                status.clear();
                show_event(&mut crate::output::stdout(), &event)?;
                status.observe(&event);
            }
            Show::Json => {}
        }
        observe(&event);
        fold.push(&event);
    }
    drop(status);
    let mut stdout = crate::output::stdout();
    let response = fold.finish().context("the turn ended without a summary")?;
    if show == Show::Human {
        writeln!(stdout)?;
        stdout.flush()?;
        eprintln!(
            "[turn {} · {} · {} tokens · {} model call(s)]",
            response.turn_number,
            cost(response.cost_usd, response.unpriced_model_calls),
            response.usage.total_tokens(),
            response.model_calls
        );
    }
    Ok(response)
}

/// A cost as text: `$0.0123`; `unpriced` when no call had a price; `$0.0123 + 2 unpriced
/// call(s)` when some had none (never a `$0.0000` that hides an unknown price).
pub(crate) fn cost(usd: f64, unpriced: u32) -> String {
    match unpriced {
        0 => format!("${usd:.4}"),
        _ if usd == 0.0 => "unpriced".to_owned(),
        n => format!("${usd:.4} + {n} unpriced call(s)"),
    }
}

fn show_event(stdout: &mut impl std::io::Write, event: &Event) -> Result<()> {
    match &event.kind {
        EventKind::TextDelta { text } => {
            write!(stdout, "{text}")?;
            stdout.flush()?;
        }
        EventKind::Span(span) if span.subject == SpanSubject::ToolCall => {
            let attr = |key: &str| span.attributes.get(key).cloned().unwrap_or(Value::Null);
            match span.phase {
                SpanPhase::Start => {
                    eprintln!("  → {} {}", attr("tool_name").as_str().unwrap_or("?"), attr("arguments"))
                }
                SpanPhase::Complete | SpanPhase::Error => {
                    let result = attr("result");
                    let text = result.as_str().unwrap_or_default();
                    let short: String = text.chars().take(120).collect();
                    let failed = span.phase == SpanPhase::Error || attr("is_error") == Value::Bool(true);
                    let mark = if failed { "✗" } else { "←" };
                    let more = if short.len() < text.len() { "…" } else { "" };
                    eprintln!("  {mark} {}{more}", short.replace('\n', " "));
                }
                _ => {}
            }
        }
        EventKind::Span(span) if span.subject == SpanSubject::Handoff && span.phase == SpanPhase::Start => {
            let to = span.attributes.get("to").and_then(Value::as_str).unwrap_or("?");
            eprintln!("  ⇢ handed to {to}");
        }
        EventKind::IntentClassified { pattern, reason, .. } => eprintln!("  ⤷ {pattern} ({reason})"),
        EventKind::Span(span) if span.subject == SpanSubject::Step && span.phase == SpanPhase::Complete => {
            let attr = |key: &str| span.attributes.get(key).and_then(Value::as_str).unwrap_or_default();
            if let status @ ("done" | "failed") = attr("status") {
                let mark = if status == "done" { "✓" } else { "✗" };
                let result: String = attr("result").chars().take(120).collect();
                eprintln!("  {mark} {}: {}", span.name, result.replace('\n', " "));
            }
        }
        EventKind::PlanProposed { revision, steps, reason } => {
            let title = if *revision > 1 { format!("plan, revision {revision}") } else { "plan".to_owned() };
            let why = if reason.is_empty() { String::new() } else { format!(" — {reason}") };
            eprintln!("  {title}{why}:");
            for (i, step) in steps.iter().enumerate() {
                eprintln!("    {}. {step}", i + 1);
            }
        }
        EventKind::FindingRefused { source, reason, detail, .. } => {
            eprintln!("  ✗ {source}: {} ({detail})", reason.as_str());
        }
        EventKind::EvidenceInsufficient { reason, .. } => eprintln!("  ✗ evidence insufficient: {reason}"),
        EventKind::BudgetExceeded { reason, .. } => eprintln!("  ✗ budget: {reason}"),
        _ => {}
    }
    Ok(())
}

/// `kaos sessions …`
#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// List stored sessions with their turns and cost.
    Ls,
    /// Show a session's conversation.
    Show {
        /// The session.
        id: String,
        /// Read a corrupt log's intact turns (lines left out are listed on stderr).
        #[arg(long)]
        salvage: bool,
    },
    /// Delete a session and its files.
    Rm {
        /// The session.
        id: String,
    },
    /// Print a whole session as one JSON document: its turn records and its memory.
    Export {
        /// The session.
        id: String,
        /// Export a corrupt log's intact turns and the memory they rebuild (lines left out
        /// are listed on stderr).
        #[arg(long)]
        salvage: bool,
    },
}

pub(crate) async fn sessions(global: &GlobalArgs, command: SessionsCommand) -> Result<()> {
    let settings = setup::settings(global)?;
    let sessions = kaos_runner::Sessions::new(setup::runtime(&settings, false)?.vfs().clone());
    match command {
        SessionsCommand::Ls => {
            let list = sessions.list().await?;
            if global.json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                eprintln!("no sessions in {}", settings.data_dir.display());
            } else {
                for s in list {
                    let cost = cost(s.cost_usd, s.unpriced_model_calls);
                    outln!("{}\t{} turn(s)\t{cost}\t{} tokens", s.id, s.turns, s.total_tokens);
                }
            }
        }
        SessionsCommand::Show { id, salvage } => {
            let turns = if salvage {
                let salvaged = sessions.salvage(&id).await?;
                report_skipped(&id, &salvaged.skipped);
                Some(salvaged.records).filter(|r| !r.is_empty())
            } else {
                sessions.turns(&id).await?
            };
            let turns = turns.with_context(|| format!("no session {id:?}"))?;
            if global.json {
                outln!("{}", serde_json::to_string_pretty(&turns)?);
                return Ok(());
            }
            for record in turns {
                let cost = cost(record.cost_usd, record.unpriced_model_calls);
                outln!("── turn {} · {cost} · {:?}", record.turn, record.stop_reason);
                for message in &record.messages {
                    let value = serde_json::to_value(message)?;
                    let role = value.get("role").and_then(Value::as_str).unwrap_or("?");
                    let name = value
                        .get("name")
                        .and_then(Value::as_str)
                        .map(|n| format!(" {n}"))
                        .unwrap_or_default();
                    outln!("{role}{name}: {}", message.content());
                }
            }
        }
        SessionsCommand::Rm { id } => {
            if !sessions.delete(&id).await? {
                bail!("no session {id:?}");
            }
            if global.json {
                outln!("{}", json!({"deleted": id}));
            } else {
                eprintln!("deleted session {id}");
            }
        }
        SessionsCommand::Export { id, salvage: true } => {
            let runner = setup::session_runner(global)?;
            let session = kaos_runner::SessionId::new(&id)?;
            let model = runner.agent().model();
            let counter = kaos_runner::providers::counter_for(model.provider(), model.model());
            let (export, skipped) =
                match sessions.export_salvaged(&session, runner.agent().memory(), counter).await {
                    Err(kaos_runner::SessionError::Vfs(e)) if e.is_not_found() => bail!("no session {id:?}"),
                    other => other?,
                };
            report_skipped(&id, &skipped);
            outln!("{}", serde_json::to_string_pretty(&export)?);
        }
        SessionsCommand::Export { id, salvage: false } => {
            // The whole session as one JSON document: its log and its memory as the agent sees it.
            let runner = setup::session_runner(global)?;
            let export = match runner.export_session(&id).await {
                Err(kaos_runner::RunError::Vfs(e)) if e.is_not_found() => bail!("no session {id:?}"),
                other => other?,
            };
            outln!("{}", serde_json::to_string_pretty(&export)?);
        }
    }
    Ok(())
}

/// Lists on stderr the log lines `--salvage` left out.
fn report_skipped(id: &str, skipped: &[(usize, String)]) {
    for (line, why) in skipped {
        eprintln!("kaos: session {id}: left out line {line} of the log: {why}");
    }
}

/// `kaos tools …`
#[derive(Debug, Subcommand)]
pub(crate) enum ToolsCommand {
    /// List the registered tools, their annotations, and whether the agent is offered them.
    Ls,
}

pub(crate) fn tools(global: &GlobalArgs, command: ToolsCommand) -> Result<()> {
    let ToolsCommand::Ls = command;
    let settings = setup::settings(global)?;
    let (agent, extras) = match &global.agent {
        Some(path) => {
            let file = setup::load_agent_file(path)?;
            (file.agent, file.extras)
        }
        None => (kaos_agent::Agent::builder().build()?, setup::AgentFileExtras::default()),
    };
    let selector = agent.tools().map_or_else(|| Ok(ToolSelector::all()), ToolSelector::new)?;
    let runtime = setup::agent_runtime(&settings, false, &extras)?;
    let mut rows = Vec::new();
    for tool in runtime.tools().list() {
        let spec = tool.spec();
        let offered = selector.matches(spec.name.as_str());
        if global.json {
            let mut value = serde_json::to_value(spec)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("offered".into(), Value::Bool(offered));
            }
            rows.push(value);
        } else {
            let flags = annotation_flags(&spec.annotations);
            let mark = if offered { "" } else { "  (not offered to this agent)" };
            outln!("{}\t{}\t{}{mark}", spec.name, flags, spec.description);
        }
    }
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn annotation_flags(a: &ToolAnnotations) -> String {
    let flags: Vec<&str> = [
        (a.read_only, "read-only"),
        (a.destructive, "destructive"),
        (a.idempotent, "idempotent"),
        (a.requires_confirmation, "requires-confirmation"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if flags.is_empty() { "-".to_owned() } else { flags.join(",") }
}

/// `kaos vfs …`
#[derive(Debug, Subcommand)]
pub(crate) enum VfsCommand {
    /// List a directory of the data directory's VFS (the root by default).
    Ls {
        /// The directory, e.g. `sessions/default`.
        path: Option<String>,
    },
    /// Print a file of the VFS.
    Cat {
        /// The file, e.g. `sessions/default/turns.jsonl`.
        path: String,
    },
}

pub(crate) async fn vfs(global: &GlobalArgs, command: VfsCommand) -> Result<()> {
    let settings = setup::settings(global)?;
    let runtime = setup::runtime(&settings, false)?;
    match command {
        VfsCommand::Ls { path } => {
            let path = match path.as_deref() {
                None | Some("" | "." | "/") => VfsPath::root(),
                Some(path) => VfsPath::new(path)?,
            };
            let entries = runtime.vfs().list(&path).await?;
            if global.json {
                let rows: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        let kind = if e.kind == EntryKind::Dir { "dir" } else { "file" };
                        json!({"path": e.path.as_str(), "kind": kind, "len": e.len})
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for e in entries {
                    match e.kind {
                        EntryKind::Dir => outln!("{}/", e.path),
                        _ => outln!("{}\t{} bytes", e.path, e.len),
                    }
                }
            }
        }
        VfsCommand::Cat { path } => {
            let bytes = runtime.vfs().read(&VfsPath::new(&path)?).await?;
            let mut stdout = crate::output::stdout();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

/// `kaos config …`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Every setting with its value and where it came from (secrets redacted).
    Show,
}

pub(crate) fn config(global: &GlobalArgs, command: ConfigCommand) -> Result<()> {
    let ConfigCommand::Show = command;
    let settings = setup::settings(global)?;
    let entries = settings.entries();
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for entry in entries {
        let value = entry.value.as_deref().unwrap_or("(unset)");
        outln!("{} = {value}\t({})", entry.key, entry.source);
    }
    Ok(())
}

/// `kaos policy …`
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// What the agent's permission policy decides for one tool call, and why.
    ///
    /// A registered tool's own annotations are used; the flags add to them (and describe a
    /// tool that is not registered).
    Check {
        /// The tool's name.
        tool: String,
        /// An argument of the call, as `name=value` (repeatable).
        #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = parse_arg)]
        args: Vec<(String, String)>,
        /// The tool does not modify its environment.
        #[arg(long)]
        read_only: bool,
        /// The tool may destroy or overwrite data.
        #[arg(long)]
        destructive: bool,
        /// The tool needs a person to confirm every call.
        #[arg(long)]
        requires_confirmation: bool,
    },
}

fn parse_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

pub(crate) fn policy(global: &GlobalArgs, command: PolicyCommand) -> Result<()> {
    let PolicyCommand::Check { tool, args, read_only, destructive, requires_confirmation } = command;
    let settings = setup::settings(global)?;
    let (agent, extras) = match &global.agent {
        Some(path) => {
            let file = setup::load_agent_file(path)?;
            (file.agent, file.extras)
        }
        None => (kaos_agent::Agent::builder().build()?, setup::AgentFileExtras::default()),
    };
    let runtime = setup::agent_runtime(&settings, false, &extras)?;
    let registered = runtime.tools().get(&tool).map(|t| t.spec().annotations);
    let base = registered.unwrap_or_default();
    let annotations = base
        .with_read_only(base.read_only || read_only)
        .with_destructive(base.destructive || destructive)
        .with_requires_confirmation(base.requires_confirmation || requires_confirmation);
    let arguments: Map<String, Value> = args.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let verdict =
        PermissionPolicy::from_agent(&agent)?.evaluate(&tool, &Value::Object(arguments), &annotations);
    let rule = match verdict.reason {
        VerdictReason::Rule(i) => agent.permissions().get(i).cloned(),
        _ => None,
    };
    if global.json {
        let out = json!({
            "tool": tool,
            "registered": registered.is_some(),
            "annotations": annotations,
            "decision": verdict.decision,
            "reason": verdict.reason,
            "rule": rule,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let decision = match verdict.decision {
        Decision::Allow => "allow",
        Decision::Ask => "ask",
        Decision::Deny => "deny",
    };
    let why = match (verdict.reason, &rule) {
        (VerdictReason::Rule(i), Some(rule)) => format!("permissions[{i}] (tool = {:?})", rule.tool),
        (VerdictReason::RequiresConfirmation, _) => "the tool requires confirmation".to_owned(),
        (VerdictReason::ReadOnly, _) => "no rule matched; the tool is read-only".to_owned(),
        (VerdictReason::Destructive, _) => "no rule matched; the tool is destructive".to_owned(),
        _ => "no rule matched; the default".to_owned(),
    };
    outln!("{decision}\t{why}");
    if registered.is_none() {
        eprintln!(
            "note: no tool named {tool:?} is registered (`kaos tools ls` lists them); this is the \
             verdict for a tool with the annotations given by the flags"
        );
    }
    Ok(())
}

/// `kaos serve`: the runner over MCP on stdio, or one HTTP server (MCP, the API, the console).
#[cfg(feature = "mcp")]
pub(crate) async fn serve(global: &GlobalArgs, args: crate::ServeArgs) -> Result<()> {
    use kaos_server::{HttpOptions, ServeOptions, serve_http, serve_stdio};

    let settings = setup::settings(global)?;
    let runner = setup::runner(global)?;
    let Some(addr) = args.http else {
        serve_stdio(runner, ServeOptions::default()).await?;
        return Ok(());
    };
    let documents = kaos_server::api::DocumentLimits {
        ingest: crate::docs::options(&settings),
        max_chunks_per_session: crate::docs::max_chunks_per_session(&settings),
    };
    let mut options = HttpOptions::new().with_max_body_bytes(args.max_body_bytes).with_documents(documents);
    for (caller, token) in serve_tokens(&args.tokens, &settings)? {
        options = options.with_token(token, caller);
    }
    if args.allow_remote {
        options = if args.allowed_hosts.is_empty() {
            options.with_allow_remote()
        } else {
            options.with_non_loopback(args.allowed_hosts)
        };
    }
    let server = serve_http(runner, addr, options).await?;
    eprintln!(
        "listening on {} (MCP at {}, API at {}/v1, A2A at {}{})",
        server.base_url(),
        server.url(),
        server.base_url(),
        server.base_url(),
        kaos_server::a2a::A2A_PATH
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("shutting down: letting running turns finish");
    server.shutdown().await;
    Ok(())
}

/// Every `(caller, token)`: `--token CALLER=TOKEN` flags, then `mcp.tokens`, then `mcp.token`
/// as the caller `default`.
#[cfg(feature = "mcp")]
fn serve_tokens(flags: &[String], settings: &kaos_runtime::Settings) -> Result<Vec<(String, String)>> {
    let parse = |pair: &str, from: &str| -> Result<(String, String)> {
        let (caller, token) = pair
            .split_once('=')
            .filter(|(caller, token)| !caller.trim().is_empty() && !token.is_empty())
            .with_context(|| format!("{from}: expected CALLER=TOKEN (e.g. alice=<long random token>)"))?;
        Ok((caller.trim().to_owned(), token.to_owned()))
    };
    let mut out = flags.iter().map(|pair| parse(pair, "--token")).collect::<Result<Vec<_>>>()?;
    if let Some(tokens) = &settings.mcp.tokens {
        for pair in kaos_runtime::ExposeSecret::expose_secret(tokens)
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            out.push(parse(pair, "mcp.tokens (KAOS_MCP_TOKENS)")?);
        }
    }
    if let Some(token) = &settings.mcp.token {
        out.push(("default".to_owned(), kaos_runtime::ExposeSecret::expose_secret(token).to_owned()));
    }
    Ok(out)
}

/// `kaos serve` in a build without MCP.
#[cfg(not(feature = "mcp"))]
pub(crate) async fn serve(_global: &GlobalArgs, _args: crate::ServeArgs) -> Result<()> {
    bail!(
        "this kaos was built without MCP; rebuild it with `--features mcp` (e.g. cargo install --path kaos-cli --features mcp)"
    )
}
