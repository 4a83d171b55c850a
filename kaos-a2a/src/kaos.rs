//! What KAOS puts in A2A metadata, under the one key [`METADATA_KEY`] (`"kaos"`), so both
//! sides of a KAOS-to-KAOS call agree and other agents can ignore it:
//!
//! - a follow-up [`Message`](crate::Message) answering an `input-required` task carries
//!   `{"kaos": {"approval": {"answer": "approve", "remember": false}}}` or
//!   `{"kaos": {"approval": {"answer": "deny", "reason": "…"}}}` (its text part says the same
//!   for agents that read only text: `approve`, or `deny: <reason>`);
//! - a [`Task`](crate::Task) or a status update may carry what the task cost so far:
//!   `{"kaos": {"usage": {"input_tokens": 10, "output_tokens": 5}, "cost_usd": 0.0012}}`.
//!   A delegating KAOS agent charges it to its own budget;
//! - a `SendMessage` request's own metadata may cap the turn: `{"kaos": {"max_cost_usd": 0.5}}`
//!   (a delegating KAOS agent sends what is left of its budget).

/// The metadata key under which KAOS's values travel.
pub const METADATA_KEY: &str = "kaos";

/// Under [`METADATA_KEY`] of a follow-up message: the person's answer to the remote's question.
pub const APPROVAL: &str = "approval";

/// Under [`METADATA_KEY`] of a task or a status update: token usage so far.
pub const USAGE: &str = "usage";

/// Under [`METADATA_KEY`] of a task or a status update: cost in USD so far.
pub const COST_USD: &str = "cost_usd";

/// Under [`METADATA_KEY`] of a `SendMessage` request: the most the turn may cost, in USD (what
/// is left of a delegating agent's budget).
pub const MAX_COST_USD: &str = "max_cost_usd";
