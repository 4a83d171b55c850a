//! What a client's message asks for: the text of a new turn, or the answer to a paused call.
//! Checked whole before anything runs, so a refused message stores nothing.

use kaos_a2a::{ErrorCode, JsonRpcError, Message, Metadata, PartContent, Role, SendMessageConfiguration};
use kaos_agent::PermissionRule;
use kaos_runner::{Approval, RunOptions};
use kaos_tools::ToolSelector;
use serde::Deserialize;
use serde_json::Value;

use super::card::{JSON, TEXT};

/// The answer to an `input-required` task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// Run the pending call.
    Approve,
    /// Run it, and further calls of the same tool in this run.
    Always,
    /// Do not run it; the model is told why.
    Deny(String),
}

impl Answer {
    pub(super) fn approval(self) -> Approval {
        match self {
            Self::Approve => Approval::approve(),
            Self::Always => Approval::approve_and_remember(),
            Self::Deny(reason) => Approval::deny(reason),
        }
    }
}

/// How a client answers a paused call, as the `input-required` status message says.
pub(super) const HOW_TO_ANSWER: &str = "Answer with a message to this task: `approve`, `always` \
     (this tool, for the rest of the run) or `deny <reason>` as text, or a data part \
     {\"decision\": \"approve\" | \"always\" | \"deny\", \"reason\": \"…\"}.";

fn invalid(message: impl Into<String>) -> JsonRpcError {
    JsonRpcError::new(ErrorCode::InvalidParams, message)
}

/// Media types of file parts read as text.
fn is_textual(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence.starts_with("text/") || essence == JSON || essence.ends_with("+json")
}

/// Checks the message and the configuration, and returns the turn's text: text parts as they
/// are, JSON data parts as JSON text, textual file parts decoded as UTF-8, joined by blank
/// lines.
pub(super) fn turn_text(
    message: &Message,
    configuration: Option<&SendMessageConfiguration>,
    max_part_bytes: usize,
) -> Result<String, JsonRpcError> {
    check_envelope(message, configuration)?;
    let mut texts = Vec::with_capacity(message.parts.len());
    for (index, part) in message.parts.iter().enumerate() {
        let field = format!("message.parts[{index}]");
        let too_large = |bytes: usize| {
            invalid(format!("{field} is {bytes} bytes, over the limit of {max_part_bytes} bytes"))
        };
        let text = match &part.content {
            PartContent::Text(text) => text.clone(),
            PartContent::Data(data) => {
                serde_json::to_string_pretty(data).map_err(|e| invalid(format!("{field}: {e}")))?
            }
            PartContent::Raw(bytes) => {
                let media_type = part.media_type.as_deref().unwrap_or_default();
                if !is_textual(media_type) {
                    let shown = if media_type.is_empty() { "no media type" } else { media_type };
                    return Err(JsonRpcError::new(
                        ErrorCode::ContentTypeNotSupported,
                        format!("{field}: a file of {shown} is not supported; send text/*, application/json or text parts"),
                    )
                    .with_metadata("field", field));
                }
                if bytes.len() > max_part_bytes {
                    return Err(too_large(bytes.len()));
                }
                let text = String::from_utf8(bytes.clone())
                    .map_err(|_| invalid(format!("{field}: a {media_type} file must be UTF-8")))?;
                match &part.filename {
                    Some(name) => format!("{name}:\n{text}"),
                    None => text,
                }
            }
            PartContent::Url(_) => {
                return Err(JsonRpcError::new(
                    ErrorCode::ContentTypeNotSupported,
                    format!("{field}: file parts by URL are not fetched; send the bytes (`raw`) or text"),
                )
                .with_metadata("field", field));
            }
        };
        if text.len() > max_part_bytes {
            return Err(too_large(text.len()));
        }
        texts.push(text);
    }
    let text = texts.join("\n\n");
    if text.trim().is_empty() {
        return Err(invalid("message.parts: the message has no text"));
    }
    Ok(text)
}

/// A request's guardrails, as the `/v1` API's turn options: `metadata.kaos` of the request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Guardrails {
    /// Tool-name globs approved in advance for this turn (the agent's deny rules still apply).
    #[serde(default)]
    approve: Vec<String>,
    /// Most this turn may cost, in USD.
    #[serde(default)]
    max_cost_usd: Option<f64>,
}

/// The run's options from the request's `metadata.kaos` (`approve` globs, `max_cost_usd`).
pub(super) fn run_options(metadata: Option<&Metadata>) -> Result<RunOptions, JsonRpcError> {
    let Some(kaos) = metadata.and_then(|m| m.get("kaos")) else { return Ok(RunOptions::default()) };
    let guardrails: Guardrails = serde_json::from_value(kaos.clone())
        .map_err(|e| invalid(format!("metadata.kaos: {e} (it takes `approve` and `max_cost_usd`)")))?;
    ToolSelector::new(&guardrails.approve).map_err(|e| invalid(format!("metadata.kaos.approve: {e}")))?;
    let mut options = RunOptions::default();
    for glob in guardrails.approve {
        options = options.with_permission(PermissionRule::allow(glob));
    }
    if let Some(cap) = guardrails.max_cost_usd {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(invalid("metadata.kaos.max_cost_usd must be a positive number of USD"));
        }
        options = options.with_max_cost_usd(cap);
    }
    Ok(options)
}

