use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    Capabilities, ModelClient, ModelRequest, ModelResponse, ModelStream, ProviderError, StreamEvent,
};

/// The canonical hash of a request: `sha256:` and the hex digest of its JSON with object keys
/// sorted at every depth and no whitespace. Equal requests have equal keys, whatever the
/// order their fields were built in.
///
/// ```
/// use kaos_providers::{Message, ModelRequest, request_key};
/// let a = ModelRequest::new("openai:gpt-4.1-mini", vec![Message::user("Hi")]);
/// assert_eq!(request_key(&a), request_key(&a.clone()));
/// assert!(request_key(&a).starts_with("sha256:"));
/// assert_ne!(request_key(&a), request_key(&a.clone().with_system("Be brief.")));
/// ```
pub fn request_key(request: &ModelRequest) -> String {
    let value = serde_json::to_value(request).unwrap_or(Value::Null);
    let mut text = String::new();
    write_canonical(&value, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One recorded call: the request, its key and the response it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recording {
    /// [`request_key`] of the request.
    pub key: String,
    /// The request.
    pub request: ModelRequest,
    /// The response.
    pub response: ModelResponse,
}

impl Recording {
    /// A recording of `request` answered by `response`.
    pub fn new(request: ModelRequest, response: ModelResponse) -> Self {
        Self { key: request_key(&request), request, response }
    }
}

/// Where recordings live. Implement it over any storage (a VFS, object storage, …).
pub trait RecordingStore: Send + Sync + fmt::Debug {
    /// Every recording in the store.
    fn load(&self) -> Result<Vec<Recording>, ProviderError>;
    /// Stores `recording`, replacing any with the same key.
    fn save(&self, recording: &Recording) -> Result<(), ProviderError>;
}

/// Recordings as pretty JSON files in a directory, one per request, named after the key's
/// digest (`<hex>.json`); the directory is created on the first save.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    dir: PathBuf,
}

impl DirectoryStore {
    /// A store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of a recording.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.json", key.trim_start_matches("sha256:")))
    }
}

fn store_error(path: &Path, error: impl fmt::Display) -> ProviderError {
    ProviderError::Recording { message: format!("{}: {error}", path.display()) }
}

impl RecordingStore for DirectoryStore {
    fn load(&self) -> Result<Vec<Recording>, ProviderError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(store_error(&self.dir, e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| store_error(&self.dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "json") {
                paths.push(path);
            }
        }
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(|e| store_error(path, e))?;
                serde_json::from_str(&text).map_err(|e| store_error(path, e))
            })
            .collect()
    }

    fn save(&self, recording: &Recording) -> Result<(), ProviderError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| store_error(&self.dir, e))?;
        let path = self.path_of(&recording.key);
        let text = serde_json::to_string_pretty(recording).map_err(|e| store_error(&path, e))?;
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, text).map_err(|e| store_error(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| store_error(&path, e))
    }
}

/// Recordings in memory (tests; no disk side effects). Clones share the recordings.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    recordings: Arc<Mutex<Vec<Recording>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RecordingStore for MemoryStore {
    fn load(&self) -> Result<Vec<Recording>, ProviderError> {
        Ok(self.recordings.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    fn save(&self, recording: &Recording) -> Result<(), ProviderError> {
        let mut recordings = self.recordings.lock().unwrap_or_else(PoisonError::into_inner);
        recordings.retain(|r| r.key != recording.key);
        recordings.push(recording.clone());
        Ok(())
    }
}

#[derive(Debug)]
enum Mode {
    Replay(HashMap<String, Recording>),
    Record { inner: Arc<dyn ModelClient>, store: Arc<dyn RecordingStore> },
}

/// A client that answers from recordings, or records another client's answers.
///
/// In replay mode ([`ReplayClient::replay`]) a request is looked up by [`request_key`]; a
/// miss is a loud [`ProviderError::ReplayMiss`] naming the closest recording (the one sharing
/// most messages and fields with the request) and the first field where they differ. In
/// record mode ([`ReplayClient::record`]) every call goes to the wrapped client and its
/// successful answers are saved.
///
/// ```
/// # use std::sync::Arc;
/// use kaos_providers::{MemoryStore, Message, ModelClient, ModelRequest, ProviderError, ReplayClient, ScriptedClient};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(MemoryStore::new());
/// let live = Arc::new(ScriptedClient::new().with_text("Hello, Ada."));
/// let hi = ModelRequest::new("scripted:x", vec![Message::user("Hi, I am Ada.")]);
/// ReplayClient::record(live, store.clone()).complete(&hi).await?;
///
/// let replay = ReplayClient::replay(store.as_ref())?;
/// assert_eq!(replay.complete(&hi).await?.text, "Hello, Ada.");
/// let other = ModelRequest::new("scripted:x", vec![Message::user("Hi, I am Bob.")]);
/// let miss = replay.complete(&other).await.unwrap_err().to_string();
/// assert!(miss.contains(r#"messages[0].content: recorded "Hi, I am Ada." but requested "Hi, I am Bob.""#), "{miss}");
/// # Ok::<(), ProviderError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ReplayClient {
    mode: Arc<Mode>,
}

