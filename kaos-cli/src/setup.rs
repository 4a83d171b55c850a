//! From command-line options to settings, an agent, a runtime and a runner.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use kaos_agent::{Agent, AgentConfig, AgentError, ModelRef};
use kaos_runner::Runner;
use kaos_runner::providers::{ModelPrice, Pricing};
use kaos_runtime::{Runtime, SettingSource, Settings};
use kaos_vfs::{MemoryVfs, Vfs};

use crate::GlobalArgs;

/// Settings from defaults, `./.env`, the environment, the agent file's `[providers]` table
/// and the command line's flags (`--set`, `--model`, `--data-dir`: explicit overrides, the
/// highest layer).
pub(crate) fn settings(global: &GlobalArgs) -> Result<Settings> {
    let mut loader = Settings::loader().dotenv_file(".env").process_env();
    if let Some(path) = &global.agent {
        let extras = read_agent_file(path)?.1;
        if !extras.settings.is_empty() {
            loader = loader.file(path.clone(), extras.settings);
        }
    }
    for (key, value) in &global.set {
        loader = loader.set(key.clone(), value.clone());
    }
    if let Some(dir) = &global.data_dir {
        loader = loader.set("runtime.data_dir", dir.display().to_string());
    }
    if let Some(model) = &global.model {
        loader = loader.set("model", model.clone());
    }
    if let Some(sync) = &global.sync {
        loader = loader.set("vfs.sync", sync.clone());
    }
    Ok(loader.load()?)
}

/// What an agent file holds besides the agent: tables the CLI reads, not the agent.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "mcp"), allow(dead_code))]
pub(crate) struct AgentFileExtras {
    /// `[providers]`, as dotted settings keys (`providers.openai_base_url`, …).
    pub(crate) settings: Vec<(String, String)>,
    /// `[pricing."provider:model"]`.
    pub(crate) pricing: BTreeMap<String, ModelPrice>,
    /// `[[mcp_servers]]`.
    pub(crate) mcp_servers: Vec<McpServerEntry>,
    /// The file.
    pub(crate) path: Option<std::path::PathBuf>,
}

/// One `[[mcp_servers]]` table of an agent file: an MCP server whose tools are mounted as
/// `{name}-{tool}`. (Read only with the `mcp` feature; without it the file is refused.)
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(not(feature = "mcp"), allow(dead_code))]
#[serde(deny_unknown_fields)]
pub(crate) struct McpServerEntry {
    /// The prefix of its tools.
    pub(crate) name: String,
    /// stdio: the command to start.
    #[serde(default)]
    command: Option<String>,
    /// stdio: its arguments.
    #[serde(default)]
    args: Vec<String>,
    /// stdio: extra environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Streamable HTTP: the server's URL.
    #[serde(default)]
    url: Option<String>,
    /// Streamable HTTP: the environment variable holding the bearer token.
    #[serde(default)]
    token_env: Option<String>,
    /// Globs over the server's tool names selecting those to mount: all without the key, none
    /// for an empty list (as the agent's own `tools`).
    #[serde(default)]
    tools: Option<Vec<String>>,
}

/// The agent file's text, and the CLI's tables read from it (left in the text: the agent
/// parser skips them, so its error positions are the file's own).
fn read_agent_file(path: &Path) -> Result<(String, AgentFileExtras)> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read agent file {shown}"))?;
    let mut extras = AgentFileExtras { path: Some(path.to_path_buf()), ..AgentFileExtras::default() };
    let Ok(mut table) = text.parse::<toml::Table>() else {
        // Not TOML: the agent parser reports where.
        return Ok((text, extras));
    };
    if let Some(providers) = table.remove("providers") {
        let toml::Value::Table(providers) = providers else {
            bail!(
                "agent file {shown}: `providers` must be a table of settings (e.g. openai_base_url = \"…\")"
            );
        };
        for (key, value) in providers {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    value.to_string()
                }
                other => {
                    bail!("agent file {shown}: providers.{key} must be a string or a number, not {other}")
                }
            };
            extras.settings.push((format!("providers.{key}"), value));
        }
    }
    if let Some(pricing) = table.remove("pricing") {
        extras.pricing = pricing.try_into().map_err(|e: toml::de::Error| {
            anyhow!(
                "agent file {shown}: [pricing.\"provider:model\"] tables need input and output (and optional \
                 cached_input) in USD per million tokens: {}",
                e.message().trim_end()
            )
        })?;
    }
    if let Some(servers) = table.remove("mcp_servers") {
        extras.mcp_servers = servers.try_into().map_err(|e: toml::de::Error| {
            anyhow!(
                "agent file {shown}: [[mcp_servers]] tables take name, command, args, env (stdio) or \
                 url, token_env (streamable HTTP), and tools: {}",
                e.message().trim_end()
            )
        })?;
    }
    Ok((text, extras))
}

