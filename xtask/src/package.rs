//! `cargo xtask package [--full]`: every published crate is packaged, and each is verified
//! from its `.crate` alone, as a user who downloads it would build it, so no published target,
//! test or doctest may reach a file outside its crate.
//!
//! `cargo package --no-verify` writes the `.crate` files (cargo's own verification would build
//! each once more, default features only). They are unpacked side by side into a scratch
//! workspace whose `[patch.crates-io]` points every KAOS crate at its unpacked copy, with the
//! workspace's `Cargo.lock`, sharing the main `target/` directory so the dependencies already
//! built are not built again. There, with every feature on:
//!
//! - by default (what `cargo xtask ci` runs): `cargo check --all-targets` (the library, tests,
//!   examples and benches compile from the package: every `mod`, `#[path]`, `include_str!` and
//!   `include_bytes!` resolves inside it), and each library checked once more with
//!   `--cfg doctest`, which compiles the doctest-only modules (the READMEs included as
//!   doctests) and so resolves the files doctests include;
//! - with `--full`: `cargo test --all-targets` and `cargo test --doc`, everything run (the
//!   published tests and doctests pass from the package), at the price of building every crate
//!   in full a second time.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{Cargo, workspace_root};

/// How far the packaged crates are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Every target checked, and each library checked with `--cfg doctest`.
    Check,
    /// Every test and doctest built and run.
    Full,
}

