//! The core objects: messages and their parts, tasks, their status and artifacts, and the
//! streaming update events (`a2a.proto` sections 4.1 and 4.2).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Free-form metadata (`google.protobuf.Struct`): a JSON object.
pub type Metadata = serde_json::Map<String, Value>;

/// Who sent a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Not set (`ROLE_UNSPECIFIED`); not valid in a message.
    #[serde(rename = "ROLE_UNSPECIFIED")]
    Unspecified,
    /// The client (`ROLE_USER`).
    #[serde(rename = "ROLE_USER")]
    User,
    /// The agent (`ROLE_AGENT`).
    #[serde(rename = "ROLE_AGENT")]
    Agent,
}

/// The lifecycle state of a [`Task`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Not set (`TASK_STATE_UNSPECIFIED`).
    #[serde(rename = "TASK_STATE_UNSPECIFIED")]
    Unspecified,
    /// Acknowledged, not started (`TASK_STATE_SUBMITTED`).
    #[serde(rename = "TASK_STATE_SUBMITTED")]
    Submitted,
    /// Being processed (`TASK_STATE_WORKING`).
    #[serde(rename = "TASK_STATE_WORKING")]
    Working,
    /// Finished successfully (`TASK_STATE_COMPLETED`); terminal.
    #[serde(rename = "TASK_STATE_COMPLETED")]
    Completed,
    /// Finished with an error (`TASK_STATE_FAILED`); terminal.
    #[serde(rename = "TASK_STATE_FAILED")]
    Failed,
    /// Canceled (`TASK_STATE_CANCELED`); terminal.
    #[serde(rename = "TASK_STATE_CANCELED")]
    Canceled,
    /// Waiting for the client's next message (`TASK_STATE_INPUT_REQUIRED`); interrupted.
    #[serde(rename = "TASK_STATE_INPUT_REQUIRED")]
    InputRequired,
    /// The agent declined the task (`TASK_STATE_REJECTED`); terminal.
    #[serde(rename = "TASK_STATE_REJECTED")]
    Rejected,
    /// Waiting for authentication (`TASK_STATE_AUTH_REQUIRED`); interrupted.
    #[serde(rename = "TASK_STATE_AUTH_REQUIRED")]
    AuthRequired,
}

impl TaskState {
    /// Whether the task is over: completed, failed, canceled or rejected. A terminal task
    /// accepts no further message and cannot be canceled or subscribed to.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled | Self::Rejected)
    }

    /// Whether the task waits for the client: input or authentication required.
    #[must_use]
    pub fn is_interrupted(self) -> bool {
        matches!(self, Self::InputRequired | Self::AuthRequired)
    }
}

/// What a [`Part`] holds: exactly one of text, raw bytes, a URL or structured data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PartContent {
    /// Text (`text`).
    Text(String),
    /// File content inline (`raw`, base64 on the wire).
    Raw(#[serde(with = "base64_bytes")] Vec<u8>),
    /// File content by reference (`url`).
    Url(String),
    /// Structured data (`data`, any JSON value).
    Data(Value),
}

/// One piece of a [`Message`] or an [`Artifact`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// The content.
    #[serde(flatten)]
    pub content: PartContent,
    /// Metadata about this part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// A file name, for file content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The media type of the content (`text/plain`, `image/png`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Part {
    /// A text part.
    #[must_use]
    pub fn text(text: impl Into<String>) -> Self {
        Self::from_content(PartContent::Text(text.into()))
    }

    /// A structured-data part.
    #[must_use]
    pub fn data(data: Value) -> Self {
        Self::from_content(PartContent::Data(data))
    }

    /// A file part with inline bytes.
    #[must_use]
    pub fn raw(bytes: Vec<u8>, media_type: impl Into<String>) -> Self {
        Self { media_type: Some(media_type.into()), ..Self::from_content(PartContent::Raw(bytes)) }
    }

    /// A file part by URL.
    #[must_use]
    pub fn url(url: impl Into<String>, media_type: impl Into<String>) -> Self {
        Self { media_type: Some(media_type.into()), ..Self::from_content(PartContent::Url(url.into())) }
    }

    /// A part with this content and nothing else.
    #[must_use]
    pub fn from_content(content: PartContent) -> Self {
        Self { content, metadata: None, filename: None, media_type: None }
    }

    /// The text, when this is a text part.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match &self.content {
            PartContent::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// One communication turn between a client and an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Unique id of the message, chosen by its sender.
    pub message_id: String,
    /// The conversation this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// The task this message continues (a client's follow-up to an `input-required` task) or
    /// belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Who sent it.
    pub role: Role,
    /// The content; at least one part.
    pub parts: Vec<Part>,
    /// Metadata about the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// URIs of the extensions present in this message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Other tasks this message refers to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_task_ids: Vec<String>,
}

impl Message {
    /// A message with these parts and nothing else.
    #[must_use]
    pub fn new(message_id: impl Into<String>, role: Role, parts: Vec<Part>) -> Self {
        Self {
            message_id: message_id.into(),
            context_id: None,
            task_id: None,
            role,
            parts,
            metadata: None,
            extensions: Vec::new(),
            reference_task_ids: Vec::new(),
        }
    }

    /// The text of every text part, joined with newlines.
    #[must_use]
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.parts.iter().filter_map(Part::as_text).collect();
        texts.join("\n")
    }
}

/// The state of a [`Task`] and what goes with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The state.
    pub state: TaskState,
    /// A message from the agent about this status (the question of an `input-required` task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// When the status was recorded: ISO 8601 in UTC (`2025-10-28T10:30:00.000Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

impl TaskStatus {
    /// A status in this state with no message and no timestamp.
    #[must_use]
    pub fn new(state: TaskState) -> Self {
        Self { state, message: None, timestamp: None }
    }
}

/// An output the agent produced for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Unique id of the artifact within its task.
    pub artifact_id: String,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The content.
    pub parts: Vec<Part>,
    /// Metadata about the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// URIs of the extensions present in this artifact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

/// A stateful unit of work: what the agent does for one or more messages of a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Unique id, chosen by the server.
    pub id: String,
    /// The conversation the task belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_id: String,
    /// The current status.
    pub status: TaskStatus,
    /// What the agent produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The messages exchanged for this task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
    /// Metadata about the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A streamed change of a task's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    /// The task.
    pub task_id: String,
    /// The task's conversation.
    pub context_id: String,
    /// The new status.
    pub status: TaskStatus,
    /// Metadata about the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A streamed artifact, or a chunk of one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    /// The task.
    pub task_id: String,
    /// The task's conversation.
    pub context_id: String,
    /// The artifact, or the chunk of it.
    pub artifact: Artifact,
    /// Whether these parts extend the artifact with the same id sent before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append: bool,
    /// Whether this is the artifact's last chunk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_chunk: bool,
    /// Metadata about the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// Bytes as ProtoJSON writes them: standard base64 with padding; read leniently (standard or
/// URL-safe alphabet, padded or not), as ProtoJSON parsers do.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::{DecodePaddingMode, general_purpose};

    use super::{Deserialize, Deserializer, Serializer};

    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(&text)
            .or_else(|_| URL_SAFE.decode(&text))
            .map_err(|error| serde::de::Error::custom(format!("`raw` is not base64: {error}")))
    }
}
