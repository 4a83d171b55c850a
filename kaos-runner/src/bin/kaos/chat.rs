//! `kaos chat`: turn after turn on one session.
//!
//! On a terminal it uses a line editor (arrow keys walk the history, Ctrl-D ends); otherwise
//! every line of stdin is one turn, so a conversation can be piped in.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Result;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime as Tokio;

use crate::commands::{self, Show};
use crate::{GlobalArgs, setup};

const PROMPT: &str = "you> ";
const QUIT: &[&str] = &["/exit", "/quit"];

pub(crate) fn run(global: &GlobalArgs, session: &str, tokio: &Tokio) -> Result<()> {
    let runner = setup::runner(global)?;
    let show = if global.json { Show::Json } else { Show::Human };
    let turn = |line: &str| -> Result<()> {
        let response = tokio.block_on(commands::turn(&runner, line, session, show))?;
        if show == Show::Json {
            println!("{}", serde_json::to_string(&response)?);
        }
        Ok(())
    };

    if !std::io::stdin().is_terminal() {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let line = line.trim();
            if QUIT.contains(&line) {
                break;
            }
            if !line.is_empty() {
                turn(line)?;
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
                // A failed turn is reported and the conversation goes on.
                if let Err(error) = turn(line) {
                    eprintln!("error: {error:#}");
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
