//! `cargo xtask tidy`: the checkable architecture invariants, checked over `cargo metadata`.
//!
//! The rules are the tables below; they read like the "Architecture Invariant:" lines of
//! ARCHITECTURE.md and must change together with them.
//!
//! Only normal dependency edges count: dev- and build-dependencies may use anything. Metadata
//! is resolved with `--all-features`, so feature-gated dependencies are checked too. Cargo
//! unifies features across the workspace in that graph, so a check can over-report (a crate
//! shared with another member may show a dependency only that member's features enable) but
//! never under-report.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::Cargo;

/// Architecture Invariant: the crates form a strict hierarchy. Each workspace member may
/// depend on exactly the members listed here, and every member must be listed (a new crate
/// has to be placed in the hierarchy before it can land).
const LAYERS: &[(&str, &[&str])] = &[
    ("kaos-agent", &[]),
    ("kaos-vfs", &[]),
    ("kaos-tools", &["kaos-vfs"]),
    ("kaos-providers", &[]),
    ("kaos-runtime", &["kaos-vfs", "kaos-tools"]),
    ("kaos-session", &["kaos-agent", "kaos-vfs", "kaos-providers"]),
    (
        "kaos-runner",
        &[
            "kaos-agent",
            "kaos-vfs",
            "kaos-tools",
            "kaos-providers",
            "kaos-runtime",
            "kaos-session",
            "kaos-a2a",
        ],
    ),
    (
        "kaos-server",
        &[
            "kaos-agent",
            "kaos-vfs",
            "kaos-tools",
            "kaos-providers",
            "kaos-runtime",
            "kaos-session",
            "kaos-runner",
            "kaos-ingest",
            "kaos-a2a",
        ],
    ),
    (
        "kaos-cli",
        &[
            "kaos-agent",
            "kaos-vfs",
            "kaos-tools",
            "kaos-providers",
            "kaos-runtime",
            "kaos-session",
            "kaos-runner",
            "kaos-server",
            "kaos-ingest",
        ],
    ),
    // The documentation's doctests; it uses every crate, but only as dev-dependencies.
    ("kaos-docs", &[]),
    ("kaos-ingest", &[]),
    // Agent2Agent protocol wire types (and, behind a feature, a client): no workspace crate.
    ("kaos-a2a", &[]),
    ("xtask", &[]),
];

/// Architecture Invariant: the engine is a library. `kaos-runner` and `kaos-session` depend
/// directly on no command-line, REPL or server crate (those live in `kaos-cli` and
/// `kaos-server`), so a library user compiles none of them.
const NO_FRONT_END: &[(&str, &[&str])] =
    &[("kaos-runner", FRONT_END_CRATES), ("kaos-session", FRONT_END_CRATES)];

/// Crates of a command line, a REPL, or an HTTP/MCP server.
const FRONT_END_CRATES: &[&str] = &[
    "clap",
    "rustyline",
    "anyhow",
    "rmcp",
    "hyper",
    "hyper-util",
    "axum",
    "tower-http",
    "utoipa",
    "utoipa-axum",
    "indicatif",
];

/// Architecture Invariant: `kaos-agent` has no async or IO dependency, not even transitively.
/// It is pure data and validation, usable from any context. `kaos-ingest` (bytes to document
/// chunks) is synchronous parsing only, so any engine or tool can call it.
const NO_ASYNC_OR_IO: &[(&str, &[&str])] =
    &[("kaos-agent", ASYNC_OR_IO_CRATES), ("kaos-ingest", ASYNC_OR_IO_CRATES)];

/// Crates that bring an async runtime, async plumbing, sockets or HTTP.
const ASYNC_OR_IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-util",
    "async-trait",
    "futures",
    "futures-util",
    "futures-core",
    "futures-io",
    "async-std",
    "smol",
    "mio",
    "reqwest",
    "hyper",
    "hyper-util",
    "h2",
    "ureq",
    "isahc",
    "surf",
    "curl",
    "socket2",
    "tower",
    "axum",
    "object_store",
];

/// Architecture Invariant: TLS is rustls: no OpenSSL or native-tls anywhere under the engine,
/// so a build needs no system TLS library (checked from the crate every user depends on).
const NO_NATIVE_TLS: &[(&str, &[&str])] =
    &[("kaos-runner", NATIVE_TLS_CRATES), ("kaos-cli", NATIVE_TLS_CRATES)];

/// Crates that bind the platform's TLS library.
const NATIVE_TLS_CRATES: &[&str] = &["native-tls", "openssl", "openssl-sys", "hyper-tls", "tokio-native-tls"];

/// Architecture Invariant: only `kaos-providers` speaks HTTP to model vendors. No other member
/// depends directly on an HTTP client; depending on one through `kaos-providers` is fine.
const HTTP_CLIENTS: &[&str] = &["reqwest", "ureq", "isahc", "surf", "attohttpc", "curl", "hyper"];

