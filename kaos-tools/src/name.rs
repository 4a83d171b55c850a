use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ToolError;

/// Longest tool name accepted, in characters (the limit most model vendors enforce).
pub const MAX_TOOL_NAME_LEN: usize = 64;

/// A validated tool name: 1 to 64 characters of `[a-z0-9_-]`, starting with a letter.
///
/// Lowercase and hyphenated like the built-ins (`kaos-vfs-read`). The rules are the
/// intersection of what OpenAI, Anthropic and Gemini accept, so a valid name never needs
/// rewriting on its way to a provider. Cheap to clone.
///
/// ```
/// use kaos_tools::ToolName;
/// let name = ToolName::new("kaos-vfs-read").unwrap();
/// assert_eq!(name.as_str(), "kaos-vfs-read");
/// assert!(ToolName::new("Read").is_err());
/// assert!(ToolName::new("9lives").is_err());
/// assert!(ToolName::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolName(Arc<str>);

impl ToolName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, ToolError> {
        let invalid = |reason| Err(ToolError::InvalidName { name: name.to_owned(), reason });
        let Some(first) = name.chars().next() else {
            return invalid("a tool name must not be empty");
        };
        if name.chars().count() > MAX_TOOL_NAME_LEN {
            return invalid("a tool name must be at most 64 characters");
        }
        if !first.is_ascii_lowercase() {
            return invalid("a tool name must start with a lowercase letter (a-z)");
        }
        if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return invalid("a tool name may only contain a-z, 0-9, '_' and '-'");
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ToolName({:?})", &*self.0)
    }
}

impl AsRef<str> for ToolName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ToolName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ToolName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ToolName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::str::FromStr for ToolName {
    type Err = ToolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ToolName {
    type Error = ToolError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for ToolName {
    type Error = ToolError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl Serialize for ToolName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ToolName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}
