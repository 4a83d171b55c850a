//! `cargo xtask user-crate`: the Rust samples a user pastes into their own crate, compiled and
//! run in a fresh crate outside the workspace, so a sample that needs a dependency the README
//! does not list (as `schemars` once was) fails CI instead of a new user.
//!
//! The README's first-project `[dependencies]` block is marked with
//! `<!-- user-crate: dependencies -->` on the line before its fence, and each sample meant for
//! a user's own `src/main.rs` with `<!-- user-crate -->`. The crate is written to
//! `target/user-crate/` with its own `[workspace]` (so it is not a member of ours), the
//! README's dependencies pointed at this checkout's crates by path, our `Cargo.lock` (the same
//! versions, so nothing is resolved anew) and our dev profile, and built into the workspace's
//! own target directory, so the dependencies already built are not built again. Each sample is
//! one binary, run from a fresh directory; it must exit successfully.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{Cargo, workspace_root};

/// The pages scanned for marked samples.
const PAGES: &[&str] = &["README.md", "docs/tutorials/first-agent.md", "docs/tutorials/the-kaos-command.md"];

const DEPENDENCIES_MARK: &str = "<!-- user-crate: dependencies -->";
const SAMPLE_MARK: &str = "<!-- user-crate -->";

/// A fenced block that follows a mark.
struct Marked {
    mark: String,
    info: String,
    line: usize,
    body: String,
}

/// The fenced blocks of `text` whose fence line directly follows a `<!-- user-crate… -->` line.
fn marked_blocks(text: &str) -> Vec<Marked> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        let mark = line.trim();
        if !mark.starts_with("<!-- user-crate") {
            continue;
        }
        let Some((index, fence)) = lines.next() else { break };
        let Some(info) = fence.trim_start().strip_prefix("```") else {
            found.push(Marked {
                mark: mark.to_owned(),
                info: String::new(),
                line: index + 1,
                body: String::new(),
            });
            continue;
        };
        let mut body = String::new();
        for (_, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        found.push(Marked { mark: mark.to_owned(), info: info.trim().to_owned(), line: index + 1, body });
    }
    found
}