impl ReplayClient {
    /// Answers from the recordings of `store` (read once, now).
    pub fn replay(store: &dyn RecordingStore) -> Result<Self, ProviderError> {
        let recordings = store.load()?.into_iter().map(|r| (r.key.clone(), r)).collect();
        Ok(Self { mode: Arc::new(Mode::Replay(recordings)) })
    }

    /// Answers from `recordings`.
    pub fn from_recordings(recordings: impl IntoIterator<Item = Recording>) -> Self {
        Self { mode: Arc::new(Mode::Replay(recordings.into_iter().map(|r| (r.key.clone(), r)).collect())) }
    }

    /// Sends every call to `inner` and saves each successful answer in `store`.
    pub fn record(inner: Arc<dyn ModelClient>, store: Arc<dyn RecordingStore>) -> Self {
        Self { mode: Arc::new(Mode::Record { inner, store }) }
    }

    fn lookup(
        recordings: &HashMap<String, Recording>,
        request: &ModelRequest,
    ) -> Result<ModelResponse, ProviderError> {
        let key = request_key(request);
        if let Some(recording) = recordings.get(&key) {
            return Ok(recording.response.clone());
        }
        let message = match closest(recordings.values(), request) {
            None => "there are no recordings".to_owned(),
            Some(recording) => {
                let recorded = serde_json::to_value(&recording.request).unwrap_or(Value::Null);
                let requested = serde_json::to_value(request).unwrap_or(Value::Null);
                let diff = first_difference("", &recorded, &requested)
                    .unwrap_or_else(|| "no field differs (the key was computed differently)".to_owned());
                format!(
                    "the closest recording is {} ({} recordings); it differs in {diff}",
                    recording.key,
                    recordings.len()
                )
            }
        };
        Err(ProviderError::ReplayMiss { key, message })
    }
}

/// The recording most like `request`: most messages in common, then most equal fields.
fn closest<'a>(
    recordings: impl Iterator<Item = &'a Recording>,
    request: &ModelRequest,
) -> Option<&'a Recording> {
    let score = |r: &Recording| {
        let shared = request.messages.iter().filter(|m| r.request.messages.contains(m)).count();
        let fields = [
            r.request.model == request.model,
            r.request.system == request.system,
            r.request.tools == request.tools,
            r.request.tool_choice == request.tool_choice,
            r.request.sampling == request.sampling,
            r.request.output_schema == request.output_schema,
            r.request.messages.len() == request.messages.len(),
        ];
        (shared, fields.iter().filter(|equal| **equal).count(), std::cmp::Reverse(r.key.clone()))
    };
    recordings.max_by_key(|r| score(r))
}

/// The path of the first difference between two JSON values and both sides, shortened.
fn first_difference(path: &str, recorded: &Value, requested: &Value) -> Option<String> {
    match (recorded, requested) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                first_difference(
                    &child,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            let found = a
                .iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y));
            found.or_else(|| {
                (a.len() != b.len())
                    .then(|| format!("{path}: recorded {} items but requested {}", a.len(), b.len()))
            })
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: recorded {} but requested {}", shorten(a), shorten(b))),
    }
}

fn shorten(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 {
        text
    } else {
        format!("{}…", text.chars().take(80).collect::<String>())
    }
}

#[async_trait]
impl ModelClient for ReplayClient {
    fn capabilities(&self) -> Capabilities {
        match self.mode.as_ref() {
            Mode::Replay(_) => Capabilities::default(),
            Mode::Record { inner, .. } => inner.capabilities(),
        }
    }

    fn price(&self, model: &str) -> Option<crate::ModelPrice> {
        match self.mode.as_ref() {
            Mode::Replay(_) => None,
            Mode::Record { inner, .. } => inner.price(model),
        }
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        match self.mode.as_ref() {
            Mode::Replay(recordings) => Self::lookup(recordings, request),
            Mode::Record { inner, store } => {
                let response = inner.complete(request).await?;
                store.save(&Recording::new(request.clone(), response.clone()))?;
                Ok(response)
            }
        }
    }

    /// Replays as the default stream of `complete`; records by passing the wrapped client's
    /// stream through and saving its `Completed` response.
    fn stream<'a>(&'a self, request: &'a ModelRequest) -> ModelStream<'a> {
        match self.mode.as_ref() {
            Mode::Replay(recordings) => {
                let result = Self::lookup(recordings, request);
                Box::pin(futures::stream::iter(match result {
                    Ok(response) => {
                        let mut events = Vec::new();
                        if !response.text.is_empty() {
                            events.push(Ok(StreamEvent::TextDelta { text: response.text.clone() }));
                        }
                        events.push(Ok(StreamEvent::Completed { response }));
                        events
                    }
                    Err(e) => vec![Err(e)],
                }))
            }
            Mode::Record { inner, store } => Box::pin(inner.stream(request).map(move |item| {
                match item {
                    Ok(StreamEvent::Completed { response }) => store
                        .save(&Recording::new(request.clone(), response.clone()))
                        .map(|()| StreamEvent::Completed { response }),
                    other => other,
                }
            })),
        }
    }
}