/// The members allowed to depend directly on [`HTTP_CLIENTS`].
const HTTP_CLIENT_USERS: &[&str] = &["kaos-providers"];

/// Direct dependencies on an [`HTTP_CLIENTS`] crate that are allowed because they serve HTTP
/// rather than call vendors: `kaos-server` serves MCP over streamable HTTP with hyper's server
/// half (features `server` and `http1`, not `client`). The invariant is about HTTP *clients to
/// model vendors*; an entry here must never be used to make such calls.
const HTTP_SERVER_USES: &[(&str, &str)] = &[("kaos-server", "hyper")];

/// Direct dependencies on an [`HTTP_CLIENTS`] crate that are allowed because they call A2A
/// peers, not model vendors: `kaos-a2a`'s `client` feature (reqwest, optional) is how an agent
/// delegates to a remote agent over the Agent2Agent protocol. Nothing else of `kaos-a2a` uses
/// it, and it must never be used to call a model vendor.
const A2A_CLIENT_USES: &[(&str, &str)] = &[("kaos-a2a", "reqwest")];

/// Every library crate documents its whole public API: its root file carries this attribute.
/// Every member's `Cargo.toml` opts into the workspace lints with `[lints] workspace = true`.
const LIBRARY_ATTRIBUTE: &str = "#![deny(missing_docs)]";

/// Target kinds that make a member a library crate.
const LIBRARY_KINDS: &[&str] = &["lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro"];

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(rustc).arg("-vV").output().context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .ok_or_else(|| anyhow!("`rustc -vV` printed no host triple"))
}

/// Runs every check against the workspace and fails listing every violation.
pub(crate) fn run() -> Result<()> {
    // Only the dependencies of the machine's own platform: a crate that only a wasm or
    // Windows build pulls in (js-sys, windows-sys, …) is not a dependency of this build.
    let host = host_triple()?;
    let json =
        Cargo::new(["metadata", "--format-version", "1", "--all-features", "--filter-platform", &host])
            .stdout()?;
    let metadata: Value = serde_json::from_slice(&json).context("`cargo metadata` printed invalid JSON")?;
    let graph = Graph::from_metadata(&metadata)?;
    let mut violations = check(&graph, &|path| std::fs::read_to_string(path))?;
    violations.extend(check_module_layers(&graph.root)?);
    if violations.is_empty() {
        eprintln!("tidy: {} workspace crates, every invariant holds", graph.members.len());
        return Ok(());
    }
    for violation in &violations {
        eprintln!("tidy: {violation}");
    }
    bail!(
        "tidy found {} violation(s); the rules are the tables at the top of xtask/src/tidy.rs",
        violations.len()
    )
}

/// Every violation of every rule, sorted by rule then message.
fn check(graph: &Graph, read: &dyn Fn(&Path) -> io::Result<String>) -> Result<Vec<Violation>> {
    let mut violations = check_layers(graph);
    violations.extend(check_no_async_or_io(graph));
    violations.extend(check_unreachable(graph, NO_NATIVE_TLS, Rule::NativeTls, "native TLS crates"));
    violations.extend(check_http_clients(graph));
    violations.extend(check_front_end(graph));
    violations.extend(check_docs_and_lints(graph, read)?);
    violations.sort();
    Ok(violations)
}

/// Which rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    Layers,
    NoAsyncOrIo,
    NativeTls,
    HttpClients,
    FrontEnd,
    MissingDocs,
    WorkspaceLints,
    ModuleLayers,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Layers => "layers",
            Rule::NoAsyncOrIo => "no-async-or-io",
            Rule::NativeTls => "no-native-tls",
            Rule::HttpClients => "http-clients",
            Rule::FrontEnd => "no-front-end",
            Rule::MissingDocs => "missing-docs",
            Rule::WorkspaceLints => "workspace-lints",
            Rule::ModuleLayers => "module-layers",
        })
    }
}

/// One broken rule, with a message naming the crates (and path) at fault.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    rule: Rule,
    message: String,
}

impl Violation {
    fn new(rule: Rule, message: impl Into<String>) -> Self {
        Violation { rule, message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.message)
    }
}

/// The workspace as the checks see it: members and the normal-dependency edges between packages.
#[derive(Debug)]
struct Graph {
    root: PathBuf,
    /// Package id → package name, for every package in the resolve.
    names: BTreeMap<String, String>,
    /// Workspace members, sorted by name.
    members: Vec<Member>,
    /// Package id → ids of its normal dependencies, sorted by name.
    normal_deps: BTreeMap<String, Vec<String>>,
}

#[derive(Debug)]
struct Member {
    id: String,
    name: String,
    manifest: PathBuf,
    /// The library target's root file, if the member is a library.
    library: Option<PathBuf>,
}

