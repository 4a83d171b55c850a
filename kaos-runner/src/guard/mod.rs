//! Guards the Runner applies to every turn: budgets and circuit breakers. (Permissions are in
//! `permissions.rs`; pausing for approval in `pause.rs`.)

mod breaker;
mod budget;

pub use breaker::BreakerConfig;
pub(crate) use breaker::{Availability, Breakers, Tripped};
pub(crate) use budget::{BudgetGuard, Exceeded};
