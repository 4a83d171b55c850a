//! From command-line options to settings, an agent, a runtime and a runner.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use kaos_agent::{Agent, AgentConfig, AgentError, ModelRef};
use kaos_runner::Runner;
use kaos_runtime::{Runtime, SettingSource, Settings};
use kaos_vfs::{MemoryVfs, Vfs};

use crate::GlobalArgs;

/// Settings from defaults, `./.env`, the environment and the command line's flags (the
/// flags are explicit overrides, the highest layer).
pub(crate) fn settings(global: &GlobalArgs) -> Result<Settings> {
    let mut loader = Settings::loader().dotenv_file(".env").process_env();
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

/// An agent file, parsed and validated.
pub(crate) struct AgentFile {
    pub(crate) agent: Agent,
    /// Whether the file names a model itself.
    names_model: bool,
}

/// Reads the agent file at `path`. Errors name the file, the field, and the line and column
/// where TOML reports them.
pub(crate) fn load_agent_file(path: &Path) -> Result<AgentFile> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read agent file {shown}"))?;
    let config = AgentConfig::from_toml(&text).map_err(|e| match e {
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
    Ok(AgentFile { agent, names_model })
}

/// The agent to run: `--agent` or the default agent, with its model chosen as
/// `--model` → the agent file's `model` → `KAOS_MODEL` (`.env`) → the offline model.
/// Says on stderr when it falls back to the offline model.
pub(crate) fn agent(global: &GlobalArgs, settings: &Settings) -> Result<Agent> {
    let file = global.agent.as_deref().map(load_agent_file).transpose()?;
    let from_flag = settings.source("model") == Some(SettingSource::Override);
    let (agent, names_model) = match file {
        Some(file) => (file.agent, file.names_model),
        None => (Agent::builder().build()?, false),
    };
    let model = match (&settings.model, from_flag, names_model) {
        (Some(model), true, _) | (Some(model), false, false) => model.clone(),
        (_, _, true) => return Ok(agent),
        (None, _, false) => {
            eprintln!(
                "kaos: no model configured (--model, the agent file's `model` or KAOS_MODEL); \
                 using the offline model {}",
                ModelRef::OFFLINE
            );
            ModelRef::OFFLINE.to_owned()
        }
    };
    if agent.model().as_str() == model {
        return Ok(agent);
    }
    agent.to_builder().model(model).build().map_err(|e| anyhow!("invalid model: {e}"))
}

/// The runtime the CLI runs in: the data directory as a disk VFS and the built-in VFS tools.
/// With `create` false a missing data directory is read as empty and not created.
pub(crate) fn runtime(settings: &Settings, create: bool) -> Result<Runtime> {
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
    Ok(Runtime::builder().vfs(vfs).builtin_tools()?.settings(settings.clone()).build())
}

/// The object-store VFS the `vfs.s3_*` settings describe (sessions shared by every process
/// pointing at the same bucket and prefix).
#[cfg(feature = "object-store")]
fn object_store_vfs(settings: &Settings, bucket: &str) -> Result<Arc<dyn Vfs>> {
    use kaos_vfs::{ObjectStoreVfs, S3Config, SecretString};
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
        config = config.with_credentials(id.expose(), SecretString::new(secret.expose()));
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
    let agent = agent(global, &settings)?;
    Ok(Runner::builder(agent, runtime(&settings, true)?).build()?)
}
