//! The module layers inside a crate, for `cargo xtask tidy`: like the crate [`LAYERS`]
//! table, one table per crate lists its top-level modules bottom first, and a module may
//! import only from its own layer or below. Imports are found by scanning each module's files
//! for `crate::…` paths (`use crate::a::B`, `use crate::{a, b::C}`, `crate::a::f(..)` in
//! code); a name re-exported at the crate root (`pub use a::B;` in `lib.rs`) counts as an
//! import of the module it comes from. Comment lines are skipped. The modules must also import
//! each other without a cycle, within a layer too.
//!
//! [`LAYERS`]: crate::tidy

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, Result};

/// Architecture Invariant: the modules of these crates form layers (bottom first). A module of
/// a crate listed here must be in its table.
pub(crate) const MODULE_LAYERS: &[(&str, &[&[&str]])] = &[(
    "kaos-runner",
    &[
        // Protocol: what crosses the engine boundary, and the errors.
        &["error", "telemetry"],
        &["events", "approval"],
        &["response", "stream"],
        // Guards and hooks.
        &["guard", "hooks", "models"],
        &["emit"],
        // One agent's prepared state, and the bounds of a run.
        &["member"],
        &["context"],
        // The core loop: the guarded model call, tool admission; never names a pattern.
        &["engine"],
        // Patterns: strategies over the loop.
        &["patterns"],
        // One run: take the session, start or resume, drive, commit or pause.
        &["run"],
        // The facade.
        &["runner", "sessions"],
    ],
)];

/// One module importing from a module above it, or a cycle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Finding(pub(crate) String);

/// The source files of a crate's `src/`: path relative to `src/` (with `/`), and text.
pub(crate) type Sources = BTreeMap<String, String>;

/// Reads every `.rs` file under `src`.
pub(crate) fn read_sources(src: &Path) -> Result<Sources> {
    let mut sources = Sources::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap_or(&path);
                let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>();
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                sources.insert(name.join("/"), text);
            }
        }
    }
    Ok(sources)
}

/// The top-level module a file belongs to (`engine/admit.rs` → `engine`), or `None` for the
/// crate root and binaries.
fn module_of(file: &str) -> Option<&str> {
    let first = file.split('/').next()?;
    if file == "lib.rs" || file == "main.rs" || first == "bin" {
        return None;
    }
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// The names `lib.rs` re-exports, by the module they come from (`pub use error::RunError;`).
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut exports = BTreeMap::new();
    let mut statement = String::new();
    for line in lib.lines().map(str::trim) {
        if statement.is_empty() && !(line.starts_with("pub use ") || line.starts_with("pub(crate) use ")) {
            continue;
        }
        statement.push_str(line);
        statement.push(' ');
        if !line.ends_with(';') {
            continue;
        }
        let path = statement.split_once("use ").map_or("", |(_, rest)| rest).trim().trim_end_matches(';');
        if let Some((module, rest)) = path.split_once("::") {
            let module = module.trim();
            for name in group_items(rest) {
                let last = name.rsplit("::").next().unwrap_or(&name).trim();
                let last = last.split(" as ").last().unwrap_or(last).trim();
                if !last.is_empty() && last != "self" {
                    exports.insert(last.to_owned(), module.to_owned());
                }
            }
        }
        statement.clear();
    }
    exports
}

/// The items of `{a, b::{c, d}, e}` (top-level, as written), or the one path given.
fn group_items(text: &str) -> Vec<String> {
    let text = text.trim();
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return vec![text.to_owned()];
    };
    let mut items = Vec::new();
    let (mut depth, mut current) = (0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current.trim().to_owned());
    items.retain(|i| !i.is_empty());
    items
}

/// The first path segments after each `crate::` in `source` (comment lines skipped):
/// `crate::{a, b::C}` gives `a` and `b`.
fn crate_paths(source: &str) -> Vec<String> {
    let code: String =
        source.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut firsts = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `kaos_crate::`, not `crate::`
        }
        if rest.starts_with('{') {
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i + 1);
            for item in group_items(&rest[..end]) {
                firsts.push(first_segment(&item).to_owned());
            }
        } else {
            firsts.push(first_segment(rest).to_owned());
        }
    }
    firsts
}

fn first_segment(path: &str) -> &str {
    let end = path.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(path.len());
    &path[..end]
}

