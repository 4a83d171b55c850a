//! `kaos chat`: turn after turn on one session.
//!
//! On a terminal it uses a line editor (arrow keys walk the history, Ctrl-D ends); otherwise
//! every line of stdin is one turn, so a conversation can be piped in.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Result;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime as Tokio;

use kaos_runner::{Approval, StopReason};

use crate::commands::{self, Show};
use crate::interrupt::{Interrupted, Interrupts};
use crate::{GlobalArgs, setup};

const PROMPT: &str = "you> ";
const QUIT: &[&str] = &["/exit", "/quit"];

pub(crate) fn run(global: &GlobalArgs, session: &str, tokio: &Tokio, interrupts: &Interrupts) -> Result<()> {
    let runner = setup::runner(global)?;
    let show = if global.json { Show::Json } else { Show::Human };
    // One turn; while it pauses for approval, asks `answer` (y: run it, a: run it and allow
    // that tool for the rest of the run, anything else: deny) and resumes.
    let turn = |line: &str, answer: &mut dyn FnMut(&str) -> Result<String>| -> Result<()> {
        // A signal stops the turn (stored whole or not at all) and ends the chat.
        let mut response = interrupts.block_on(tokio, commands::turn(&runner, line, session, show))??;
        loop {
            if show == Show::Json {
                outln!("{}", serde_json::to_string(&response)?);
            }
            let (StopReason::ApprovalRequired, Some(pending)) =
                (response.stop_reason, &response.pending_approval)
            else {
                return Ok(());
            };
            let question = format!(
                "approve {}({})? ({}) [y/a/N] ",
                pending.tool_name, pending.arguments, pending.reason
            );
            let approval = match answer(&question)?.trim() {
                "y" | "Y" | "yes" => Approval::approve(),
                "a" | "A" | "always" => Approval::approve_and_remember(),
                _ => Approval::deny("the user declined"),
            };
            response =
                interrupts.block_on(tokio, commands::resume(&runner, &response.run_id, approval, show))??;
        }
    };

    if !std::io::stdin().is_terminal() {
        // Piped: every line is a turn, and the line after a paused turn answers it.
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        while let Some(line) = lines.next() {
            let line = line?;
            let line = line.trim();
            if QUIT.contains(&line) {
                break;
            }
            if !line.is_empty() {
                let mut answer = |question: &str| -> Result<String> {
                    eprint!("{question}");
                    Ok(lines.next().transpose()?.unwrap_or_default())
                };
                turn(line, &mut answer)?;
            }
        }
        return Ok(());
    }

    eprintln!(
        "kaos chat · agent {} · model {} · session {session} · /exit or Ctrl-D to leave",
        runner.agent().name(),
        runner.agent().model()
    );
    let mut editor = DefaultEditor::new()?;
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                let line = line.trim();
                if QUIT.contains(&line) {
                    break;
                }
                if line.is_empty() {
                    continue;
                }
                editor.add_history_entry(line)?;
                // A failed turn is reported and the conversation goes on; a signal ends it.
                let mut answer = |question: &str| -> Result<String> {
                    match editor.readline(question) {
                        Ok(text) => Ok(text),
                        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Ok(String::new()),
                        Err(error) => Err(error.into()),
                    }
                };
                if let Err(error) = turn(line, &mut answer) {
                    if error.is::<Interrupted>() {
                        return Err(error);
                    }
                    eprintln!("error: {}", crate::error_chain(error.as_ref()));
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