/// The answer a follow-up message gives to a paused call.
pub(super) fn answer(message: &Message, max_part_bytes: usize) -> Result<Answer, JsonRpcError> {
    check_envelope(message, None)?;
    for part in &message.parts {
        match &part.content {
            PartContent::Data(Value::Object(data)) if data.contains_key("decision") => {
                let reason = data.get("reason").and_then(Value::as_str).map(str::to_owned);
                return match data.get("decision").and_then(Value::as_str) {
                    Some(decision) => parse(decision, reason.unwrap_or_default()),
                    None => Err(invalid(format!("`decision` must be a string. {HOW_TO_ANSWER}"))),
                };
            }
            PartContent::Text(text) if text.len() > max_part_bytes => {
                return Err(invalid(format!("the answer is over the limit of {max_part_bytes} bytes")));
            }
            PartContent::Text(text) if !text.trim().is_empty() => {
                let text = text.trim();
                let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
                let word = word.trim_matches(|c: char| !c.is_alphanumeric());
                return parse(word, rest.trim().to_owned());
            }
            _ => {}
        }
    }
    Err(invalid(format!("the task waits for an approval. {HOW_TO_ANSWER}")))
}

fn parse(word: &str, reason: String) -> Result<Answer, JsonRpcError> {
    match word.to_ascii_lowercase().as_str() {
        "approve" | "approved" | "yes" | "y" | "ok" => Ok(Answer::Approve),
        "always" => Ok(Answer::Always),
        "deny" | "denied" | "no" | "n" | "reject" => {
            Ok(Answer::Deny(if reason.is_empty() { "denied by the A2A client".to_owned() } else { reason }))
        }
        other => Err(invalid(format!("`{other}` is not an answer. {HOW_TO_ANSWER}"))),
    }
}

fn check_envelope(
    message: &Message,
    configuration: Option<&SendMessageConfiguration>,
) -> Result<(), JsonRpcError> {
    if message.role != Role::User {
        return Err(invalid("message.role must be ROLE_USER"));
    }
    if message.message_id.trim().is_empty() {
        return Err(invalid("message.messageId must not be empty"));
    }
    if message.parts.is_empty() {
        return Err(invalid("message.parts must hold at least one part"));
    }
    if let Some(configuration) = configuration {
        let modes = &configuration.accepted_output_modes;
        let fits = |mode: &String| {
            let mode = mode.trim().to_ascii_lowercase();
            mode == TEXT || mode == "text/*" || mode == "*/*"
        };
        if !modes.is_empty() && !modes.iter().any(fits) {
            return Err(JsonRpcError::new(
                ErrorCode::ContentTypeNotSupported,
                format!("the agent answers in {TEXT}, which acceptedOutputModes {modes:?} does not include"),
            ));
        }
        if configuration.task_push_notification_config.is_some() {
            return Err(JsonRpcError::new(
                ErrorCode::PushNotificationNotSupported,
                "push notifications are not supported; stream the task or poll it with GetTask",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kaos_a2a::Part;
    use serde_json::json;

    use super::*;

    fn message(parts: Vec<Part>) -> Message {
        Message::new("m", Role::User, parts)
    }

    #[test]
    fn text_data_and_textual_files_make_the_turn_text() {
        let parts = vec![
            Part::text("Summarize:"),
            Part { filename: Some("a.md".into()), ..Part::raw(b"# A".to_vec(), "text/markdown") },
            Part::data(json!({"k": 1})),
        ];
        let text = turn_text(&message(parts), None, 1024).unwrap();
        assert_eq!(text, "Summarize:\n\na.md:\n# A\n\n{\n  \"k\": 1\n}");
    }

    #[test]
    fn binary_files_urls_and_oversized_parts_are_refused_with_the_protocol_codes() {
        let code = |parts, limit| turn_text(&message(parts), None, limit).unwrap_err().code;
        assert_eq!(code(vec![Part::raw(vec![0x89, b'P'], "image/png")], 1024), -32005);
        assert_eq!(code(vec![Part::url("https://x.test/a.pdf", "application/pdf")], 1024), -32005);
        assert_eq!(code(vec![Part::text("x".repeat(11))], 10), -32602);
        assert_eq!(code(vec![Part::raw(vec![b'x'; 11], "text/plain")], 10), -32602);
        assert_eq!(code(vec![], 10), -32602);
        assert_eq!(code(vec![Part::text("  ")], 10), -32602);
        let mut agent = message(vec![Part::text("hi")]);
        agent.role = Role::Agent;
        assert_eq!(turn_text(&agent, None, 10).unwrap_err().code, -32602);
        let images = SendMessageConfiguration {
            accepted_output_modes: vec!["image/png".into()],
            ..Default::default()
        };
        assert_eq!(turn_text(&message(vec![Part::text("hi")]), Some(&images), 10).unwrap_err().code, -32005);
    }

    #[test]
    fn answers_are_words_or_a_decision_data_part() {
        let answer_of = |parts| answer(&message(parts), 1024);
        assert_eq!(answer_of(vec![Part::text("Approve.")]).unwrap(), Answer::Approve);
        assert_eq!(answer_of(vec![Part::text("always")]).unwrap(), Answer::Always);
        assert_eq!(
            answer_of(vec![Part::text("deny not that file")]).unwrap(),
            Answer::Deny("not that file".into())
        );
        assert_eq!(
            answer_of(vec![Part::data(json!({"decision": "deny", "reason": "no"}))]).unwrap(),
            Answer::Deny("no".into())
        );
        assert_eq!(answer_of(vec![Part::text("maybe")]).unwrap_err().code, -32602);
    }
}
