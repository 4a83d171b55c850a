//! Secrets in settings (API keys, S3 credentials, bearer tokens) are `secrecy`'s
//! [`SecretString`], the one secret type of every KAOS crate: `Debug` prints it redacted, it
//! has no `Display`, and settings serialize it as [`REDACTED`]; only
//! [`ExposeSecret::expose_secret`] gives the text, so every place that reads a secret is easy
//! to find. Deserializing reads the plain text (that is how secrets arrive from settings).
//!
//! ```
//! use kaos_runtime::{ExposeSecret, SecretString};
//! let key = SecretString::from("sk-live-123");
//! assert!(!format!("{key:?}").contains("sk-live"));
//! assert_eq!(key.expose_secret(), "sk-live-123");
//! ```

use serde::Serializer;

pub use secrecy::{ExposeSecret, SecretString};

/// What a secret prints as (`kaos config show`, serialized settings).
pub const REDACTED: &str = "[redacted]";

/// Serializes a secret setting as [`REDACTED`] (`None` stays `None`).
pub(crate) fn serialize_redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_some(REDACTED),
        None => serializer.serialize_none(),
    }
}
