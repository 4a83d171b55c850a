//! `cargo xtask features`: every provider feature of `kaos-runner` builds alone, none, and all
//! together (a feature that only compiles next to another one is a bug users find first).

use anyhow::Result;

use crate::Cargo;

/// The crate whose features are checked.
const PACKAGE: &str = "kaos-runner";

/// The feature sets checked, in order: (name shown, `--features` value). `None` is
/// `--no-default-features` alone.
const FEATURE_SETS: &[(&str, Option<&str>)] = &[
    ("no provider", None),
    ("openai", Some("openai")),
    ("anthropic", Some("anthropic")),
    ("gemini", Some("gemini")),
    ("openai-compatible", Some("openai-compatible")),
    ("every provider", Some("openai,anthropic,gemini,openai-compatible")),
    ("object-store", Some("object-store")),
];

/// `cargo check`s `kaos-runner` (library, tests and examples) with each feature set.
pub(crate) fn run() -> Result<()> {
    for (name, features) in FEATURE_SETS {
        eprintln!("features: {PACKAGE} with {name}");
        let mut args =
            vec!["check", "--quiet", "--locked", "-p", PACKAGE, "--all-targets", "--no-default-features"];
        if let Some(features) = features {
            args.extend(["--features", features]);
        }
        Cargo::new(args).run()?;
    }
    eprintln!("features: {} feature sets build", FEATURE_SETS.len());
    Ok(())
}
