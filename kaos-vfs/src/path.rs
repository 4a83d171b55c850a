use std::fmt;

use crate::VfsError;

/// Longest path accepted, in bytes.
const MAX_PATH_LEN: usize = 4096;
/// Longest single segment accepted, in bytes (the common filesystem limit).
const MAX_SEGMENT_LEN: usize = 255;

/// A validated, normalized VFS path.
///
/// Rules, checked once at construction so no backend ever sees a bad path:
/// - relative: a leading `/` is rejected (so is a Windows drive prefix such as `C:`);
/// - `/`-separated: a backslash is rejected rather than guessed at;
/// - no `..` segment, no NUL or other control character;
/// - `.` segments, empty segments and a trailing `/` are normalized away;
/// - the empty string (or `.`) is the root.
///
/// ```
/// use kaos_vfs::VfsPath;
/// let p = VfsPath::new("sessions/./a//turns.jsonl").unwrap();
/// assert_eq!(p.as_str(), "sessions/a/turns.jsonl");
/// assert!(VfsPath::new("../etc/passwd").is_err());
/// assert!(VfsPath::new("/etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VfsPath(String);

impl VfsPath {
    /// Validates and normalizes `input`.
    pub fn new(input: &str) -> Result<Self, VfsError> {
        if is_normal(input) {
            return Ok(Self(input.to_owned()));
        }
        Self::normalize(input)
    }

    /// The general case of [`VfsPath::new`]: every rule checked, the path rebuilt segment by
    /// segment.
    fn normalize(input: &str) -> Result<Self, VfsError> {
        let invalid = |reason| VfsError::InvalidPath { path: input.to_owned(), reason };
        if input.len() > MAX_PATH_LEN {
            return Err(invalid("path is too long"));
        }
        if input.starts_with('/') {
            return Err(invalid("absolute paths are not allowed"));
        }
        if input.contains('\\') {
            return Err(invalid("backslashes are not allowed; use '/'"));
        }
        if input.chars().any(char::is_control) {
            return Err(invalid("control characters (including NUL) are not allowed"));
        }
        let mut out = String::with_capacity(input.len());
        for segment in input.split('/') {
            match segment {
                "" | "." => continue,
                ".." => return Err(invalid("'..' segments are not allowed")),
                s if s.len() > MAX_SEGMENT_LEN => return Err(invalid("a path segment is too long")),
                s => {
                    if out.is_empty() && s.len() >= 2 && s.ends_with(':') {
                        return Err(invalid("drive prefixes are not allowed"));
                    }
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(s);
                }
            }
        }
        Ok(Self(out))
    }

    /// Wraps a string the caller knows is already normalized (e.g. a key built from `VfsPath`s).
    pub(crate) fn from_normalized(normalized: String) -> Self {
        debug_assert!(Self::new(&normalized).is_ok_and(|p| p.0 == normalized));
        Self(normalized)
    }