/// A rustdoc sample as plain Rust: hidden lines (`# …`) are part of the program.
fn rust_source(sample: &str) -> String {
    sample
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed == "#" {
                ""
            } else if let Some(rest) = trimmed.strip_prefix("# ") {
                rest
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The README's `[dependencies]` block with every `path = "…/<crate>"` pointed at this
/// checkout's `<crate>` directory (which must exist).
fn dependencies(block: &str, root: &Path) -> Result<String> {
    let mut out = String::new();
    for line in block.lines() {
        if let Some((head, rest)) = line.split_once("path = \"") {
            let (path, tail) = rest.split_once('"').context("unterminated path in the dependencies block")?;
            let name = Path::new(path).file_name().context("a dependency path without a name")?;
            let local = root.join(name);
            if !local.join("Cargo.toml").is_file() {
                bail!("the README's dependency path {path:?} names no crate of this workspace");
            }
            out.push_str(&format!("{head}path = {:?}{tail}\n", local.display().to_string()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !out.trim_start().starts_with("[dependencies]") {
        bail!("the block marked {DEPENDENCIES_MARK} does not start with [dependencies]");
    }
    Ok(out)
}

/// The workspace manifest's `[profile.*]` tables, so the crate builds its dependencies as we
/// do (and finds them already built).
fn profiles(manifest: &str) -> String {
    let mut out = String::new();
    let mut copying = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            copying = line.starts_with("[profile.");
        }
        if copying {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

pub(crate) fn run() -> Result<()> {
    let root = workspace_root();
    let mut deps = None;
    let mut samples: Vec<(String, String)> = Vec::new();
    for page in PAGES {
        let text = std::fs::read_to_string(root.join(page)).with_context(|| format!("cannot read {page}"))?;
        let stem = Path::new(page).file_stem().and_then(|s| s.to_str()).unwrap_or("page").replace('-', "_");
        for block in marked_blocks(&text) {
            let at = format!("{page}:{}", block.line);
            match (block.mark.as_str(), block.info.as_str()) {
                (DEPENDENCIES_MARK, "toml") if deps.is_none() => {
                    deps = Some(dependencies(&block.body, &root)?)
                }
                (DEPENDENCIES_MARK, _) => {
                    bail!("{at}: a second or non-TOML block marked {DEPENDENCIES_MARK}")
                }
                (SAMPLE_MARK, info) if info.split(',').next() == Some("rust") => {
                    let name = format!("{}_{}", stem.to_lowercase(), block.line);
                    samples.push((name, rust_source(&block.body)));
                }
                (mark, info) => {
                    bail!("{at}: {mark} before a ```{info} block (expected ```rust or a known mark)")
                }
            }
        }
    }
    let deps =
        deps.with_context(|| format!("no [dependencies] block marked {DEPENDENCIES_MARK} in README.md"))?;
    if samples.is_empty() {
        bail!("no Rust sample marked {SAMPLE_MARK} in {}", PAGES.join(", "));
    }

    let dir = root.join("target/user-crate");
    let _ = std::fs::remove_dir_all(dir.join("src"));
    std::fs::create_dir_all(dir.join("src/bin"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).context("cannot read Cargo.toml")?;
    let cargo_toml = format!(
        "# Written by `cargo xtask user-crate` from README.md: a user's first project.\n\
         [package]\nname = \"kaos-user-crate\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         # Not a member of the KAOS workspace around it.\n[workspace]\n\n{deps}\n{}",
        profiles(&manifest)
    );
    write(&dir.join("Cargo.toml"), &cargo_toml)?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).context("cannot copy Cargo.lock")?;
    for (name, source) in &samples {
        write(&dir.join(format!("src/bin/{name}.rs")), source)?;
    }

    let target = root.join("target");
    let manifest_path = dir.join("Cargo.toml");
    Cargo::new(["build", "--bins", "--manifest-path"])
        .args(&[manifest_path.display().to_string()])
        .env("CARGO_TARGET_DIR", &target)
        .run()
        .context("the README's samples do not build in a fresh crate with the README's [dependencies]")?;
    for (name, _) in &samples {
        let run_dir = std::env::temp_dir().join(format!("kaos-user-crate-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&run_dir).context("cannot create a temporary directory")?;
        let binary: PathBuf = target.join("debug").join(name);
        eprintln!("$ {}", binary.display());
        let status = std::process::Command::new(&binary)
            .current_dir(&run_dir)
            .env_remove("KAOS_MODEL")
            .status()
            .with_context(|| format!("cannot run {}", binary.display()));
        let _ = std::fs::remove_dir_all(&run_dir);
        let status = status?;
        if !status.success() {
            bail!("the sample {name} failed in a fresh crate ({status})");
        }
    }
    eprintln!("user-crate: {} sample(s) built and run in {}", samples.len(), dir.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_blocks_and_their_sources() {
        let page =
            "x\n<!-- user-crate -->\n```rust\n# use a::b;\nfn main() {}\n```\n\n```rust\nnot marked\n```\n";
        let blocks = marked_blocks(page);
        assert_eq!(blocks.len(), 1);
        assert_eq!((blocks[0].info.as_str(), blocks[0].line), ("rust", 3));
        assert_eq!(rust_source(&blocks[0].body), "use a::b;\nfn main() {}\n");
    }

    #[test]
    fn dependency_paths_point_at_this_checkout() {
        let root = workspace_root();
        let block = "[dependencies]\nkaos-agent = { path = \"../kaos-rs/kaos-agent\" }\nserde = \"1\"\n";
        let out = dependencies(block, &root).unwrap();
        assert!(
            out.contains(&format!("path = {:?}", root.join("kaos-agent").display().to_string())),
            "{out}"
        );
        assert!(dependencies("[dependencies]\nx = { path = \"../nope\" }\n", &root).is_err());
        assert_eq!(profiles("[a]\nb = 1\n[profile.dev]\ndebug = 0\n[c]\n"), "[profile.dev]\ndebug = 0\n");
    }
}
