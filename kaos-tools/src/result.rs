use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One part of a tool result, in the MCP shape (serialized with a `type` tag).
///
/// ```
/// use kaos_tools::Content;
/// let part = Content::text("hello");
/// assert_eq!(serde_json::to_value(&part).unwrap(), serde_json::json!({"type": "text", "text": "hello"}));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Content {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// A JSON value.
    Json {
        /// The value.
        json: Value,
    },
    /// A link to a resource the model (or a tool) can fetch, e.g. a stored artifact.
    ResourceLink {
        /// Where the resource lives, e.g. `kaos://artifacts/{id}`.
        uri: String,
        /// A short human-readable name.
        name: String,
        /// The resource's media type, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
    },
}

impl Content {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text { text: text.into() }
    }

    /// A JSON part.
    pub fn json(json: Value) -> Self {
        Content::Json { json }
    }

    /// A resource link part.
    pub fn resource_link(uri: impl Into<String>, name: impl Into<String>, mime_type: Option<String>) -> Self {
        Content::ResourceLink { uri: uri.into(), name: name.into(), mime_type }
    }

    /// How this part reads as plain text for the model.
    pub fn to_model_text(&self) -> String {
        match self {
            Content::Text { text } => text.clone(),
            Content::Json { json } => json.to_string(),
            Content::ResourceLink { uri, name, mime_type } => match mime_type {
                Some(mime) => format!("[resource {name} ({mime}): {uri}]"),
                None => format!("[resource {name}: {uri}]"),
            },
        }
    }
}

/// What a tool call returns, in the MCP shape: content parts, optional structured content and
/// an error flag.
///
/// An `is_error` result is a *successful call reporting a failure to the model* (the tool ran
/// and has something to say about what went wrong); a [`ToolError`](crate::ToolError) becomes
/// one through [`ToolError::into_result`](crate::ToolError::into_result).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolResult {
    /// The parts, in order.
    #[serde(default)]
    pub content: Vec<Content>,
    /// A machine-readable form of the result, when the tool has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// Whether the result reports a failure.
    #[serde(default)]
    pub is_error: bool,
}

impl ToolResult {
    /// A result made of `content` parts.
    pub fn new(content: Vec<Content>) -> Self {
        Self { content, structured_content: None, is_error: false }
    }

    /// A single text part.
    ///
    /// ```
    /// use kaos_tools::ToolResult;
    /// assert_eq!(ToolResult::text("done").to_model_text(), "done");
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(vec![Content::text(text)])
    }

    /// `value` as structured content, plus its compact JSON text as the content the model reads.
    ///
    /// ```
    /// use kaos_tools::ToolResult;
    /// let result = ToolResult::json(serde_json::json!({"n": 3}));
    /// assert_eq!(result.structured_content, Some(serde_json::json!({"n": 3})));
    /// assert_eq!(result.to_model_text(), r#"{"n":3}"#);
    /// ```
    pub fn json(value: Value) -> Self {
        Self {
            content: vec![Content::text(value.to_string())],
            structured_content: Some(value),
            is_error: false,
        }
    }

    /// An `is_error` result with `message` as its only part.
    ///
    /// ```
    /// use kaos_tools::ToolResult;
    /// let result = ToolResult::error("file not found");
    /// assert!(result.is_error);
    /// assert_eq!(result.to_model_text(), "Error: file not found");
    /// ```
    pub fn error(message: impl Into<String>) -> Self {
        Self { content: vec![Content::text(message)], structured_content: None, is_error: true }
    }

    /// `self` with structured content set to `value` (the content parts are unchanged).
    pub fn with_structured_content(mut self, value: Value) -> Self {
        self.structured_content = Some(value);
        self
    }

    /// `self` with `part` appended.
    pub fn with_content(mut self, part: Content) -> Self {
        self.content.push(part);
        self
    }

    /// The text sent back to the model as the tool message.
    ///
    /// Parts are joined with newlines (JSON parts compact, links as `[resource name: uri]`). With
    /// no parts, the structured content's JSON is used, or `(no output)` when there is none, as
    /// some providers reject empty tool messages. Error results are prefixed with `Error: ` so
    /// the failure is visible even where a provider has no error flag.
    pub fn to_model_text(&self) -> String {
        let body = self.body_text();
        if self.is_error { format!("Error: {body}") } else { body }
    }

    /// [`to_model_text`](ToolResult::to_model_text) without the error prefix.
    pub(crate) fn body_text(&self) -> String {
        if !self.content.is_empty() {
            let parts: Vec<String> = self.content.iter().map(Content::to_model_text).collect();
            parts.join("\n")
        } else if let Some(value) = &self.structured_content {
            value.to_string()
        } else {
            "(no output)".to_owned()
        }
    }
}

impl From<String> for ToolResult {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<&str> for ToolResult {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}