/// The agent file's tables that are the `kaos` command's, not the agent's.
const FRONT_END_TABLES: &[&str] = &["providers", "pricing", "mcp_servers"];

/// The prices of the `pricing.file` setting and the agent file's `[pricing]` tables (the agent
/// file's win), keyed by `provider:model`; `None` when neither sets any.
pub(crate) fn pricing(settings: &Settings, extras: &AgentFileExtras) -> Result<Option<Pricing>> {
    let mut models = BTreeMap::new();
    if let Some(file) = &settings.pricing.file {
        let text = std::fs::read_to_string(file).with_context(|| {
            format!("cannot read the pricing file {} (setting pricing.file)", file.display())
        })?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PricingFile {
            #[serde(default)]
            pricing: BTreeMap<String, ModelPrice>,
        }
        let parsed: PricingFile = toml::from_str(&text).map_err(|e| {
            anyhow!("pricing file {} (setting pricing.file): {}", file.display(), e.message().trim_end())
        })?;
        models.extend(parsed.pricing);
    }
    models.extend(extras.pricing.clone());
    if models.is_empty() {
        return Ok(None);
    }
    Ok(Some(Pricing::from_models("user", models)?))
}

/// An agent file, parsed and validated.
pub(crate) struct AgentFile {
    pub(crate) agent: Agent,
    /// Whether the file names a model itself.
    names_model: bool,
    /// The CLI's tables of the file.
    pub(crate) extras: AgentFileExtras,
}

/// Reads the agent file at `path`. Errors name the file, the field, and the line and column
/// where TOML reports them.
pub(crate) fn load_agent_file(path: &Path) -> Result<AgentFile> {
    let shown = path.display();
    let (text, extras) = read_agent_file(path)?;
    let config = AgentConfig::from_toml_skipping(&text, FRONT_END_TABLES).map_err(|e| match e {
        AgentError::Parse { field, line: Some(line), column: Some(column), message, .. } => {
            anyhow!("agent file {shown}, line {line}, column {column}: {message} (field `{field}`)")
        }
        AgentError::Parse { field, message, .. } => {
            anyhow!("agent file {shown}: {message} (field `{field}`)")
        }
        other => anyhow!("agent file {shown}: {other}"),
    })?;
    let names_model = text.parse::<toml::Table>().is_ok_and(|table| table.contains_key("model"));
    let agent = Agent::from_config(config).map_err(|e| anyhow!("agent file {shown}: {e}"))?;
    Ok(AgentFile { agent, names_model, extras })
}

/// The agent to run: `--agent` or the default agent, with its model chosen as
/// `--model` → the agent file's `model` → `KAOS_MODEL` (`.env`) → the offline model.
/// Says on stderr when it falls back to the offline model.
pub(crate) fn agent(global: &GlobalArgs, settings: &Settings) -> Result<(Agent, AgentFileExtras)> {
    agent_saying(global, settings, true)
}

/// [`agent`], saying on stderr that it falls back to the offline model only when `say`.
fn agent_saying(global: &GlobalArgs, settings: &Settings, say: bool) -> Result<(Agent, AgentFileExtras)> {
    let file = global.agent.as_deref().map(load_agent_file).transpose()?;
    let from_flag = settings.source("model") == Some(SettingSource::Override);
    let (agent, names_model, extras) = match file {
        Some(file) => (file.agent, file.names_model, file.extras),
        None => (Agent::builder().build()?, false, AgentFileExtras::default()),
    };
    let model = match (&settings.model, from_flag, names_model) {
        (Some(model), true, _) | (Some(model), false, false) => model.clone(),
        (_, _, true) => return Ok((agent, extras)),
        (None, _, false) => {
            if say {
                eprintln!(
                    "kaos: no model configured (--model, the agent file's `model` or KAOS_MODEL); \
                 using the offline model {}",
                    ModelRef::OFFLINE
                );
            }
            ModelRef::OFFLINE.to_owned()
        }
    };
    if agent.model().as_str() == model {
        return Ok((agent, extras));
    }
    let agent = agent.to_builder().model(model).build().map_err(|e| anyhow!("invalid model: {e}"))?;
    Ok((agent, extras))
}

