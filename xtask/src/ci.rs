//! `cargo xtask ci`: everything CI runs, in the order a failure is cheapest to find.

use anyhow::Result;

use crate::{Cargo, tidy};

/// Runs format check, clippy, tidy and the whole test suite; stops at the first failure.
pub(crate) fn run() -> Result<()> {
    Cargo::new(["fmt", "--all", "--check"]).run()?;
    Cargo::new(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]).run()?;
    eprintln!("$ cargo xtask tidy");
    tidy::run()?;
    Cargo::new(["test", "--workspace", "--all-targets", "--locked"]).run()?;
    Cargo::new(["test", "--workspace", "--doc", "--locked"]).run()?;
    eprintln!("ci: all checks passed");
    Ok(())
}