/// Checks `sources` (a crate's `src/`) against `layers`; `krate` names the crate in findings.
pub(crate) fn check(krate: &str, layers: &[&[&str]], sources: &Sources) -> Vec<Finding> {
    let rank: BTreeMap<&str, usize> =
        layers.iter().enumerate().flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i))).collect();
    let exports = sources.get("lib.rs").map(|lib| root_exports(lib)).unwrap_or_default();
    let mut findings = BTreeSet::new();
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (file, source) in sources {
        let Some(module) = module_of(file) else { continue };
        let Some(&from) = rank.get(module) else {
            findings.insert(Finding(format!(
                "{krate}: module `{module}` ({file}) is in no layer of the module table; place it"
            )));
            continue;
        };
        for first in crate_paths(source) {
            let target = if rank.contains_key(first.as_str()) {
                first
            } else if let Some(module) = exports.get(&first) {
                module.clone()
            } else {
                continue;
            };
            if target == module {
                continue;
            }
            let Some(&to) = rank.get(target.as_str()) else { continue };
            if to > from {
                findings.insert(Finding(format!(
                    "{krate}: {file} imports `crate::{target}` from a layer above `{module}`"
                )));
            }
            edges.entry(module).or_default().insert(target);
        }
    }
    for cycle in cycles(&edges) {
        findings
            .insert(Finding(format!("{krate}: modules import each other in a cycle: {}", cycle.join(" → "))));
    }
    findings.into_iter().collect()
}

/// One cycle through each strongly connected component of more than one module, as
/// `a → b → a`.
fn cycles(edges: &BTreeMap<&str, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for &start in edges.keys() {
        if reported.contains(start) {
            continue;
        }
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.to_owned(), vec![start.to_owned()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(node.as_str()).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.to_owned());
                    reported.extend(path.iter().cloned());
                    found.push(cycle);
                    stack.clear();
                    break;
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Sources {
        files.iter().map(|(path, text)| ((*path).to_owned(), (*text).to_owned())).collect()
    }

    const LAYERS: &[&[&str]] = &[&["error"], &["events", "response"], &["engine"], &["runner"]];

    #[test]
    fn downward_imports_pass() {
        let crate_src = sources(&[
            ("lib.rs", "mod error;\npub use error::{RunError, RunStateError};\npub use runner::Runner;\n"),
            ("error.rs", "pub enum RunError {}\n"),
            ("events.rs", "use crate::RunError;\n"),
            ("engine/mod.rs", "use crate::{events::Event, error};\nmod admit;\n"),
            ("engine/admit.rs", "use super::Cx;\nuse crate::engine::state;\n"),
            ("runner.rs", "use crate::engine::{self, Cx};\n/// Not [`crate::Nothing`].\n"),
        ]);
        assert_eq!(check("k", LAYERS, &crate_src), []);
    }

    #[test]
    fn an_upward_import_fails_naming_the_file() {
        let crate_src = sources(&[
            ("lib.rs", "pub use runner::Runner;\n"),
            ("engine/admit.rs", "fn f() { let _ = crate::Runner::builder; }\n"),
            ("runner.rs", "use crate::error;\n"),
        ]);
        assert_eq!(
            check("k", LAYERS, &crate_src),
            [Finding("k: engine/admit.rs imports `crate::runner` from a layer above `engine`".into())]
        );
    }

    /// The fixture: two modules of one layer importing each other (no upward edge at all).
    #[test]
    fn a_cycle_fails_even_within_a_layer() {
        let crate_src = sources(&[
            ("lib.rs", "pub use response::{StopReason, fold};\npub use events::Event;\n"),
            ("events.rs", "use crate::StopReason;\n"),
            ("response.rs", "use crate::{Event, error::RunError};\n"),
        ]);
        assert_eq!(
            check("k", LAYERS, &crate_src),
            [Finding("k: modules import each other in a cycle: events → response → events".into())]
        );
    }

    #[test]
    fn a_module_in_no_layer_fails() {
        let crate_src = sources(&[("stray.rs", "")]);
        assert_eq!(
            check("k", LAYERS, &crate_src),
            [Finding("k: module `stray` (stray.rs) is in no layer of the module table; place it".into())]
        );
    }

    /// The real tree of every crate in the table holds to it.
    #[test]
    fn the_workspace_holds_to_its_module_layers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (krate, layers) in MODULE_LAYERS {
            let sources = read_sources(&root.join(krate).join("src")).unwrap_or_default();
            assert!(!sources.is_empty(), "{krate} has no sources");
            assert_eq!(check(krate, layers, &sources), [], "{krate}");
        }
    }
}