/// Packages every publishable member, then verifies each from its `.crate`.
pub(crate) fn run(verify: Verify) -> Result<()> {
    let root = workspace_root();
    let metadata = metadata()?;
    let crates = publishable(&metadata)?;
    if crates.is_empty() {
        bail!("no publishable workspace member");
    }
    let target = target_of(&metadata)?;

    // `--no-verify`: cargo's own verification builds each `.crate` once more, default features
    // only; the scratch workspace below builds the same `.crate`s with every feature and runs
    // their tests, a superset, so verifying twice would only cost CI time.
    let mut package = vec!["package".to_owned(), "--locked".to_owned(), "--no-verify".to_owned()];
    for (name, _) in &crates {
        package.extend(["-p".to_owned(), name.clone()]);
    }
    Cargo::new(package).run()?;

    let scratch = target.join("package-check");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let mut members = Vec::new();
    for (name, version) in &crates {
        let file = target.join("package").join(format!("{name}-{version}.crate"));
        unpack(&file, &scratch)?;
        members.push(format!("{name}-{version}"));
    }
    let root_manifest =
        fs::read_to_string(root.join("Cargo.toml")).context("cannot read the workspace's Cargo.toml")?;
    let manifest = format!("{}\n{}", scratch_manifest(&crates), profiles(&root_manifest));
    fs::write(scratch.join("Cargo.toml"), manifest).context("cannot write the scratch workspace's Cargo.toml")?;
    fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock")).context("cannot copy Cargo.lock")?;

    let manifest = scratch.join("Cargo.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    let target_dir = target.to_string_lossy().into_owned();
    let in_scratch = |args: &[&str]| {
        Cargo::new(args.iter().copied()).args(&[
            "--manifest-path".to_owned(),
            manifest.clone(),
            "--all-features".to_owned(),
            "--target-dir".to_owned(),
            target_dir.clone(),
        ])
    };
    match verify {
        Verify::Check => {
            in_scratch(&["check", "--workspace", "--all-targets"]).run()?;
            for (name, _) in &crates {
                in_scratch(&["rustc", "-p", name, "--lib", "--profile", "check"])
                    .args(&["--".to_owned(), "--cfg".to_owned(), "doctest".to_owned()])
                    .run()?;
            }
        }
        Verify::Full => {
            in_scratch(&["test", "--workspace", "--all-targets"]).run()?;
            in_scratch(&["test", "--workspace", "--doc"]).run()?;
        }
    }
    let how = match verify {
        Verify::Check => "checked (all targets, and doctest includes)",
        Verify::Full => "tested (tests and doctests run)",
    };
    eprintln!("package: {} crates {how} from their .crate files: {}", crates.len(), members.join(", "));
    Ok(())
}

fn metadata() -> Result<Value> {
    let json = Cargo::new(["metadata", "--format-version", "1", "--no-deps"]).stdout()?;
    serde_json::from_slice(&json).context("`cargo metadata` printed invalid JSON")
}

fn target_of(metadata: &Value) -> Result<PathBuf> {
    metadata
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .context("`cargo metadata` has no `target_directory`")
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<root>/target`), which builds
/// outside the workspace share so that what they have in common is compiled once.
pub(crate) fn target_directory() -> Result<PathBuf> {
    target_of(&metadata()?)
}

/// Workspace members that may be published (no `publish = false`), as (name, version), in
/// the workspace's order.
fn publishable(metadata: &Value) -> Result<Vec<(String, String)>> {
    let packages =
        metadata.get("packages").and_then(Value::as_array).context("`cargo metadata`: no packages")?;
    let mut out = Vec::new();
    for package in packages {
        // `publish: []` is `publish = false`; `null` means any registry.
        if package.get("publish").and_then(Value::as_array).is_some_and(Vec::is_empty) {
            continue;
        }
        let field = |key: &str| {
            package
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("a package has no {key}"))
        };
        out.push((field("name")?, field("version")?));
    }
    Ok(out)
}

/// The scratch workspace: every unpacked crate a member, and every KAOS crate patched to its
/// unpacked copy (their manifests name each other by version, as on crates.io).
fn scratch_manifest(crates: &[(String, String)]) -> String {
    let mut text = String::from("[workspace]\nresolver = \"3\"\nmembers = [\n");
    for (name, version) in crates {
        text.push_str(&format!("    \"{name}-{version}\",\n"));
    }
    text.push_str("]\n\n[patch.crates-io]\n");
    for (name, version) in crates {
        text.push_str(&format!("{name} = {{ path = \"{name}-{version}\" }}\n"));
    }
    text
}

/// The `[profile.*]` tables of the workspace's manifest, as written. Profiles come from the
/// workspace root, and a dependency built with another profile is a different build: without
/// them the scratch workspace would compile every dependency again.
fn profiles(manifest: &str) -> String {
    let mut out = String::new();
    let mut in_profile = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_profile = line.starts_with("[profile.");
        }
        if in_profile {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Unpacks a `.crate` (a gzipped tar whose entries are under `{name}-{version}/`) into `dir`.
fn unpack(file: &Path, dir: &Path) -> Result<()> {
    eprintln!("$ tar -xzf {} -C {}", file.display(), dir.display());
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(file)
        .arg("-C")
        .arg(dir)
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("cannot unpack {} ({status})", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpublished_members_are_left_out() {
        let metadata = serde_json::json!({"packages": [
            {"name": "kaos-agent", "version": "0.1.0", "publish": null},
            {"name": "xtask", "version": "0.0.0", "publish": []},
            {"name": "kaos-docs", "version": "0.1.0", "publish": []},
        ]});
        assert_eq!(publishable(&metadata).unwrap(), [("kaos-agent".to_owned(), "0.1.0".to_owned())]);
    }

    #[test]
    fn the_workspace_profiles_are_carried_over() {
        let manifest = "[workspace]\nmembers = []\n\n[profile.dev]\ndebug = \"line-tables-only\"\n\n\
                        [profile.dev.package.\"*\"]\ndebug = false\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\n";
        assert_eq!(
            profiles(manifest),
            "[profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n"
        );
    }

    #[test]
    fn the_scratch_workspace_patches_every_crate_to_its_unpacked_copy() {
        let crates =
            [("kaos-agent".to_owned(), "0.1.0".to_owned()), ("kaos-vfs".to_owned(), "0.1.0".to_owned())];
        assert_eq!(
            scratch_manifest(&crates),
            "[workspace]\nresolver = \"3\"\nmembers = [\n    \"kaos-agent-0.1.0\",\n    \"kaos-vfs-0.1.0\",\n]\n\n\
             [patch.crates-io]\nkaos-agent = { path = \"kaos-agent-0.1.0\" }\nkaos-vfs = { path = \"kaos-vfs-0.1.0\" }\n"
        );
    }
}
