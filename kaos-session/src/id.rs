//! [`SessionId`]: the validated name of a session.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::SessionError;

const MAX_LEN: usize = 128;

/// A validated session id: 1 to 128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// The rules make an id safe to use as one VFS path segment as is (no `/`, no `..`, no hidden
/// files), so two different ids never share storage.
///
/// ```
/// use kaos_session::SessionId;
/// assert!(SessionId::new("user-42.chat_1").is_ok());
/// assert!(SessionId::new("../other").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, SessionError> {
        let invalid = |reason| SessionError::InvalidId { id: id.to_owned(), reason };
        if id.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if id.len() > MAX_LEN {
            return Err(invalid("must be at most 128 characters"));
        }
        if id.starts_with('.') {
            return Err(invalid("must not start with '.'"));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(invalid("may only contain A-Z, a-z, 0-9, '.', '_' and '-'"));
        }
        Ok(Self(id.into()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:?})", &*self.0)
    }
}

impl TryFrom<String> for SessionId {
    type Error = SessionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0.to_string()
    }
}
