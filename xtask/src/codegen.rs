//! `cargo xtask codegen [--check]`: files generated from the code and checked in.
//!
//! Today one file: `schemas/agent.schema.json`, the JSON Schema of agent files, printed by
//! `kaos-agent`'s `agent_schema` example (feature `schema`) so that xtask keeps depending on
//! no crate of the workspace.

use anyhow::{Context as _, Result, bail};

use crate::{Cargo, workspace_root};

/// Where the agent-file schema is checked in, relative to the workspace root.
const AGENT_SCHEMA: &str = "schemas/agent.schema.json";

/// Writes every generated file, or with `check` fails naming each one that is stale.
pub(crate) fn run(check: bool) -> Result<()> {
    let generated = Cargo::new([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "kaos-agent",
        "--features",
        "schema",
        "--example",
        "agent_schema",
    ])
    .stdout()?;
    let path = workspace_root().join(AGENT_SCHEMA);
    if check {
        let current = std::fs::read(&path).unwrap_or_default();
        if current != generated {
            bail!("{AGENT_SCHEMA} is stale: run `cargo xtask codegen` and commit the result");
        }
        eprintln!("codegen: {AGENT_SCHEMA} is up to date");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &generated).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("codegen: wrote {AGENT_SCHEMA}");
    Ok(())
}
