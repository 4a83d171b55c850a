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

    /// [`to_model_text`](ToolResult::to_model_text), taking the result: a lone text part (the
    /// usual result) becomes the text as it is, not copied.
    ///
    /// ```
    /// use kaos_tools::ToolResult;
    /// assert_eq!(ToolResult::text("done").into_model_text(), "done");
    /// assert_eq!(ToolResult::error("no such file").into_model_text(), "Error: no such file");
    /// ```
    pub fn into_model_text(mut self) -> String {
        match self.content.as_mut_slice() {
            [Content::Text { text }] if !self.is_error => std::mem::take(text),
            _ => self.to_model_text(),
        }
    }

    /// [`to_model_text`](ToolResult::to_model_text) without the error prefix.
    pub(crate) fn body_text(&self) -> String {
        match self.content.as_slice() {
            [] => match &self.structured_content {
                Some(value) => value.to_string(),
                None => "(no output)".to_owned(),
            },
            [part] => part.to_model_text(),
            parts => {
                let mut body = String::new();
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        body.push('\n');
                    }
                    match part {
                        Content::Text { text } => body.push_str(text),
                        part => body.push_str(&part.to_model_text()),
                    }
                }
                body
            }
        }
    }

    /// How this result reaches the model ([`tier_result`](crate::tier_result) applies it):
    /// measured on its model text without the `Error: ` prefix, without writing the text out.
    ///
    /// ```
    /// use kaos_tools::{Tier, ToolResult, INLINE_LIMIT};
    /// assert_eq!(ToolResult::text("5").tier(), Tier::Inline);
    /// assert_eq!(ToolResult::text("x".repeat(INLINE_LIMIT)).tier(), Tier::Summary);
    /// ```
    pub fn tier(&self) -> crate::Tier {
        crate::Tier::for_len(self.body_len())
    }

    /// The length in bytes of [`body_text`](ToolResult::body_text), computed without writing
    /// out text parts (what tiering measures).
    pub(crate) fn body_len(&self) -> usize {
        match self.content.as_slice() {
            [] => self.body_text().len(),
            parts => {
                let len = |part: &Content| match part {
                    Content::Text { text } => text.len(),
                    part => part.to_model_text().len(),
                };
                parts.iter().map(len).sum::<usize>() + parts.len() - 1
            }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Content, ToolResult};

    fn shapes() -> Vec<ToolResult> {
        let link = || Content::resource_link("kaos://artifacts/a", "artifact a", Some("text/plain".into()));
        vec![
            ToolResult::text("5"),
            ToolResult::text(""),
            ToolResult::error("boom"),
            ToolResult::json(json!({"n": 3, "s": "é"})),
            ToolResult::new(Vec::new()),
            ToolResult::new(Vec::new()).with_structured_content(json!([1, 2])),
            ToolResult::new(vec![Content::text("a"), Content::json(json!({"k": true})), link()]),
            ToolResult::new(vec![Content::text("a"), Content::text("b")]).with_structured_content(json!(1)),
            ToolResult { is_error: true, ..ToolResult::new(vec![link(), Content::text("x")]) },
        ]
    }

    #[test]
    fn the_measured_length_is_the_length_of_the_text() {
        for result in shapes() {
            assert_eq!(result.body_len(), result.body_text().len(), "{result:?}");
        }
    }

    #[test]
    fn taking_the_model_text_gives_the_same_text() {
        for result in shapes() {
            assert_eq!(result.clone().into_model_text(), result.to_model_text(), "{result:?}");
        }
    }

    #[test]
    fn parts_are_joined_with_newlines() {
        let result =
            ToolResult::new(vec![Content::text("a"), Content::json(json!({"k": 1})), Content::text("b")]);
        assert_eq!(result.to_model_text(), "a\n{\"k\":1}\nb");
    }
}
