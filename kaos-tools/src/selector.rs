use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::ToolError;

/// A compiled selection of tool names by shell-style globs.
///
/// No globs select no tool; [`ToolSelector::all`] (or the glob `*`) selects every tool, as an
/// agent without a `tools` list gets. Matching is case-sensitive; `*` matches any run of characters
/// (including `-` and `/`), `?` one character, `[abc]` / `[!abc]` a character class and
/// `{a,b}` alternatives. The globs are compiled once into one matcher.
///
/// ```
/// use kaos_tools::ToolSelector;
/// let selector = ToolSelector::new(["kaos-vfs-*", "web_search"]).unwrap();
/// assert!(selector.matches("kaos-vfs-read"));
/// assert!(selector.matches("web_search"));
/// assert!(!selector.matches("kaos-memory-search"));
/// assert!(ToolSelector::all().matches("anything"));
/// assert!(!ToolSelector::new(Vec::<String>::new()).unwrap().matches("anything"));
/// assert!(ToolSelector::new(["[oops"]).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct ToolSelector {
    patterns: Vec<String>,
    /// `None` selects everything.
    set: Option<GlobSet>,
}

impl ToolSelector {
    /// Compiles `globs` (none select no tool). Errors with [`ToolError::InvalidGlob`] naming
    /// the first bad pattern.
    pub fn new<I, S>(globs: I) -> Result<Self, ToolError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns: Vec<String> = globs.into_iter().map(|g| g.as_ref().to_owned()).collect();
        let mut builder = GlobSetBuilder::new();
        for pattern in &patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .case_insensitive(false)
                .backslash_escape(true)
                .build()
                .map_err(|err| ToolError::InvalidGlob {
                    pattern: pattern.clone(),
                    message: err.kind().to_string(),
                })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|err| ToolError::InvalidGlob {
            pattern: err.glob().unwrap_or_default().to_owned(),
            message: err.kind().to_string(),
        })?;
        Ok(Self { patterns, set: Some(set) })
    }

    /// Selects every tool.
    pub fn all() -> Self {
        Self { patterns: Vec::new(), set: None }
    }

    /// Whether this selector is [`ToolSelector::all`] (a glob list such as `["*"]` matching
    /// every name is not).
    pub fn is_all(&self) -> bool {
        self.set.is_none()
    }

    /// The globs, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        self.set.as_ref().is_none_or(|set| set.is_match(name))
    }
}

impl Default for ToolSelector {
    /// Selects every tool.
    fn default() -> Self {
        Self::all()
    }
}
