//! Checks over the pages of `docs/` that are not code samples (those are doctests of this
//! crate's library).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Every ```toml block of the docs is an agent file, and must be a valid one.
#[test]
fn the_agent_files_in_the_docs_are_valid() {
    fn markdown(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                markdown(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    markdown(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), &mut files);
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for block in text.split("```toml\n").skip(1) {
            let toml = block.split("\n```").next().unwrap();
            // The `kaos` command's own tables (`[providers]`, `[pricing."p:m"]`,
            // `[[mcp_servers]]`) sit beside the agent's fields; the rest is the agent.
            let mut table: toml::Table =
                toml.parse().unwrap_or_else(|e| panic!("{}: {e}\n{toml}", file.display()));
            // A Cargo manifest (a guide's `[dependencies]`) is not an agent file.
            if ["package", "dependencies", "dev-dependencies"].iter().any(|key| table.contains_key(*key)) {
                continue;
            }
            for cli_table in ["providers", "pricing", "mcp_servers"] {
                table.remove(cli_table);
            }
            let agent = toml::to_string(&table).unwrap();
            if let Err(error) = kaos_agent::Agent::from_toml(&agent) {
                panic!("{}: {error}\n{toml}", file.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked}");
}

/// Every excerpt of a file in the docs (a ```rust,ignore or ```toml block whose first line is a
/// comment naming a file under `examples/`) is still in that file, word for word: the guide to
/// custom crates shows the example crates' code without copying it out of step.
#[test]
fn the_excerpts_of_files_are_in_those_files() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = docs.parent().unwrap();
    let mut checked = 0;
    for page in ["guides/custom-crates.md"] {
        let text = std::fs::read_to_string(docs.join(page)).unwrap();
        for (fence, comment) in [("```rust,ignore\n", "// "), ("```toml\n", "# ")] {
            for block in text.split(fence).skip(1) {
                let block = block.split("\n```").next().unwrap();
                let mut lines = block.lines();
                let Some(file) = lines.next().and_then(|l| l.strip_prefix(comment)) else { continue };
                if !file.starts_with("examples/") {
                    continue;
                }
                let excerpt: Vec<&str> = lines.collect();
                let source = std::fs::read_to_string(root.join(file))
                    .unwrap_or_else(|e| panic!("{page}: {file}: {e}"));
                let source: Vec<&str> = source.lines().collect();
                assert!(
                    !excerpt.is_empty()
                        && source.windows(excerpt.len()).any(|window| window == excerpt.as_slice()),
                    "{page}: this excerpt is no longer in {file}:\n{}",
                    excerpt.join("\n")
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked}");
}
