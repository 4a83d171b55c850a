use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A section of session memory. Each has its own budget, priority, eviction policy and
/// persistence mode (see [`SectionConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SectionKind {
    /// Extra persona and role text, loaded explicitly.
    Role,
    /// Procedures the agent should follow, loaded explicitly.
    Playbooks,
    /// The conversation.
    Messages,
    /// Tool calls and their results.
    Actions,
    /// Documents loaded into the session (research).
    Documents,
    /// Verified findings with their citations.
    Findings,
    /// Plans proposed and how they went.
    PlanHistory,
    /// Reflections on past turns.
    Reflection,
    /// Lessons learned that should persist.
    Lessons,
    /// The last classified intent.
    LastIntent,
    /// Scratch space, cleared at the start of each turn.
    Working,
    /// Planning scratch, cleared at the start of each turn.
    Planning,
    /// A record of what happened, kept out of the model's context.
    Audit,
}

impl SectionKind {
    /// Every section, in declaration order.
    pub const ALL: [SectionKind; 13] = [
        SectionKind::Role,
        SectionKind::Playbooks,
        SectionKind::Messages,
        SectionKind::Actions,
        SectionKind::Documents,
        SectionKind::Findings,
        SectionKind::PlanHistory,
        SectionKind::Reflection,
        SectionKind::Lessons,
        SectionKind::LastIntent,
        SectionKind::Working,
        SectionKind::Planning,
        SectionKind::Audit,
    ];

    /// The snake_case name used in agent files, events and the VFS layout.
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Role => "role",
            SectionKind::Playbooks => "playbooks",
            SectionKind::Messages => "messages",
            SectionKind::Actions => "actions",
            SectionKind::Documents => "documents",
            SectionKind::Findings => "findings",
            SectionKind::PlanHistory => "plan_history",
            SectionKind::Reflection => "reflection",
            SectionKind::Lessons => "lessons",
            SectionKind::LastIntent => "last_intent",
            SectionKind::Working => "working",
            SectionKind::Planning => "planning",
            SectionKind::Audit => "audit",
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a section gives up when an addition would exceed its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub enum Eviction {
    /// Nothing: an addition that does not fit is refused with an error.
    None,
    /// The oldest item first.
    Fifo,
    /// The newest item first.
    Lifo,
    /// The item least recently put in front of the model first.
    Lru,
    /// The item least often put in front of the model first (oldest among ties).
    Lfu,
    /// The lowest-priority item first (oldest among ties).
    Priority,
    /// Nothing, explicitly: an addition that does not fit is refused with an error.
    Refuse,
}

/// How a section is kept in the VFS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub enum Persistence {
    /// Not persisted: lives for one turn.
    None,
    /// When it changes, the whole section is written in one record.
    Snapshot,
    /// Each turn appends only what it added or evicted.
    Streaming,
}

/// A token budget: a positive number of tokens, or `"unbounded"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenBudget {
    /// At most this many tokens.
    Limited(NonZeroU32),
    /// No limit (the context budget and retrieval still apply when assembling).
    Unbounded,
}

impl TokenBudget {
    /// The limit, if any.
    pub fn limit(self) -> Option<u64> {
        match self {
            TokenBudget::Limited(n) => Some(u64::from(n.get())),
            TokenBudget::Unbounded => None,
        }
    }

    fn tokens(n: u32) -> Self {
        NonZeroU32::new(n).map_or(TokenBudget::Unbounded, TokenBudget::Limited)
    }
}

impl Serialize for TokenBudget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TokenBudget::Limited(n) => serializer.serialize_u32(n.get()),
            TokenBudget::Unbounded => serializer.serialize_str("unbounded"),
        }
    }
}