impl Graph {
    /// Reads the output of `cargo metadata --format-version 1` (with dependencies resolved).
    fn from_metadata(metadata: &Value) -> Result<Graph> {
        let root = PathBuf::from(str_field(metadata, "workspace_root")?);

        let mut names = BTreeMap::new();
        let mut packages = BTreeMap::new();
        for package in array_field(metadata, "packages")? {
            let id = str_field(package, "id")?.to_owned();
            names.insert(id.clone(), str_field(package, "name")?.to_owned());
            packages.insert(id, package);
        }

        let mut members = Vec::new();
        for id in array_field(metadata, "workspace_members")? {
            let id = id.as_str().ok_or_else(|| anyhow!("`workspace_members` holds a non-string"))?;
            let package = packages
                .get(id)
                .ok_or_else(|| anyhow!("workspace member `{id}` is not among the packages"))?;
            let mut library = None;
            for target in array_field(package, "targets")? {
                let is_library = array_field(target, "kind")?
                    .iter()
                    .any(|kind| kind.as_str().is_some_and(|kind| LIBRARY_KINDS.contains(&kind)));
                if is_library {
                    library = Some(PathBuf::from(str_field(target, "src_path")?));
                }
            }
            members.push(Member {
                id: id.to_owned(),
                name: str_field(package, "name")?.to_owned(),
                manifest: PathBuf::from(str_field(package, "manifest_path")?),
                library,
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));

        let resolve = metadata
            .get("resolve")
            .filter(|resolve| !resolve.is_null())
            .ok_or_else(|| anyhow!("`cargo metadata` has no `resolve` graph (was it run with --no-deps?)"))?;
        let mut normal_deps = BTreeMap::new();
        for node in array_field(resolve, "nodes")? {
            let mut deps = Vec::new();
            for dep in array_field(node, "deps")? {
                if is_normal(dep)? {
                    deps.push(str_field(dep, "pkg")?.to_owned());
                }
            }
            deps.sort_by(|a, b| names.get(a).cmp(&names.get(b)).then(a.cmp(b)));
            normal_deps.insert(str_field(node, "id")?.to_owned(), deps);
        }

        Ok(Graph { root, names, members, normal_deps })
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    fn member_named(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }

    fn is_member(&self, id: &str) -> bool {
        self.members.iter().any(|member| member.id == id)
    }

    fn deps_of(&self, id: &str) -> &[String] {
        self.normal_deps.get(id).map_or(&[], Vec::as_slice)
    }

    /// `path` relative to the workspace root, for messages.
    fn display_path<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}

/// [`MODULE_LAYERS`](crate::modules::MODULE_LAYERS): inside each crate listed, no module
/// imports from a layer above its own, and no modules import each other in a cycle.
fn check_module_layers(root: &Path) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    for (krate, layers) in crate::modules::MODULE_LAYERS {
        let sources = crate::modules::read_sources(&root.join(krate).join("src"))?;
        violations.extend(
            crate::modules::check(krate, layers, &sources)
                .into_iter()
                .map(|finding| Violation::new(Rule::ModuleLayers, finding.0)),
        );
    }
    Ok(violations)
}

/// Whether a resolve edge is a normal dependency (on any platform), as opposed to dev or build only.
fn is_normal(dep: &Value) -> Result<bool> {
    match dep.get("dep_kinds") {
        // Cargo before 1.41 did not say; count the edge rather than miss it.
        None => Ok(true),
        Some(kinds) => {
            let kinds = kinds.as_array().ok_or_else(|| anyhow!("`dep_kinds` is not an array"))?;
            Ok(kinds.iter().any(|kind| kind.get("kind").is_some_and(Value::is_null)))
        }
    }
}

/// [`LAYERS`]: every member is classified, and depends only on the members it may.
fn check_layers(graph: &Graph) -> Vec<Violation> {
    let mut violations = Vec::new();
    for member in &graph.members {
        let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == member.name) else {
            violations.push(Violation::new(
                Rule::Layers,
                format!(
                    "workspace member `{}` is not in the layer table; place it in the hierarchy first",
                    member.name
                ),
            ));
            continue;
        };
        for dep in graph.deps_of(&member.id) {
            let dep_name = graph.name(dep);
            if graph.is_member(dep) && !allowed.contains(&dep_name) {
                let rule = if allowed.is_empty() {
                    format!("`{}` may depend on no workspace crate", member.name)
                } else {
                    format!("`{}` may depend only on {}", member.name, quoted_list(allowed))
                };
                violations.push(Violation::new(
                    Rule::Layers,
                    format!("`{}` -> `{dep_name}` breaks the hierarchy: {rule}", member.name),
                ));
            }
        }
    }
    for (name, _) in LAYERS {
        if graph.member_named(name).is_none() {
            violations.push(Violation::new(
                Rule::Layers,
                format!("the layer table lists `{name}`, which is not a workspace member"),
            ));
        }
    }
    violations
}