/// The runtime the CLI runs in: the data directory as a disk VFS and the built-in VFS tools.
/// With `create` false a missing data directory is read as empty and not created.
pub(crate) fn runtime(settings: &Settings, create: bool) -> Result<Runtime> {
    Ok(runtime_builder(settings, create)?.build())
}

/// [`runtime`] with the tools of the agent file's MCP servers mounted.
pub(crate) fn agent_runtime(settings: &Settings, create: bool, extras: &AgentFileExtras) -> Result<Runtime> {
    let mut builder = runtime_builder(settings, create)?;
    for tool in mcp_tools(extras)? {
        builder = builder.tool(tool)?;
    }
    Ok(builder.build())
}

/// Connects to the agent file's MCP servers and returns their selected tools, named
/// `{name}-{tool}`. A server that cannot be reached is an error naming it.
#[cfg(feature = "mcp")]
fn mcp_tools(extras: &AgentFileExtras) -> Result<Vec<Arc<dyn kaos_tools::Tool>>> {
    use kaos_tools::ToolSelector;
    use kaos_tools::mcp_client::{McpClient, McpServerConfig};

    let file =
        extras.path.as_deref().map_or_else(|| "the agent file".to_owned(), |p| p.display().to_string());
    let mut tools = Vec::new();
    for entry in &extras.mcp_servers {
        let name = &entry.name;
        let config = match (&entry.command, &entry.url) {
            (Some(command), None) => {
                let mut config = McpServerConfig::stdio(name.clone(), command.clone(), entry.args.clone());
                for (key, value) in &entry.env {
                    config = config.with_env(key.clone(), value.clone());
                }
                config
            }
            (None, Some(url)) => {
                let mut config = McpServerConfig::http(name.clone(), url.clone());
                if let Some(var) = &entry.token_env {
                    let token = std::env::var(var).map_err(|_| {
                        anyhow!(
                            "MCP server `{name}` ({file}): its token variable {var} (token_env) is not set"
                        )
                    })?;
                    config = config.with_bearer_token(token);
                }
                config
            }
            _ => bail!(
                "MCP server `{name}` ({file}): give either `command` (stdio) or `url` (streamable HTTP)"
            ),
        };
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow!("MCP server `{name}`: no async runtime to connect from"))?;
        let client = tokio::task::block_in_place(|| handle.block_on(McpClient::connect(config)))
            .with_context(|| format!("MCP server `{name}` of {file} is unavailable"))?;
        let selector = entry
            .tools
            .as_ref()
            .map_or_else(|| Ok(ToolSelector::all()), ToolSelector::new)
            .with_context(|| format!("MCP server `{name}` ({file}): tools"))?;
        let prefix = format!("{name}-");
        for tool in client.tools() {
            let mounted = tool.spec().name.to_string();
            if selector.matches(mounted.strip_prefix(&prefix).unwrap_or(&mounted)) {
                tools.push(tool.clone());
            }
        }
    }
    Ok(tools)
}

/// Without the `mcp` feature, MCP servers in an agent file are an error rather than ignored.
#[cfg(not(feature = "mcp"))]
fn mcp_tools(extras: &AgentFileExtras) -> Result<Vec<Arc<dyn kaos_tools::Tool>>> {
    match extras.mcp_servers.first() {
        None => Ok(Vec::new()),
        Some(entry) => bail!(
            "the agent file names the MCP server `{}` but this kaos was built without MCP; rebuild it \
             with `--features mcp`",
            entry.name
        ),
    }
}

fn runtime_builder(settings: &Settings, create: bool) -> Result<kaos_runtime::RuntimeBuilder> {
    let dir = &settings.data_dir;
    let vfs: Arc<dyn Vfs> = if let Some(bucket) = &settings.vfs.s3_bucket {
        object_store_vfs(settings, bucket)?
    } else if create || dir.exists() {
        Arc::new(
            settings.disk_vfs().with_context(|| format!("cannot open data directory {}", dir.display()))?,
        )
    } else {
        Arc::new(MemoryVfs::new())
    };
    Ok(Runtime::builder().vfs(vfs).builtin_tools()?.settings(settings.clone()))
}

