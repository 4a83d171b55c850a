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
//!   `include_bytes!` they compile resolves inside it), and every `include_str!` and
//!   `include_bytes!` of the package's sources, in code that is not compiled here as well
//!   (`#[cfg(doctest)]` modules including a README, doc comments), names a file inside the
//!   package;
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
    /// Every target checked, and every file the sources include found in the package.
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
    fs::write(scratch.join("Cargo.toml"), manifest)
        .context("cannot write the scratch workspace's Cargo.toml")?;
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
            let mut outside = Vec::new();
            for member in &members {
                outside.extend(includes_outside(&scratch.join(member))?);
            }
            if !outside.is_empty() {
                bail!(
                    "packaged sources include files that are not in their package:\n{}",
                    outside.join("\n")
                );
            }
        }
        Verify::Full => {
            in_scratch(&["test", "--workspace", "--all-targets"]).run()?;
            in_scratch(&["test", "--workspace", "--doc"]).run()?;
        }
    }
    let how = match verify {
        Verify::Check => "checked (every target, and every included file)",
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

/// Every `include_str!("…")` and `include_bytes!("…")` in the `.rs` files under `package` (an
/// unpacked crate) whose file is missing or outside the package, as `file: path` lines. A path
/// is relative to the file that includes it.
fn includes_outside(package: &Path) -> Result<Vec<String>> {
    let canonical =
        package.canonicalize().with_context(|| format!("cannot resolve {}", package.display()))?;
    let package = canonical.as_path();
    let mut found = Vec::new();
    let mut dirs = vec![package.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text =
                fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let from = path.parent().unwrap_or(package);
            for included in included_paths(&text) {
                let resolved = from.join(included);
                let inside = resolved.canonicalize().is_ok_and(|file| file.starts_with(package));
                if !inside {
                    found.push(format!("{}: {included}", path.display()));
                }
            }
        }
    }
    Ok(found)
}

/// The string literals given to `include_str!` and `include_bytes!` in `text` (plain literals:
/// what an include names in practice).
fn included_paths(text: &str) -> Vec<&str> {
    let mut paths = Vec::new();
    for macro_call in ["include_str!(\"", "include_bytes!(\""] {
        for (at, _) in text.match_indices(macro_call) {
            let rest = &text[at + macro_call.len()..];
            if let Some(end) = rest.find('"') {
                paths.push(&rest[..end]);
            }
        }
    }
    paths
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

/// Unpacks a `.crate` (a gzipped tar whose entries are under `{name}-{version}/`) into `dir`,
/// its files dated now (`-m`): cargo dates every entry of a `.crate` 2006-07-24, and a build
/// that goes by modification times would take a changed crate for the one it already built.
fn unpack(file: &Path, dir: &Path) -> Result<()> {
    eprintln!("$ tar -xzmf {} -C {}", file.display(), dir.display());
    let status = std::process::Command::new("tar")
        .arg("-xzmf")
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
    fn includes_are_found_in_code_and_doc_comments() {
        let text = "#[cfg(doctest)]\n#[doc = include_str!(\"../README.md\")]\nmod readme {}\n\
                    /// let page = include_str!(\"../../docs/page.md\");\nconst B: &[u8] = include_bytes!(\"data.bin\");\n";
        assert_eq!(included_paths(text), ["../README.md", "../../docs/page.md", "data.bin"]);
    }

    #[test]
    fn an_include_outside_the_package_is_reported() {
        let dir = std::env::temp_dir().join(format!("xtask-includes-{}", std::process::id()));
        let package = dir.join("kaos-x-0.1.0");
        fs::create_dir_all(package.join("src")).unwrap();
        fs::write(dir.join("outside.md"), "x").unwrap();
        fs::write(package.join("README.md"), "x").unwrap();
        fs::write(
            package.join("src/lib.rs"),
            "#[doc = include_str!(\"../README.md\")]\nconst A: &str = include_str!(\"../../outside.md\");\n\
             const B: &str = include_str!(\"missing.txt\");\n",
        )
        .unwrap();
        let package = package.canonicalize().unwrap();
        let found = includes_outside(&package).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let lib = package.join("src/lib.rs");
        assert_eq!(
            found,
            [format!("{}: ../../outside.md", lib.display()), format!("{}: missing.txt", lib.display())]
        );
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