/// [`NO_ASYNC_OR_IO`]: no forbidden crate is reachable over normal edges. Reports the shortest
/// chain to each forbidden crate met first on its path (not what that crate pulls in itself).
fn check_no_async_or_io(graph: &Graph) -> Vec<Violation> {
    check_unreachable(graph, NO_ASYNC_OR_IO, Rule::NoAsyncOrIo, "async or IO crates")
}

/// For each `(crate, forbidden)` of `table`: no forbidden crate is reachable over normal edges,
/// reported under `rule` with the shortest chain.
fn check_unreachable(graph: &Graph, table: &[(&str, &[&str])], rule: Rule, what: &str) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (crate_name, forbidden) in table {
        let Some(start) = graph.member_named(crate_name) else {
            continue; // check_layers reports a table entry that is not a member.
        };
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start.id.as_str()]);
        let mut seen = BTreeSet::from([start.id.as_str()]);
        while let Some(id) = queue.pop_front() {
            for dep in graph.deps_of(id) {
                if !seen.insert(dep.as_str()) {
                    continue;
                }
                parent.insert(dep, id);
                if !forbidden.contains(&graph.name(dep)) {
                    queue.push_back(dep);
                    continue;
                }
                let mut chain = vec![graph.name(dep)];
                let mut at = dep.as_str();
                while let Some(&up) = parent.get(at) {
                    chain.push(graph.name(up));
                    at = up;
                }
                chain.reverse();
                violations.push(Violation::new(
                    rule,
                    format!(
                        "`{crate_name}` must not depend on {what}, but pulls in `{}`: {}",
                        graph.name(dep),
                        chain.join(" -> ")
                    ),
                ));
            }
        }
    }
    violations
}

/// [`HTTP_CLIENTS`]: only [`HTTP_CLIENT_USERS`] depend on an HTTP client directly.
fn check_http_clients(graph: &Graph) -> Vec<Violation> {
    let mut violations = Vec::new();
    for member in &graph.members {
        if HTTP_CLIENT_USERS.contains(&member.name.as_str()) {
            continue;
        }
        for dep in graph.deps_of(&member.id) {
            let dep_name = graph.name(dep);
            let pair = (member.name.as_str(), dep_name);
            if HTTP_CLIENTS.contains(&dep_name)
                && !HTTP_SERVER_USES.contains(&pair)
                && !A2A_CLIENT_USES.contains(&pair)
            {
                violations.push(Violation::new(
                    Rule::HttpClients,
                    format!(
                        "`{}` depends directly on the HTTP client `{dep_name}`; only {} may speak HTTP \
                         to model vendors",
                        member.name,
                        quoted_list(HTTP_CLIENT_USERS)
                    ),
                ));
            }
        }
    }
    violations
}

/// [`NO_FRONT_END`]: the listed members depend directly on none of the listed crates.
fn check_front_end(graph: &Graph) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (name, forbidden) in NO_FRONT_END {
        let Some(member) = graph.member_named(name) else { continue };
        for dep in graph.deps_of(&member.id) {
            let dep_name = graph.name(dep);
            if forbidden.contains(&dep_name) {
                violations.push(Violation::new(
                    Rule::FrontEnd,
                    format!(
                        "`{name}` depends directly on `{dep_name}`; command-line and server crates belong \
                         in kaos-cli and kaos-server"
                    ),
                ));
            }
        }
    }
    violations
}

/// [`LIBRARY_ATTRIBUTE`] in every library root, `[lints] workspace = true` in every manifest.
fn check_docs_and_lints(graph: &Graph, read: &dyn Fn(&Path) -> io::Result<String>) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    for member in &graph.members {
        let manifest =
            read(&member.manifest).with_context(|| format!("cannot read {}", member.manifest.display()))?;
        if !has_workspace_lints(&manifest) {
            violations.push(Violation::new(
                Rule::WorkspaceLints,
                format!("{} lacks `[lints] workspace = true`", graph.display_path(&member.manifest)),
            ));
        }
        if let Some(library) = &member.library {
            let source = read(library).with_context(|| format!("cannot read {}", library.display()))?;
            if !denies_missing_docs(&source) {
                violations.push(Violation::new(
                    Rule::MissingDocs,
                    format!("{} lacks `{LIBRARY_ATTRIBUTE}`", graph.display_path(library)),
                ));
            }
        }
    }
    Ok(violations)
}

/// Whether a crate root denies (or forbids) `missing_docs` for the whole crate.
fn denies_missing_docs(source: &str) -> bool {
    source.lines().map(str::trim).any(|line| {
        (line.starts_with("#![deny(") || line.starts_with("#![forbid(")) && line.contains("missing_docs")
    })
}