impl<'de> Deserialize<'de> for TokenBudget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = TokenBudget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive number of tokens or \"unbounded\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenBudget, E> {
                u32::try_from(v)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .map(TokenBudget::Limited)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenBudget, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TokenBudget, E> {
                match v {
                    "unbounded" => Ok(TokenBudget::Unbounded),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// How one section behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SectionConfig {
    /// The most tokens the section holds.
    pub budget_tokens: TokenBudget,
    /// Higher priority sections are kept first when the context budget is tight.
    pub priority: u32,
    /// What is given up when an addition would exceed the budget.
    pub eviction: Eviction,
    /// How the section is kept in the VFS.
    pub persistence: Persistence,
    /// Whether, above the retrieval threshold, its items are chosen by relevance (BM25) to
    /// the current message instead of all being shown.
    pub searchable: bool,
    /// Whether evicted items are condensed into a summary item instead of being dropped.
    pub summarize: bool,
    /// Whether the section is put in front of the model at all.
    pub in_context: bool,
    /// Whether the section is emptied at the start of each turn.
    pub cleared_each_turn: bool,
    /// The most items the section holds, whatever their size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<NonZeroU32>,
}

impl SectionConfig {
    /// The reference defaults for `kind`.
    pub fn default_for(kind: SectionKind) -> Self {
        use Eviction as E;
        use Persistence as P;
        let (budget, priority, eviction, persistence, searchable, summarize) = match kind {
            SectionKind::Role => (2_000, 100, E::Refuse, P::Snapshot, false, false),
            SectionKind::Playbooks => (8_000, 90, E::Refuse, P::Snapshot, false, false),
            SectionKind::Messages => (32_000, 80, E::Fifo, P::Streaming, false, true),
            SectionKind::Findings => (16_000, 70, E::Fifo, P::Streaming, true, false),
            SectionKind::Documents => (0, 60, E::Refuse, P::Streaming, true, false),
            SectionKind::Lessons => (16_000, 55, E::Fifo, P::Streaming, true, false),
            SectionKind::Actions => (16_000, 50, E::Lru, P::Streaming, true, true),
            SectionKind::PlanHistory => (8_000, 40, E::Lru, P::Snapshot, false, false),
            SectionKind::Reflection => (8_000, 30, E::Fifo, P::Streaming, false, true),
            SectionKind::Working => (16_000, 25, E::Fifo, P::None, false, false),
            SectionKind::Planning => (16_000, 20, E::Lifo, P::None, false, false),
            SectionKind::LastIntent => (2_000, 10, E::Lifo, P::Streaming, false, false),
            SectionKind::Audit => (16_000, 0, E::Fifo, P::Streaming, false, false),
        };
        Self {
            budget_tokens: TokenBudget::tokens(budget),
            priority,
            eviction,
            persistence,
            searchable,
            summarize,
            in_context: kind != SectionKind::Audit,
            cleared_each_turn: matches!(kind, SectionKind::Working | SectionKind::Planning),
            max_items: if kind == SectionKind::LastIntent { NonZeroU32::new(1) } else { None },
        }
    }
}

/// What of a session's memory is kept, and what is put in front of the model each turn.
///
/// In agent files, a section needs only the fields that differ from its defaults:
///
/// ```
/// use kaos_agent::{Agent, SectionKind, TokenBudget};
/// let agent = Agent::from_toml(r#"
/// [memory]
/// context_budget_tokens = 50000
/// [memory.sections.messages]
/// budget_tokens = 8000
/// [memory.sections.documents]
/// budget_tokens = "unbounded"
/// "#)?;
/// let messages = agent.memory().section(SectionKind::Messages);
/// assert_eq!(messages.budget_tokens, TokenBudget::Limited(8000.try_into().unwrap()));
/// assert!(messages.summarize); // untouched fields keep the messages defaults
/// # Ok::<(), kaos_agent::AgentError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MemoryProfile {
    /// Total tokens of assembled context: system prompt, sections and conversation [200 000].
    pub context_budget_tokens: NonZeroU32,
    /// A searchable section with more items than this is assembled by BM25 relevance to the
    /// current message (top `limits.retrieval_top_k`) rather than shown whole [20].
    pub retrieval_threshold: NonZeroU32,
    /// Every section's configuration (all sections are always present). Files and the
    /// canonical form carry only the sections that differ from their defaults, so spelling a
    /// default out does not change an agent's fingerprint.
    #[serde(deserialize_with = "sections_over_defaults", serialize_with = "sections_unlike_defaults")]
    pub sections: BTreeMap<SectionKind, SectionConfig>,
}

impl Default for MemoryProfile {
    fn default() -> Self {
        Self {
            context_budget_tokens: NonZeroU32::new(200_000).unwrap_or(NonZeroU32::MAX),
            retrieval_threshold: NonZeroU32::new(20).unwrap_or(NonZeroU32::MAX),
            sections: SectionKind::ALL.into_iter().map(|k| (k, SectionConfig::default_for(k))).collect(),
        }
    }
}

