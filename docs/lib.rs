//! The pages of `docs/` and the workspace README, compiled and run as doctests: every Rust
//! sample a page shows is a test, so the documentation cannot drift from the code. This crate
//! is not published; it has no API of its own.
#![deny(missing_docs)]

/// Doctests of every page.
#[cfg(doctest)]
mod pages {
    #[doc = include_str!("../README.md")]
    mod readme {}
    #[doc = include_str!("concepts/agent-vs-runner.md")]
    mod agent_vs_runner {}
    #[doc = include_str!("concepts/the-turn.md")]
    mod the_turn {}
    #[doc = include_str!("concepts/memory.md")]
    mod memory {}
    #[doc = include_str!("concepts/hooks.md")]
    mod hooks {}
    #[doc = include_str!("concepts/guardrails.md")]
    mod guardrails {}
    #[doc = include_str!("concepts/scale-out.md")]
    mod scale_out {}
    #[doc = include_str!("concepts/patterns.md")]
    mod patterns {}
    #[doc = include_str!("concepts/settings-and-agent-files.md")]
    mod settings_and_agent_files {}
    #[doc = include_str!("concepts/providers-and-cost.md")]
    mod providers_and_cost {}
    #[doc = include_str!("concepts/custom-providers.md")]
    mod custom_providers {}
    #[doc = include_str!("concepts/mcp.md")]
    mod mcp {}
    #[doc = include_str!("concepts/performance.md")]
    mod performance {}
    #[doc = include_str!("concepts/http-api.md")]
    mod http_api {}
    #[doc = include_str!("concepts/a2a.md")]
    mod a2a {}
    #[doc = include_str!("concepts/documents.md")]
    mod documents {}
    #[doc = include_str!("reference/cli.md")]
    mod cli_reference {}
    #[doc = include_str!("tutorials/first-agent.md")]
    mod first_agent {}
    #[doc = include_str!("tutorials/the-kaos-command.md")]
    mod the_kaos_command {}
    #[doc = include_str!("guides/custom-crates.md")]
    mod custom_crates {}
}