/// Whether a manifest inherits the workspace lints: `[lints]` + `workspace = true`, or the
/// dotted / inline forms `lints.workspace = true`, `lints = { workspace = true }` at top level.
fn has_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line: String =
            line.split('#').next().unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
        if line.starts_with('[') {
            table = Some(line);
            continue;
        }
        let found = match table.as_deref() {
            Some("[lints]") => line == "workspace=true",
            None => line == "lints.workspace=true" || line == "lints={workspace=true}",
            Some(_) => false,
        };
        if found {
            return true;
        }
    }
    false
}

fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value.get(key).and_then(Value::as_str).ok_or_else(|| anyhow!("`cargo metadata`: missing string `{key}`"))
}

fn array_field<'a>(value: &'a Value, key: &str) -> Result<&'a [Value]> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| anyhow!("`cargo metadata`: missing array `{key}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WORKSPACE: &[&str] = &[
        "kaos-agent",
        "kaos-vfs",
        "kaos-tools",
        "kaos-providers",
        "kaos-runtime",
        "kaos-session",
        "kaos-runner",
        "kaos-server",
        "kaos-cli",
        "kaos-ingest",
        "kaos-a2a",
        "kaos-docs",
        "xtask",
    ];

    /// A dependency edge: (from, to, kind), kind `None` for normal, else "dev" or "build".
    type Edge<'a> = (&'a str, &'a str, Option<&'a str>);

    fn id(members: &[&str], name: &str) -> String {
        if members.contains(&name) {
            format!("path+file:///ws/{name}#0.1.0")
        } else {
            format!("registry+https://github.com/rust-lang/crates.io-index#{name}@1.0.0")
        }
    }

    /// Hand-made `cargo metadata` output in cargo's own shape: `members` live under `/ws`
    /// (libraries except `xtask`), every other crate named by an edge is a registry package.
    fn metadata(members: &[&str], edges: &[Edge<'_>]) -> Value {
        let mut names: BTreeSet<&str> = members.iter().copied().collect();
        for (from, to, _) in edges {
            names.insert(from);
            names.insert(to);
        }
        let packages: Vec<Value> = names
            .iter()
            .map(|name| {
                let (kind, file) = if *name == "xtask" { ("bin", "main") } else { ("lib", "lib") };
                json!({
                    "name": name,
                    "version": "1.0.0",
                    "id": id(members, name),
                    "manifest_path": format!("/ws/{name}/Cargo.toml"),
                    "targets": [{
                        "kind": [kind],
                        "crate_types": [kind],
                        "name": name.replace('-', "_"),
                        "src_path": format!("/ws/{name}/src/{file}.rs"),
                    }],
                })
            })
            .collect();
        let nodes: Vec<Value> = names
            .iter()
            .map(|name| {
                let mut deps: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
                for (from, to, kind) in edges {
                    if from == name {
                        deps.entry(to).or_default().push(json!({ "kind": kind, "target": null }));
                    }
                }
                let deps: Vec<Value> = deps
                    .into_iter()
                    .map(|(to, kinds)| {
                        json!({ "name": to.replace('-', "_"), "pkg": id(members, to), "dep_kinds": kinds })
                    })
                    .collect();
                json!({ "id": id(members, name), "dependencies": [], "deps": deps, "features": [] })
            })
            .collect();
        json!({
            "packages": packages,
            "workspace_members": members.iter().map(|name| id(members, name)).collect::<Vec<_>>(),
            "resolve": { "nodes": nodes, "root": null },
            "target_directory": "/ws/target",
            "workspace_root": "/ws",
            "version": 1,
        })
    }

    fn graph(members: &[&str], edges: &[Edge<'_>]) -> Graph {
        match Graph::from_metadata(&metadata(members, edges)) {
            Ok(graph) => graph,
            Err(error) => panic!("fixture does not parse: {error:#}"),
        }
    }

    /// The intended architecture, with the external crates each layer is expected to use.
    const CLEAN: &[Edge<'_>] = &[
        ("kaos-agent", "serde", None),
        ("kaos-agent", "thiserror", None),
        ("kaos-agent", "tokio", Some("dev")),
        ("kaos-agent", "kaos-vfs", Some("dev")),
        ("serde", "serde_derive", None),
        ("kaos-vfs", "tokio", None),
        ("kaos-vfs", "async-trait", None),
        ("tokio", "mio", None),
        ("kaos-tools", "kaos-vfs", None),
        ("kaos-tools", "rmcp", None),
        ("rmcp", "reqwest", None),
        ("kaos-providers", "reqwest", None),
        ("reqwest", "hyper", None),
        ("kaos-runtime", "kaos-vfs", None),
        ("kaos-runtime", "kaos-tools", None),
        ("kaos-runner", "kaos-agent", None),
        ("kaos-runner", "kaos-vfs", None),
        ("kaos-runner", "kaos-tools", None),
        ("kaos-runner", "kaos-providers", None),
        ("kaos-runner", "kaos-runtime", None),
        ("kaos-runner", "tokio", None),
        ("kaos-runner", "kaos-session", None),
        ("kaos-runner", "criterion", Some("dev")),
        ("kaos-runner", "reqwest", Some("dev")),
        ("kaos-runner", "clap", Some("dev")),
        ("kaos-session", "kaos-agent", None),
        ("kaos-session", "kaos-vfs", None),
        ("kaos-session", "kaos-providers", None),
        ("kaos-server", "kaos-runner", None),
        ("kaos-server", "kaos-session", None),
        ("kaos-server", "rmcp", None),
        ("kaos-server", "hyper", None),
        ("kaos-cli", "kaos-runner", None),
        ("kaos-cli", "kaos-server", None),
        ("kaos-cli", "clap", None),
        ("kaos-cli", "anyhow", None),
        ("kaos-ingest", "pdf-extract", None),
        ("kaos-ingest", "kaos-providers", Some("dev")),
        ("xtask", "serde_json", None),
    ];

    #[test]
    fn the_intended_architecture_is_clean() {
        let graph = graph(WORKSPACE, CLEAN);
        assert_eq!(check_layers(&graph), vec![]);
        assert_eq!(check_no_async_or_io(&graph), vec![]);
        assert_eq!(check_http_clients(&graph), vec![]);
        assert_eq!(check_front_end(&graph), vec![]);
    }

    #[test]
    fn a_front_end_crate_in_the_engine_is_reported() {
        let mut edges = CLEAN.to_vec();
        edges.extend([("kaos-runner", "clap", None), ("kaos-session", "anyhow", None)]);
        assert_eq!(
            check_front_end(&graph(WORKSPACE, &edges)),
            vec![
                Violation::new(
                    Rule::FrontEnd,
                    "`kaos-runner` depends directly on `clap`; command-line and server crates belong in \
                     kaos-cli and kaos-server"
                ),
                Violation::new(
                    Rule::FrontEnd,
                    "`kaos-session` depends directly on `anyhow`; command-line and server crates belong in \
                     kaos-cli and kaos-server"
                ),
            ]
        );
    }

    #[test]
    fn an_edge_against_the_hierarchy_is_named_with_its_rule() {
        let graph = graph(
            WORKSPACE,
            &[
                ("kaos-vfs", "kaos-tools", None),
                ("kaos-tools", "kaos-vfs", None),
                ("kaos-tools", "kaos-runtime", None),
                ("kaos-providers", "kaos-vfs", Some("build")),
            ],
        );
        assert_eq!(
            check_layers(&graph),
            vec![
                Violation::new(
                    Rule::Layers,
                    "`kaos-tools` -> `kaos-runtime` breaks the hierarchy: `kaos-tools` may depend only on `kaos-vfs`"
                ),
                Violation::new(
                    Rule::Layers,
                    "`kaos-vfs` -> `kaos-tools` breaks the hierarchy: `kaos-vfs` may depend on no workspace crate"
                ),
            ]
        );
    }

    #[test]
    fn every_member_must_be_in_the_layer_table_and_every_entry_a_member() {
        let members: Vec<&str> =
            WORKSPACE.iter().copied().filter(|name| *name != "xtask").chain(["kaos-mcp"]).collect();
        let graph = graph(&members, &[]);
        assert_eq!(
            check_layers(&graph),
            vec![
                Violation::new(
                    Rule::Layers,
                    "workspace member `kaos-mcp` is not in the layer table; place it in the hierarchy first"
                ),
                Violation::new(
                    Rule::Layers,
                    "the layer table lists `xtask`, which is not a workspace member"
                ),
            ]
        );
    }

    #[test]
    fn native_tls_under_the_runner_is_reported_with_its_chain() {
        let mut edges = CLEAN.to_vec();
        edges.extend([
            ("kaos-providers", "reqwest", None),
            ("reqwest", "hyper-tls", None),
            ("hyper-tls", "native-tls", None),
        ]);
        assert_eq!(
            check_unreachable(&graph(WORKSPACE, &edges), NO_NATIVE_TLS, Rule::NativeTls, "native TLS crates"),
            vec![
                Violation::new(
                    Rule::NativeTls,
                    "`kaos-runner` must not depend on native TLS crates, but pulls in `hyper-tls`: \
                     kaos-runner -> kaos-providers -> reqwest -> hyper-tls"
                ),
                Violation::new(
                    Rule::NativeTls,
                    "`kaos-cli` must not depend on native TLS crates, but pulls in `hyper-tls`: \
                     kaos-cli -> kaos-runner -> kaos-providers -> reqwest -> hyper-tls"
                ),
            ]
        );
    }

    #[test]
    fn a_transitive_async_dependency_of_kaos_agent_is_reported_with_its_chain() {
        let mut edges = CLEAN.to_vec();
        edges.extend([
            ("kaos-agent", "schema-kit", None),
            ("schema-kit", "remote-refs", None),
            ("remote-refs", "futures-util", None),
            ("futures-util", "futures-core", None),
            ("kaos-agent", "ureq", Some("dev")),
        ]);
        assert_eq!(
            check_no_async_or_io(&graph(WORKSPACE, &edges)),
            vec![Violation::new(
                Rule::NoAsyncOrIo,
                "`kaos-agent` must not depend on async or IO crates, but pulls in `futures-util`: \
                 kaos-agent -> schema-kit -> remote-refs -> futures-util"
            )]
        );
    }

    #[test]
    fn kaos_agent_reaching_async_through_a_workspace_crate_breaks_two_rules() {
        let mut edges = CLEAN.to_vec();
        edges.push(("kaos-agent", "kaos-vfs", None));
        let graph = graph(WORKSPACE, &edges);
        assert_eq!(
            check_no_async_or_io(&graph),
            vec![
                Violation::new(
                    Rule::NoAsyncOrIo,
                    "`kaos-agent` must not depend on async or IO crates, but pulls in `async-trait`: \
                     kaos-agent -> kaos-vfs -> async-trait"
                ),
                Violation::new(
                    Rule::NoAsyncOrIo,
                    "`kaos-agent` must not depend on async or IO crates, but pulls in `tokio`: \
                     kaos-agent -> kaos-vfs -> tokio"
                ),
            ]
        );
        assert_eq!(
            check_layers(&graph),
            vec![Violation::new(
                Rule::Layers,
                "`kaos-agent` -> `kaos-vfs` breaks the hierarchy: `kaos-agent` may depend on no workspace crate"
            )]
        );
    }

    #[test]
    fn kaos_ingest_reaching_tokio_through_a_parser_breaks_the_no_async_rule() {
        let mut edges = CLEAN.to_vec();
        edges.push(("pdf-extract", "tokio", None));
        assert_eq!(
            check_no_async_or_io(&graph(WORKSPACE, &edges)),
            vec![Violation::new(
                Rule::NoAsyncOrIo,
                "`kaos-ingest` must not depend on async or IO crates, but pulls in `tokio`: \
                 kaos-ingest -> pdf-extract -> tokio"
            )]
        );
    }

    #[test]
    fn only_kaos_providers_may_depend_directly_on_an_http_client() {
        let mut edges = CLEAN.to_vec();
        edges.extend([
            ("kaos-runner", "reqwest", None),
            ("kaos-tools", "hyper", None),
            // Allowed: kaos-server serves MCP over HTTP with hyper's server half.
            ("kaos-server", "hyper", None),
            // Allowed: kaos-a2a's client calls A2A peers, not model vendors.
            ("kaos-a2a", "reqwest", None),
        ]);
        assert_eq!(
            check_http_clients(&graph(WORKSPACE, &edges)),
            vec![
                Violation::new(
                    Rule::HttpClients,
                    "`kaos-runner` depends directly on the HTTP client `reqwest`; only `kaos-providers` may \
                     speak HTTP to model vendors"
                ),
                Violation::new(
                    Rule::HttpClients,
                    "`kaos-tools` depends directly on the HTTP client `hyper`; only `kaos-providers` may \
                     speak HTTP to model vendors"
                ),
            ]
        );
    }

    #[test]
    fn libraries_must_deny_missing_docs_and_members_use_workspace_lints() {
        let graph = graph(WORKSPACE, &[]);
        let read = |path: &Path| -> io::Result<String> {
            let path = path.to_string_lossy();
            Ok(match path.as_ref() {
                "/ws/kaos-vfs/src/lib.rs" => "//! VFS\n#![allow(missing_docs)]\n".to_owned(),
                "/ws/kaos-tools/Cargo.toml" => "[package]\nname = \"kaos-tools\"\n".to_owned(),
                "/ws/xtask/Cargo.toml" => {
                    "[package]\nname = \"xtask\"\n\n[lints]\nworkspace = false\n".to_owned()
                }
                manifest if manifest.ends_with("Cargo.toml") => "[lints]\nworkspace = true\n".to_owned(),
                _ => "//! A crate.\n#![deny(missing_docs)]\n".to_owned(),
            })
        };
        assert_eq!(
            check_docs_and_lints(&graph, &read).ok(),
            Some(vec![
                Violation::new(
                    Rule::WorkspaceLints,
                    "kaos-tools/Cargo.toml lacks `[lints] workspace = true`"
                ),
                Violation::new(Rule::MissingDocs, "kaos-vfs/src/lib.rs lacks `#![deny(missing_docs)]`"),
                Violation::new(Rule::WorkspaceLints, "xtask/Cargo.toml lacks `[lints] workspace = true`"),
            ])
        );
    }

    #[test]
    fn workspace_lints_are_recognised_in_every_toml_form() {
        assert!(has_workspace_lints("[package]\nname = \"a\"\n\n[lints]\nworkspace = true # shared\n"));
        assert!(has_workspace_lints("lints.workspace = true\n[package]\nname = \"a\"\n"));
        assert!(has_workspace_lints("lints = { workspace = true }\n"));
        assert!(!has_workspace_lints("[package]\nworkspace = true\n"));
        assert!(!has_workspace_lints("[lints.rust]\nworkspace = true\n"));
        assert!(!has_workspace_lints("# [lints]\n# workspace = true\n"));
    }

    #[test]
    fn missing_docs_may_be_denied_or_forbidden_alongside_other_lints() {
        assert!(denies_missing_docs("//! Crate.\n#![deny(missing_docs)]\n"));
        assert!(denies_missing_docs("#![forbid(unsafe_code, missing_docs)]\n"));
        assert!(!denies_missing_docs("#![warn(missing_docs)]\n"));
        assert!(!denies_missing_docs("// #![deny(missing_docs)]\n"));
    }

    /// An excerpt of real `cargo metadata` output: a member with a renamed normal dependency and
    /// a dev-only one, and an edge listed under both kinds.
    #[test]
    fn reads_cargo_metadata_as_cargo_prints_it() {
        let text = r#"{
          "packages": [
            {"name": "kaos-vfs", "version": "0.1.0", "id": "path+file:///ws/kaos-vfs#0.1.0",
             "manifest_path": "/ws/kaos-vfs/Cargo.toml",
             "targets": [{"kind": ["lib"], "crate_types": ["lib"], "name": "kaos_vfs",
                          "src_path": "/ws/kaos-vfs/src/lib.rs", "edition": "2024"}]},
            {"name": "async-trait", "version": "0.1.92",
             "id": "registry+https://github.com/rust-lang/crates.io-index#async-trait@0.1.92",
             "manifest_path": "/reg/async-trait-0.1.92/Cargo.toml",
             "targets": [{"kind": ["proc-macro"], "name": "async_trait", "src_path": "/reg/lib.rs"}]},
            {"name": "proptest", "version": "1.12.0",
             "id": "registry+https://github.com/rust-lang/crates.io-index#proptest@1.12.0",
             "manifest_path": "/reg/proptest-1.12.0/Cargo.toml",
             "targets": [{"kind": ["lib"], "name": "proptest", "src_path": "/reg/lib.rs"}]},
            {"name": "tokio", "version": "1.54.1",
             "id": "registry+https://github.com/rust-lang/crates.io-index#tokio@1.54.1",
             "manifest_path": "/reg/tokio-1.54.1/Cargo.toml",
             "targets": [{"kind": ["lib"], "name": "tokio", "src_path": "/reg/lib.rs"}]}
          ],
          "workspace_members": ["path+file:///ws/kaos-vfs#0.1.0"],
          "resolve": {
            "nodes": [
              {"id": "path+file:///ws/kaos-vfs#0.1.0", "dependencies": [], "features": [],
               "deps": [
                 {"name": "async_trait",
                  "pkg": "registry+https://github.com/rust-lang/crates.io-index#async-trait@0.1.92",
                  "dep_kinds": [{"kind": null, "target": null}]},
                 {"name": "proptest",
                  "pkg": "registry+https://github.com/rust-lang/crates.io-index#proptest@1.12.0",
                  "dep_kinds": [{"kind": "dev", "target": null}]},
                 {"name": "tokio",
                  "pkg": "registry+https://github.com/rust-lang/crates.io-index#tokio@1.54.1",
                  "dep_kinds": [{"kind": "dev", "target": null}, {"kind": null, "target": "cfg(unix)"}]}
               ]}
            ],
            "root": null
          },
          "target_directory": "/ws/target",
          "workspace_root": "/ws",
          "version": 1
        }"#;
        let metadata: Value = match serde_json::from_str(text) {
            Ok(metadata) => metadata,
            Err(error) => panic!("fixture is not JSON: {error}"),
        };
        let graph = match Graph::from_metadata(&metadata) {
            Ok(graph) => graph,
            Err(error) => panic!("fixture does not parse: {error:#}"),
        };
        let deps: Vec<&str> =
            graph.deps_of("path+file:///ws/kaos-vfs#0.1.0").iter().map(|id| graph.name(id)).collect();
        assert_eq!(deps, vec!["async-trait", "tokio"]);
        assert_eq!(graph.members.len(), 1);
        assert_eq!(graph.members[0].library, Some(PathBuf::from("/ws/kaos-vfs/src/lib.rs")));
    }

    #[test]
    fn metadata_without_a_resolve_graph_is_an_error() {
        let mut metadata = metadata(WORKSPACE, &[]);
        metadata["resolve"] = Value::Null;
        assert!(Graph::from_metadata(&metadata).is_err());
    }
}
