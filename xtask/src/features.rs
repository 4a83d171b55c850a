//! `cargo xtask features`: every provider feature of `kaos-runner` builds alone, none, and all
//! together (a feature that only compiles next to another one is a bug users find first); the
//! `kaos` binary builds with no default feature (no provider, no MCP server).

use anyhow::Result;

use crate::Cargo;

/// The feature sets checked, in order: (package, name shown, `--features` value). `None` is
/// `--no-default-features` alone.
const FEATURE_SETS: &[(&str, &str, Option<&str>)] = &[
    ("kaos-runner", "no provider", None),
    ("kaos-runner", "openai", Some("openai")),
    ("kaos-runner", "anthropic", Some("anthropic")),
    ("kaos-runner", "gemini", Some("gemini")),
    ("kaos-runner", "openai-compatible", Some("openai-compatible")),
    ("kaos-runner", "every provider", Some("openai,anthropic,gemini,openai-compatible")),
    ("kaos-runner", "object-store", Some("object-store")),
    // Remote delegates alone: kaos-a2a's client is the only HTTP client then.
    ("kaos-runner", "a2a", Some("a2a")),
    ("kaos-cli", "no default feature", None),
];

/// `cargo check`s each package (library or binary, tests and examples) with each feature set.
pub(crate) fn run() -> Result<()> {
    for (package, name, features) in FEATURE_SETS {
        eprintln!("features: {package} with {name}");
        let mut args =
            vec!["check", "--quiet", "--locked", "-p", package, "--all-targets", "--no-default-features"];
        if let Some(features) = features {
            args.extend(["--features", features]);
        }
        Cargo::new(args).run()?;
    }
    eprintln!("features: {} feature sets build", FEATURE_SETS.len());
    Ok(())
}
