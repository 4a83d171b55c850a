//! Secret redaction for what hooks write down (the audit trail, logs).

use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

/// Key names (normalized: lowercase, without `_`, `-`, `.` and spaces) that hold a secret
/// wherever they appear in the key.
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "privatekey",
    "authorization",
    "credential",
    "cookie",
];

/// Key name endings (normalized) that hold a secret: `access_token`, `aws_access_key`, …, but
/// not `max_tokens` or `token_count`.
const SECRET_KEY_ENDINGS: &[&str] = &["token", "pwd", "accesskey", "accesskeyid", "auth", "signature"];

/// Prefixes of well-known credential formats; a word with one of them and at least
/// [`MIN_PREFIXED_SECRET_LEN`] characters is a secret.
const SECRET_PREFIXES: &[&str] = &[
    "sk-",  // OpenAI, Anthropic (sk-ant-…)
    "sk_",  // Stripe secret keys (sk_live_…, sk_test_…)
    "rk_",  // Stripe restricted keys
    "ghp_", // GitHub tokens
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-", // GitLab
    "xoxb-",  // Slack
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "AIza", // Google API keys
];

const MIN_PREFIXED_SECRET_LEN: usize = 20;

/// Authorization schemes whose next word is the credential, after a secret key
/// (`Authorization: Basic …`).
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest"];

/// Whether a JSON key (or an environment variable's name) names a secret, case-insensitively:
/// it contains `password`, `secret`, `api_key`/`apikey`, `private_key`, `authorization`,
/// `credential`, `cookie`, …, or ends in `token`, `access_key`, `auth`, ….
///
/// ```
/// use kaos_runner::hooks::is_secret_key;
/// assert!(is_secret_key("OPENAI_API_KEY"));
/// assert!(is_secret_key("refresh_token"));
/// assert!(is_secret_key("Set-Cookie"));
/// assert!(!is_secret_key("max_tokens"));
/// assert!(!is_secret_key("path"));
/// ```
pub fn is_secret_key(key: &str) -> bool {
    let normalized: String =
        key.chars().filter(|c| !matches!(c, '_' | '-' | '.' | ' ')).flat_map(char::to_lowercase).collect();
    !normalized.is_empty()
        && (SECRET_KEY_PARTS.iter().any(|part| normalized.contains(part))
            || SECRET_KEY_ENDINGS.iter().any(|end| normalized.ends_with(end)))
}

/// Whether one word (no spaces) looks like a credential: an OpenAI/Anthropic `sk-…` key, a
/// Stripe, GitHub, GitLab, Slack or Google key, an AWS access key id (`AKIA…`/`ASIA…`), or a
/// JSON Web Token (`eyJ….….…`).
///
/// ```
/// use kaos_runner::hooks::looks_like_secret;
/// assert!(looks_like_secret("sk-proj-abcdefghijklmnopqrstu"));
/// assert!(looks_like_secret("AKIAIOSFODNN7EXAMPLE"));
/// assert!(!looks_like_secret("sk-short"));
/// assert!(!looks_like_secret("hello"));
/// ```
pub fn looks_like_secret(word: &str) -> bool {
    let len = word.chars().count();
    if len >= MIN_PREFIXED_SECRET_LEN && SECRET_PREFIXES.iter().any(|prefix| word.starts_with(prefix)) {
        return true;
    }
    if len == 20
        && (word.starts_with("AKIA") || word.starts_with("ASIA"))
        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return true;
    }
    word.starts_with("eyJ") && len >= 30 && word.matches('.').count() == 2
}

/// `value` with every secret replaced by [`REDACTED`], recursively:
///
/// - the value of any object key that [`is_secret_key`] (whatever its type) becomes
///   `"[redacted]"`;
/// - in every string, each word that [`looks_like_secret`], the word after `Bearer`, and the value in a `key=value` or `key: value` pair with a
///   secret key (`API_KEY=…`, `password: …`) becomes `[redacted]`;
/// - a string that is itself a JSON object or array is redacted as JSON (and re-serialized).
///
/// ```
/// use kaos_runner::hooks::redact;
/// use serde_json::json;
/// let args = json!({"url": "https://x.test", "headers": {"Authorization": "Bearer abc"},
///                   "note": "key is sk-abcdefghijklmnopqrstuvwx, ok"});
/// assert_eq!(redact(&args), json!({"url": "https://x.test", "headers": {"Authorization": "[redacted]"},
///                                  "note": "key is [redacted], ok"}));
/// ```
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value =
                        if is_secret_key(key) { Value::String(REDACTED.to_owned()) } else { redact(value) };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(text) => Value::String(redact_str(text)),
        other => other.clone(),
    }
}

/// A string with its secrets replaced (see [`redact`]).
pub(crate) fn redact_str(text: &str) -> String {
    let trimmed = text.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(json @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(text)
    {
        return redact(&json).to_string();
    }
    redact_words(text)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | '~')
}

/// Replaces the secret words of `text`.
fn redact_words(text: &str) -> String {
    // The words, as byte ranges.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, text.len()));
    }

    let word = |i: usize| &text[words[i].0..words[i].1];
    let gap = |i: usize| &text[words[i].1..words[i + 1].0];
    let mut secret = vec![false; words.len()];
    for i in 0..words.len() {
        if looks_like_secret(word(i)) {
            secret[i] = true;
        }
        if i + 1 >= words.len() {
            continue;
        }
        let separator = gap(i).trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
        if is_secret_key(word(i)) && (separator == "=" || separator == ":") {
            // `API_KEY=value`, `"password": "value"`, `Authorization: Bearer value`.
            let next_is_scheme = AUTH_SCHEMES.iter().any(|s| word(i + 1).eq_ignore_ascii_case(s));
            if next_is_scheme && i + 2 < words.len() {
                secret[i + 2] = true;
            } else {
                secret[i + 1] = true;
            }
        } else if word(i).eq_ignore_ascii_case("bearer") && gap(i).chars().all(char::is_whitespace) {
            // `Bearer value` on its own (words are separated, so the gap is never empty).
            secret[i + 1] = true;
        }
    }
    if !secret.contains(&true) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (i, &(s, e)) in words.iter().enumerate() {
        if secret[i] {
            out.push_str(&text[copied..s]);
            out.push_str(REDACTED);
            copied = e;
        }
    }
    out.push_str(&text[copied..]);
    out
}