impl MemoryProfile {
    /// The configuration of `kind`.
    pub fn section(&self, kind: SectionKind) -> SectionConfig {
        self.sections.get(&kind).copied().unwrap_or_else(|| SectionConfig::default_for(kind))
    }

    /// Every section's configuration, in the order of [`SectionKind::ALL`] (and of `Ord`):
    /// [`MemoryProfile::section`] of each, in one pass over the configured ones.
    pub fn each_section(&self) -> impl Iterator<Item = (SectionKind, SectionConfig)> + '_ {
        let mut configured = self.sections.iter().peekable();
        SectionKind::ALL.into_iter().map(move |kind| {
            // Keys are unique and in `Ord` order, as `ALL` is: skip any not reached yet (none).
            while configured.next_if(|(k, _)| **k < kind).is_some() {}
            match configured.next_if(|(k, _)| **k == kind) {
                Some((_, config)) => (kind, *config),
                None => (kind, SectionConfig::default_for(kind)),
            }
        })
    }

    /// Replaces one section's configuration.
    pub fn with_section(mut self, kind: SectionKind, config: SectionConfig) -> Self {
        self.sections.insert(kind, config);
        self
    }
}

fn sections_unlike_defaults<S: Serializer>(
    sections: &BTreeMap<SectionKind, SectionConfig>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer
        .collect_map(sections.iter().filter(|(kind, config)| **config != SectionConfig::default_for(**kind)))
}

/// A section as written in a file: any subset of the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialSection {
    budget_tokens: Option<TokenBudget>,
    priority: Option<u32>,
    eviction: Option<Eviction>,
    persistence: Option<Persistence>,
    searchable: Option<bool>,
    summarize: Option<bool>,
    in_context: Option<bool>,
    cleared_each_turn: Option<bool>,
    max_items: Option<NonZeroU32>,
}

fn sections_over_defaults<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<SectionKind, SectionConfig>, D::Error> {
    let given = BTreeMap::<SectionKind, PartialSection>::deserialize(deserializer)?;
    let mut sections = MemoryProfile::default().sections;
    for (kind, p) in given {
        let d = SectionConfig::default_for(kind);
        sections.insert(
            kind,
            SectionConfig {
                budget_tokens: p.budget_tokens.unwrap_or(d.budget_tokens),
                priority: p.priority.unwrap_or(d.priority),
                eviction: p.eviction.unwrap_or(d.eviction),
                persistence: p.persistence.unwrap_or(d.persistence),
                searchable: p.searchable.unwrap_or(d.searchable),
                summarize: p.summarize.unwrap_or(d.summarize),
                in_context: p.in_context.unwrap_or(d.in_context),
                cleared_each_turn: p.cleared_each_turn.unwrap_or(d.cleared_each_turn),
                max_items: p.max_items.or(d.max_items),
            },
        );
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::num::NonZeroU32;

    use super::*;

    /// `each_section` gives every section once, in `Ord` order, as `section` gives it: the
    /// configured ones included, wherever they fall.
    #[test]
    fn each_section_is_section_of_every_kind_in_order() {
        assert!(SectionKind::ALL.is_sorted());
        let configured = |kinds: &[SectionKind]| {
            kinds.iter().fold(MemoryProfile::default(), |profile, &kind| {
                let mut config = SectionConfig::default_for(kind);
                config.priority += 7;
                config.max_items = NonZeroU32::new(3);
                profile.with_section(kind, config)
            })
        };
        let first = SectionKind::ALL[0];
        let last = SectionKind::ALL[SectionKind::ALL.len() - 1];
        for profile in [
            MemoryProfile { sections: BTreeMap::new(), ..MemoryProfile::default() },
            MemoryProfile::default(),
            configured(&[first, last]),
            configured(&[SectionKind::Messages, SectionKind::Audit]),
            configured(&SectionKind::ALL),
        ] {
            let each: Vec<_> = profile.each_section().collect();
            let one_by_one: Vec<_> = SectionKind::ALL.into_iter().map(|k| (k, profile.section(k))).collect();
            assert_eq!(each, one_by_one);
        }
    }
}
