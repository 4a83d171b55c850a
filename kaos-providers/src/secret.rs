//! API keys are `secrecy`'s [`SecretString`], the one secret type of every KAOS crate: it can
//! be read with [`ExposeSecret::expose_secret`] and nowhere else, `Debug` prints it redacted,
//! it has no `Display` and no `Serialize`, and clients scrub it from vendor error messages, so
//! it cannot leak into logs, events or errors by accident.
//!
//! ```
//! use kaos_providers::{ExposeSecret, SecretString};
//! let key = SecretString::from("sk-live-123");
//! assert!(!format!("{key:?}").contains("sk-live"));
//! assert_eq!(key.expose_secret(), "sk-live-123");
//! ```

pub use secrecy::{ExposeSecret, SecretString};

/// `text` with every occurrence of `key` replaced by `[redacted]` (vendors sometimes echo the
/// key back in error messages). Only the HTTP transport of the vendor clients needs it.
#[cfg(any(test, feature = "_http"))]
pub(crate) fn scrub(key: &SecretString, text: &str) -> String {
    let key = key.expose_secret();
    if key.is_empty() { text.to_owned() } else { text.replace(key, "[redacted]") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_and_scrubbed_from_text() {
        let key = SecretString::from("sk-abc");
        assert!(!format!("{key:?} {:?}", Some(&key)).contains("sk-abc"));
        assert_eq!(scrub(&key, "bad key sk-abc!"), "bad key [redacted]!");
        assert_eq!(scrub(&SecretString::from(""), "x"), "x");
    }
}
