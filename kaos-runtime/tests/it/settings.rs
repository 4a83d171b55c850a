//! Settings: one precedence over five layers, each value naming its layer, secrets redacted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use kaos_runtime::{ExposeSecret, REDACTED, RuntimeError, SettingSource, Settings};

fn dotenv(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn each_layer_beats_the_ones_below_it() {
    let (_dir, path) = dotenv(
        "KAOS_MODEL=dotenv:m\nKAOS_RUNTIME_DATA_DIR=/from/dotenv\nKAOS_TOOLS_TIMEOUT_SECS=7\nANTHROPIC_API_KEY=ak\n",
    );
    let settings = Settings::loader()
        .dotenv_file(&path)
        .env_vars([("KAOS_MODEL", "env:m"), ("KAOS_RUNTIME_DATA_DIR", "/from/env")])
        .context("model", "context:m")
        .context("runtime.data_dir", "/from/context")
        .set("runtime.data_dir", "/from/override")
        .load()
        .unwrap();

    let expected = Settings::loader()
        .set("runtime.data_dir", "/from/override")
        .set("model", "context:m")
        .set("tools.timeout_secs", "7")
        .set("providers.anthropic_api_key", "ak")
        .load()
        .unwrap();
    assert_eq!(
        (
            settings.data_dir.clone(),
            settings.model.clone(),
            settings.tool_timeout,
            format!("{:?}", settings.providers),
            settings.providers.anthropic_api_key.as_ref().map(|k| k.expose_secret().to_owned())
        ),
        (
            expected.data_dir.clone(),
            expected.model.clone(),
            expected.tool_timeout,
            format!("{:?}", expected.providers),
            expected.providers.anthropic_api_key.as_ref().map(|k| k.expose_secret().to_owned())
        )
    );
    let sources: Vec<(&str, SettingSource)> =
        settings.entries().into_iter().map(|e| (e.key, e.source)).collect();
    assert_eq!(
        sources,
        vec![
            ("runtime.data_dir", SettingSource::Override),
            ("model", SettingSource::Context),
            (
                "tools.timeout_secs",
                SettingSource::DotEnv { path: path.clone(), var: "KAOS_TOOLS_TIMEOUT_SECS".into() }
            ),
            ("providers.openai_api_key", SettingSource::Default),
            (
                "providers.anthropic_api_key",
                SettingSource::DotEnv { path: path.clone(), var: "ANTHROPIC_API_KEY".into() }
            ),
            ("providers.gemini_api_key", SettingSource::Default),
            ("vfs.sync", SettingSource::Default),
            ("providers.openai_base_url", SettingSource::Default),
            ("providers.openai_organization", SettingSource::Default),
            ("providers.openai_project", SettingSource::Default),
            ("providers.anthropic_base_url", SettingSource::Default),
            ("providers.gemini_base_url", SettingSource::Default),
            ("providers.openai_compatible_base_url", SettingSource::Default),
            ("providers.openai_compatible_api_key", SettingSource::Default),
            ("docs.max_file_bytes", SettingSource::Default),
            ("docs.chunk_tokens", SettingSource::Default),
            ("docs.max_chunks_per_session", SettingSource::Default),
            ("providers.max_output_tokens", SettingSource::Default),
            ("providers.timeout_secs", SettingSource::Default),
            ("providers.max_retries", SettingSource::Default),
            ("providers.max_retry_wait_secs", SettingSource::Default),
            ("providers.openai_max_output_tokens", SettingSource::Default),
            ("providers.openai_timeout_secs", SettingSource::Default),
            ("providers.openai_max_retries", SettingSource::Default),
            ("providers.openai_max_retry_wait_secs", SettingSource::Default),
            ("providers.anthropic_max_output_tokens", SettingSource::Default),
            ("providers.anthropic_timeout_secs", SettingSource::Default),
            ("providers.anthropic_max_retries", SettingSource::Default),
            ("providers.anthropic_max_retry_wait_secs", SettingSource::Default),
            ("providers.gemini_max_output_tokens", SettingSource::Default),
            ("providers.gemini_timeout_secs", SettingSource::Default),
            ("providers.gemini_max_retries", SettingSource::Default),
            ("providers.gemini_max_retry_wait_secs", SettingSource::Default),
            ("providers.openai_compatible_max_output_tokens", SettingSource::Default),
            ("providers.openai_compatible_timeout_secs", SettingSource::Default),
            ("providers.openai_compatible_max_retries", SettingSource::Default),
            ("providers.openai_compatible_max_retry_wait_secs", SettingSource::Default),
            ("pricing.file", SettingSource::Default),
            ("vfs.s3_bucket", SettingSource::Default),
            ("vfs.s3_prefix", SettingSource::Default),
            ("vfs.s3_endpoint", SettingSource::Default),
            ("vfs.s3_region", SettingSource::Default),
            ("vfs.s3_access_key_id", SettingSource::Default),
            ("vfs.s3_secret_access_key", SettingSource::Default),
            ("vfs.s3_lease_ttl_secs", SettingSource::Default),
            ("vfs.s3_lock_timeout_secs", SettingSource::Default),
            ("vfs.s3_single_writer", SettingSource::Default),
            ("mcp.token", SettingSource::Default),
            ("mcp.tokens", SettingSource::Default),
            ("sessions.cache_sessions", SettingSource::Default),
            ("sessions.cache_bytes", SettingSource::Default),
            ("vfs.io_threads", SettingSource::Default),
        ]
    );
}

#[test]
fn defaults_when_nothing_is_set() {
    let settings = Settings::loader().env_vars(Vec::<(String, String)>::new()).load().unwrap();
    assert_eq!(format!("{settings:?}"), format!("{:?}", Settings::default()));
    assert_eq!(settings.data_dir, PathBuf::from(".kaos"));
    assert_eq!(settings.tool_timeout, Duration::from_secs(60));
    assert!(settings.entries().iter().all(|e| e.source == SettingSource::Default));
}

#[test]
fn the_kaos_name_beats_the_vendor_name_and_empty_values_are_unset() {
    let settings = Settings::from_lookup(|var| match var {
        "KAOS_PROVIDERS_OPENAI_API_KEY" => Some("kaos-key".into()),
        "OPENAI_API_KEY" => Some("vendor-key".into()),
        "KAOS_MODEL" => Some(String::new()),
        _ => None,
    })
    .unwrap();
    assert_eq!(settings.providers.openai_api_key.as_ref().map(|k| k.expose_secret()), Some("kaos-key"));
    assert_eq!(settings.model, None);
    assert_eq!(
        settings.source("providers.openai_api_key"),
        Some(SettingSource::Env { var: "KAOS_PROVIDERS_OPENAI_API_KEY".into() })
    );
    assert_eq!(settings.source("no.such.key"), None);
}

#[test]
fn secrets_never_print() {
    let settings = Settings::loader().env_vars([("GEMINI_API_KEY", "g-secret")]).load().unwrap();
    let shown = format!("{settings:?} {}", serde_json::to_string(&settings.entries()).unwrap());
    assert!(!shown.contains("g-secret"), "{shown}");
    let entry = settings.entries().into_iter().find(|e| e.key == "providers.gemini_api_key").unwrap();
    assert_eq!(entry.value.as_deref(), Some(REDACTED));
}

fn setting_error(result: Result<Settings, RuntimeError>) -> (String, String) {
    match result {
        Err(RuntimeError::Setting { key, message }) => (key, message),
        other => panic!("expected a setting error, got {other:?}"),
    }
}

#[test]
fn a_bad_value_names_its_key_and_layer() {
    let (key, message) = setting_error(Settings::from_lookup(|var| {
        (var == "KAOS_TOOLS_TIMEOUT_SECS").then(|| "soon".to_owned())
    }));
    assert_eq!(key, "tools.timeout_secs");
    assert!(message.contains("environment variable KAOS_TOOLS_TIMEOUT_SECS"), "{message}");

    let (key, message) = setting_error(Settings::loader().set("tools.timeout_secs", "-1").load());
    assert_eq!((key.as_str(), message.contains("positive")), ("tools.timeout_secs", true), "{message}");

    let (key, message) = setting_error(Settings::loader().context("modle", "x").load());
    assert_eq!((key.as_str(), message.contains("unknown setting")), ("modle", true));

    // A vendor's own limits are checked like the vendor-wide ones.
    let (key, message) = setting_error(Settings::from_lookup(|var| {
        (var == "KAOS_PROVIDERS_ANTHROPIC_TIMEOUT_SECS").then(|| "0".to_owned())
    }));
    assert_eq!(key, "providers.anthropic_timeout_secs");
    assert!(
        message.contains("positive") && message.contains("KAOS_PROVIDERS_ANTHROPIC_TIMEOUT_SECS"),
        "{message}"
    );
    let (key, _) =
        setting_error(Settings::loader().set("providers.openai_compatible_max_retries", "many").load());
    assert_eq!(key, "providers.openai_compatible_max_retries");
}

/// A vendor's own limits beat the vendor-wide ones whatever their layers; the rest fall back.
#[test]
fn a_vendors_own_limits_beat_the_vendor_wide_ones() {
    let settings = Settings::loader()
        .env_vars([("KAOS_PROVIDERS_OPENAI_MAX_OUTPUT_TOKENS", "100"), ("KAOS_PROVIDERS_TIMEOUT_SECS", "30")])
        .set("providers.max_output_tokens", "900")
        .set("providers.gemini_max_retry_wait_secs", "2.5")
        .load()
        .unwrap();
    let openai = settings.providers.limits("openai");
    assert_eq!((openai.max_output_tokens, openai.timeout_secs), (Some(100), Some(30.0)));
    let gemini = settings.providers.limits("gemini");
    assert_eq!((gemini.max_output_tokens, gemini.max_retry_wait_secs), (Some(900), Some(2.5)));
    let custom = settings.providers.limits("upper");
    assert_eq!((custom.max_output_tokens, custom.max_retries), (Some(900), None));
}

#[test]
fn lease_ttl_lock_timeout_and_single_writer_are_settings() {
    let settings = Settings::loader()
        .env_vars([("KAOS_VFS_S3_LEASE_TTL_SECS", "2.5"), ("KAOS_VFS_S3_SINGLE_WRITER", "yes")])
        .set("vfs.s3_lock_timeout_secs", "90")
        .load()
        .unwrap();
    assert_eq!(settings.vfs.s3_lease_ttl, Some(std::time::Duration::from_millis(2_500)));
    assert_eq!(settings.vfs.s3_lock_timeout, Some(std::time::Duration::from_secs(90)));
    assert!(settings.vfs.s3_single_writer);
    assert_eq!(
        settings.source("vfs.s3_lease_ttl_secs"),
        Some(SettingSource::Env { var: "KAOS_VFS_S3_LEASE_TTL_SECS".into() })
    );
    let defaults = Settings::loader().load().unwrap();
    assert_eq!((defaults.vfs.s3_lease_ttl, defaults.vfs.s3_single_writer), (None, false));

    let (key, message) = setting_error(Settings::loader().set("vfs.s3_lease_ttl_secs", "0").load());
    assert_eq!((key.as_str(), message.contains("positive")), ("vfs.s3_lease_ttl_secs", true), "{message}");
    let (key, message) = setting_error(Settings::from_lookup(|var| {
        (var == "KAOS_VFS_S3_SINGLE_WRITER").then(|| "perhaps".to_owned())
    }));
    assert_eq!(key, "vfs.s3_single_writer");
    assert!(message.contains("KAOS_VFS_S3_SINGLE_WRITER"), "{message}");
}

#[test]
fn a_missing_dotenv_file_is_skipped_and_a_malformed_one_is_an_error() {
    let settings = Settings::loader().dotenv_file("/no/such/dir/.env").load().unwrap();
    assert_eq!(format!("{settings:?}"), format!("{:?}", Settings::default()));

    let (_dir, path) = dotenv("KAOS_MODEL='unterminated\n");
    let (key, _) = setting_error(Settings::loader().dotenv_file(&path).load());
    assert_eq!(key, path.display().to_string());
}

/// `vfs.sync` from the environment and code; a value other than `always` or `never` is an
/// error naming the setting.
#[test]
fn vfs_sync_is_read_and_checked() {
    use kaos_runtime::VfsSync;
    assert_eq!(Settings::loader().load().unwrap().vfs.sync, VfsSync::Never);
    let settings = Settings::loader().env_vars([("KAOS_VFS_SYNC", "always")]).load().unwrap();
    assert_eq!(settings.vfs.sync, VfsSync::Always);
    assert_eq!(settings.source("vfs.sync"), Some(SettingSource::Env { var: "KAOS_VFS_SYNC".into() }));
    let settings =
        Settings::loader().env_vars([("KAOS_VFS_SYNC", "always")]).set("vfs.sync", "never").load().unwrap();
    assert_eq!(settings.vfs.sync, VfsSync::Never);
    let err = Settings::loader().env_vars([("KAOS_VFS_SYNC", "sometimes")]).load().unwrap_err();
    assert!(err.to_string().contains("vfs.sync") || err.to_string().contains("KAOS_VFS_SYNC"), "{err}");
}

/// What a long-running `kaos serve` keeps is set by settings: the session cache's bounds and
/// the disk VFS's IO threads; a value that is not a count names its key.
#[test]
fn the_session_cache_and_the_io_threads_are_settings() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::loader()
        .env_vars([("KAOS_SESSIONS_CACHE_SESSIONS", "64"), ("KAOS_VFS_IO_THREADS", "3")])
        .set("sessions.cache_bytes", "1048576")
        .set("runtime.data_dir", dir.path().to_str().unwrap())
        .load()
        .unwrap();
    assert_eq!((settings.sessions.cache_sessions, settings.sessions.cache_bytes), (Some(64), Some(1 << 20)));
    assert_eq!(settings.source("sessions.cache_bytes"), Some(SettingSource::Override));
    assert_eq!(settings.disk_vfs().unwrap().io_threads(), 3);
    let defaults = Settings::loader().set("runtime.data_dir", dir.path().to_str().unwrap()).load().unwrap();
    assert_eq!(defaults.sessions.cache_sessions, None);
    assert_eq!(defaults.disk_vfs().unwrap().io_threads(), kaos_vfs::default_io_threads());

    for key in ["sessions.cache_sessions", "sessions.cache_bytes", "vfs.io_threads"] {
        let (named, _) = setting_error(Settings::loader().set(key, "lots").load());
        assert_eq!(named, key);
        let (named, _) = setting_error(Settings::loader().set(key, "-1").load());
        assert_eq!(named, key);
    }
}
