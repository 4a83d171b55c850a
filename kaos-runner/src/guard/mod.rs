//! The guards every call passes, each a small value with no knowledge of the loop: the
//! permission policy (`permissions.rs`), budgets (`budget.rs`: every model call's worst case
//! checked before it is sent), circuit breakers per tool and per model (`breaker.rs`). The
//! order they are applied in is fixed in `engine/admit.rs` (tool calls) and
//! `engine/model_call.rs` (model calls).

mod breaker;
mod budget;
mod permissions;

pub use breaker::BreakerConfig;
pub(crate) use breaker::{Availability, Breakers, Tripped};
pub(crate) use budget::{BudgetGuard, Exceeded};
pub use permissions::{PermissionPolicy, Verdict, VerdictReason};