/// The object-store VFS the `vfs.s3_*` settings describe (sessions shared by every process
/// pointing at the same bucket and prefix).
#[cfg(feature = "object-store")]
fn object_store_vfs(settings: &Settings, bucket: &str) -> Result<Arc<dyn Vfs>> {
    use kaos_vfs::{ExposeSecret, ObjectStoreVfs, S3Config};
    let s3 = &settings.vfs;
    let mut config = S3Config::new(bucket);
    if let Some(prefix) = &s3.s3_prefix {
        config = config.with_prefix(prefix.clone());
    }
    if let Some(endpoint) = &s3.s3_endpoint {
        config = config.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint.clone());
    }
    if let Some(region) = &s3.s3_region {
        config = config.with_region(region.clone());
    }
    if let (Some(id), Some(secret)) = (&s3.s3_access_key_id, &s3.s3_secret_access_key) {
        config = config.with_credentials(id.expose_secret(), secret.clone());
    }
    if let Some(ttl) = s3.s3_lease_ttl {
        config = config.with_lease_ttl(ttl);
    }
    if let Some(timeout) = s3.s3_lock_timeout {
        config = config.with_lock_timeout(timeout);
    }
    config = config.with_single_writer(s3.s3_single_writer);
    let vfs = ObjectStoreVfs::s3(config)
        .with_context(|| format!("cannot open the S3 bucket {bucket}"))?
        .with_wait_observer(|wait| eprintln!("{}", lock_wait_line(wait)));
    Ok(Arc::new(vfs))
}

/// The line `kaos` prints on stderr, about once a second, while a turn waits for a session's
/// lease held by another process.
#[cfg(feature = "object-store")]
fn lock_wait_line(wait: &kaos_vfs::LockWait) -> String {
    let session = wait.path.file_name().unwrap_or_default().trim_end_matches(".lock").to_owned();
    let holder = match wait.expires_in {
        Some(left) => format!("its lease runs out in {:.1} s unless renewed", left.as_secs_f64()),
        None => "it was just released to an earlier waiter".to_owned(),
    };
    format!(
        "waiting for session {session:?}, in use by another process ({holder}); waited {:.1} s of {:.0} s",
        wait.waited.as_secs_f64(),
        wait.timeout.as_secs_f64()
    )
}

/// Without the `object-store` feature, a bucket setting is an error rather than ignored.
#[cfg(not(feature = "object-store"))]
fn object_store_vfs(_settings: &Settings, bucket: &str) -> Result<Arc<dyn Vfs>> {
    anyhow::bail!(
        "vfs.s3_bucket is set ({bucket}) but this kaos was built without the object store; \
         rebuild with `--features object-store`"
    )
}

/// Settings, agent, runtime (created on disk) and runner, for the commands that run turns.
pub(crate) fn runner(global: &GlobalArgs) -> Result<Runner> {
    let settings = settings(global)?;
    let (agent, extras) = agent(global, &settings)?;
    let runtime = agent_runtime(&settings, true, &extras)?;
    build_runner(&settings, agent, &extras, runtime)
}

/// The runner for commands that read or change sessions without a turn (`docs`, `sessions
/// export`): no model is called, so none is announced, and no MCP server is started.
pub(crate) fn session_runner(global: &GlobalArgs) -> Result<Runner> {
    let settings = settings(global)?;
    let (agent, extras) = agent_saying(global, &settings, false)?;
    build_runner(&settings, agent, &extras, runtime(&settings, true)?)
}

/// The runner of `agent` in `runtime`, with the prices of the settings and the agent file.
pub(crate) fn build_runner(
    settings: &Settings,
    agent: Agent,
    extras: &AgentFileExtras,
    runtime: Runtime,
) -> Result<Runner> {
    let mut builder = Runner::builder(agent, runtime);
    if let Some(pricing) = pricing(settings, extras)? {
        builder = builder.pricing(pricing);
    }
    // `sessions.cache_*`: what a long-running `kaos serve` keeps between turns.
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    if let Some(sessions) = settings.sessions.cache_sessions {
        builder = builder.session_cache(size(sessions));
    }
    if let Some(bytes) = settings.sessions.cache_bytes {
        builder = builder.session_cache_bytes(size(bytes));
    }
    Ok(builder.build()?)
}