    /// The root of the VFS (the empty path).
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The normalized path text (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self` followed by `rest`, which is validated with the same rules.
    pub fn join(&self, rest: &str) -> Result<Self, VfsError> {
        if is_normal(rest) {
            return Ok(self.joined(rest));
        }
        let rest = Self::normalize(rest)?;
        Ok(self.join_path(&rest))
    }

    /// `self` followed by an already valid path.
    pub fn join_path(&self, rest: &VfsPath) -> Self {
        self.joined(&rest.0)
    }

    /// `self` followed by `rest`, already normalized: one allocation.
    fn joined(&self, rest: &str) -> Self {
        if self.is_root() || rest.is_empty() {
            return Self(if self.is_root() { rest.to_owned() } else { self.0.clone() });
        }
        let mut out = String::with_capacity(self.0.len() + 1 + rest.len());
        out.push_str(&self.0);
        out.push('/');
        out.push_str(rest);
        Self(out)
    }

    /// The segments, in order (none for the root).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.segments().last()
    }

    /// The parent directory, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => Self(self.0[..i].to_owned()),
            None => Self::root(),
        })
    }

    /// Whether `self` is `prefix` or lies below it (segment-wise: `ab` is not below `a`).
    pub fn starts_with(&self, prefix: &VfsPath) -> bool {
        prefix.is_root()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0) && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }

    /// `self` with `prefix` removed, or `None` when `self` is not below `prefix`.
    pub fn strip_prefix(&self, prefix: &VfsPath) -> Option<Self> {
        if !self.starts_with(prefix) {
            return None;
        }
        if prefix.is_root() {
            return Some(self.clone());
        }
        Some(Self(self.0[prefix.0.len()..].trim_start_matches('/').to_owned()))
    }
}

impl fmt::Display for VfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() { f.write_str("/") } else { f.write_str(&self.0) }
    }
}

impl fmt::Debug for VfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VfsPath({:?})", self.0)
    }
}

impl std::str::FromStr for VfsPath {
    type Err = VfsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for VfsPath {
    type Error = VfsError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for VfsPath {
    type Error = VfsError;
    /// Keeps `s`'s allocation when it is already normalized.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_normal(&s) { Ok(Self(s)) } else { Self::normalize(&s) }
    }
}

/// Whether `input` is valid and already in normal form, decided in two passes over its bytes:
/// printable ASCII without a backslash, no empty, `.` or `..` segment, no segment over the limit, no
/// leading or trailing `/`, no drive prefix. Paths the engine builds (`sessions/<id>/turns.jsonl`)
/// always are, and skip [`VfsPath::normalize`]; anything else takes the general path, which
/// gives the precise error.
fn is_normal(input: &str) -> bool {
    let bytes = input.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return false;
    }
    // The root ("") is normal.
    if bytes.is_empty() {
        return true;
    }
    // Printable ASCII without a backslash: every byte checked without a branch on each, which
    // the compiler turns into a few vector instructions.
    let bad = |b: u8| !(0x20..0x7f).contains(&b) || b == b'\\';
    if bytes.iter().fold(false, |any, &b| any | bad(b)) {
        return false;
    }
    for (i, segment) in bytes.split(|&b| b == b'/').enumerate() {
        // An empty segment: a leading, trailing or doubled `/`.
        if segment.is_empty() || segment == b"." || segment == b".." || segment.len() > MAX_SEGMENT_LEN {
            return false;
        }
        if i == 0 && segment.len() >= 2 && segment.ends_with(b":") {
            return false;
        }
    }
    true
}

impl AsRef<str> for VfsPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::VfsPath;

    proptest! {
        /// The one-pass check takes the fast path only where the general one gives the same
        /// path, and every input gets the general path's result (the same error included).
        #[test]
        fn the_fast_path_agrees_with_the_general_one(
            input in prop_oneof![
                "[a./\\\\:C \u{0}\u{7f}\u{85}é-]{0,16}",
                prop::collection::vec(prop::sample::select(vec!["", ".", "..", "a", "C:", "bb", "x y"]), 0..6)
                    .prop_map(|s| s.join("/")),
                any::<String>(),
            ]
        ) {
            let general = VfsPath::normalize(&input).map_err(|e| e.to_string());
            prop_assert_eq!(VfsPath::new(&input).map_err(|e| e.to_string()), general.clone());
            prop_assert_eq!(VfsPath::try_from(input.clone()).map_err(|e| e.to_string()), general.clone());
            if let Ok(base) = VfsPath::new("base/dir") {
                let joined = general.map(|rest| base.join_path(&rest));
                prop_assert_eq!(base.join(&input).map_err(|e| e.to_string()), joined);
            }
        }
    }

    #[test]
    fn long_segments_and_paths_take_the_general_path() {
        let segment = "a".repeat(256);
        assert!(VfsPath::new(&segment).is_err());
        assert!(VfsPath::new(&"a/".repeat(2049)).is_err());
        assert_eq!(VfsPath::new(&"a".repeat(255)).unwrap().as_str().len(), 255);
    }
}
