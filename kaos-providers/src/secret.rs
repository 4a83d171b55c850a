use std::fmt;

/// A secret such as an API key: it can be read with [`SecretString::expose`] and nowhere
/// else. `Debug` and `Display` print `[redacted]`, it has no `Serialize`, and clients scrub it
/// from vendor error messages, so it cannot leak into logs, events or errors by accident.
///
/// ```
/// use kaos_providers::SecretString;
/// let key = SecretString::new("sk-live-123");
/// assert_eq!(format!("{key:?} {key}"), "[redacted] [redacted]");
/// assert_eq!(key.expose(), "sk-live-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself: call this only where it is sent (e.g. an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every occurrence of the secret replaced by `[redacted]` (vendors sometimes
    /// echo the key back in error messages).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() { text.to_owned() } else { text.replace(&self.0, "[redacted]") }
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for SecretString {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_and_scrubbed_from_text() {
        let key = SecretString::from("sk-abc");
        assert_eq!(format!("{key} {key:?} {:?}", Some(&key)), "[redacted] [redacted] Some([redacted])");
        assert_eq!(key.scrub("bad key sk-abc!"), "bad key [redacted]!");
        assert_eq!(SecretString::new("").scrub("x"), "x");
    }
}
