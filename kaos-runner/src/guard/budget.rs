use std::time::Duration;

use kaos_agent::Budget;
use kaos_providers::{ModelPrice, ModelRequest, Usage, prompt_token_bound};
use tokio::time::Instant;

/// A budget that would be exceeded: the turn stops before it happens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exceeded {
    pub(crate) kind: &'static str,
    pub(crate) limit: f64,
    pub(crate) actual: f64,
    pub(crate) reason: String,
}

/// One turn's spending against its caps. Every model call is checked **before** it is sent,
/// against its worst case — its prompt as a server may count it (the estimate with a 50%
/// margin, [`prompt_token_bound`]), plus the most output it may produce, at its price — and
/// its output limit is set so the worst case fits. After the call it is charged what the
/// server reported or, when the server reported none, that worst case (the vendor clients
/// mark such usage `usage_estimated`); a response without a cost is charged at the price the
/// call was checked with. So a cap is never exceeded by a server that counts the prompt at
/// most 1.5× the estimate and keeps to the output limit (a stream past it is cut there).
#[derive(Debug, Clone)]
pub(crate) struct BudgetGuard {
    caps: Budget,
    started: Instant,
    cost_usd: f64,
    tokens: u64,
    model_calls: u32,
    tool_calls: u32,
    /// The price the last model call was checked with.
    checked_price: Option<ModelPrice>,
}

impl BudgetGuard {
    /// A guard for `caps`, with what the turn already spent (after a pause).
    pub(crate) fn new(caps: Budget, usage: Usage, cost_usd: f64, model_calls: u32, tool_calls: u32) -> Self {
        Self {
            caps,
            started: Instant::now(),
            cost_usd,
            tokens: usage.total_tokens(),
            model_calls,
            tool_calls,
            checked_price: None,
        }
    }

    fn exceeded(kind: &'static str, limit: f64, actual: f64, reason: String) -> Exceeded {
        Exceeded { kind, limit, actual, reason }
    }

    /// Checks the next model call and caps its output so that its worst case fits every
    /// budget. `input_tokens` is the request's estimated prompt size (the check allows the
    /// server to count up to [`prompt_token_bound`] of it); `max_output` what the model may
    /// produce at most; `price` the model's price (needed when there is a cost cap).
    pub(crate) fn before_model_call(
        &mut self,
        request: &mut ModelRequest,
        input_tokens: u64,
        max_output: u64,
        price: Option<ModelPrice>,
    ) -> Result<(), Exceeded> {
        self.check_clock()?;
        self.checked_price = price;
        let input_tokens = prompt_token_bound(input_tokens);
        if let Some(max) = self.caps.max_model_calls
            && self.model_calls >= max
        {
            let reason = format!("a model call would make {} of at most {max}", self.model_calls + 1);
            return Err(Self::exceeded("model_calls", f64::from(max), f64::from(self.model_calls), reason));
        }
        let mut out = max_output.max(1);
        if let Some(max) = self.caps.max_tokens {
            let left = max.saturating_sub(self.tokens);
            if input_tokens + 1 > left {
                let reason =
                    format!("the next call needs at least {} tokens, {left} are left", input_tokens + 1);
                return Err(Self::exceeded("tokens", max as f64, self.tokens as f64, reason));
            }
            out = out.min(left - input_tokens);
        }
        if let Some(cap) = self.caps.max_cost_usd {
            let Some(price) = price else {
                let reason =
                    "the model's price is unknown, so the next call's cost cannot be bounded".to_owned();
                return Err(Self::exceeded("cost_usd", cap, self.cost_usd, reason));
            };
            let left = cap - self.cost_usd;
            // Cached input is never dearer than plain input, but a custom table may say so.
            let input_cost = input_tokens as f64 * price.input.max(price.cached_input.unwrap_or(0.0)) / 1e6;
            let per_output = price.output / 1e6;
            if input_cost + per_output > left {
                let reason = format!(
                    "the next call costs at least ${:.6}, ${left:.6} is left",
                    input_cost + per_output
                );
                return Err(Self::exceeded("cost_usd", cap, self.cost_usd, reason));
            }
            if per_output > 0.0 {
                // Floor, and keep a hair of room for floating-point rounding.
                let affordable = ((left - input_cost) / per_output * (1.0 - 1e-9)).floor();
                out = out.min(affordable.max(1.0) as u64);
            }
        }
        let current = request.sampling.max_output_tokens.map_or(u64::MAX, u64::from);
        if out < current && (self.caps.max_tokens.is_some() || self.caps.max_cost_usd.is_some()) {
            request.sampling.max_output_tokens = Some(u32::try_from(out).unwrap_or(u32::MAX));
        }
        Ok(())
    }

    /// Checks the next tool call.
    pub(crate) fn before_tool_call(&self) -> Result<(), Exceeded> {
        self.check_clock()?;
        if let Some(max) = self.caps.max_tool_calls
            && self.tool_calls >= max
        {
            let reason = format!("a tool call would make {} of at most {max}", self.tool_calls + 1);
            return Err(Self::exceeded("tool_calls", f64::from(max), f64::from(self.tool_calls), reason));
        }
        Ok(())
    }

    fn check_clock(&self) -> Result<(), Exceeded> {
        if let Some(max) = self.caps.max_wall_clock_ms {
            let elapsed = self.started.elapsed().as_millis() as u64;
            if elapsed >= max {
                let reason = format!("{elapsed} ms of {max} ms have passed");
                return Err(Self::exceeded("wall_clock_ms", max as f64, elapsed as f64, reason));
            }
        }
        Ok(())
    }

    /// Time left on the wall-clock cap, to bound a call in progress.
    pub(crate) fn time_left(&self) -> Option<Duration> {
        self.caps
            .max_wall_clock_ms
            .map(|max| Duration::from_millis(max).saturating_sub(self.started.elapsed()))
    }

    /// The wall-clock cap, as an `Exceeded` (for a call that ran out of time).
    pub(crate) fn out_of_time(&self) -> Exceeded {
        let max = self.caps.max_wall_clock_ms.unwrap_or_default();
        Self::exceeded(
            "wall_clock_ms",
            max as f64,
            self.started.elapsed().as_millis() as f64,
            "a call ran past the wall-clock cap".into(),
        )
    }

    /// Charges a model call: its usage, and its cost or, when the response has none, its
    /// usage at the price the call was checked with.
    pub(crate) fn record_model_call(&mut self, usage: &Usage, cost_usd: Option<f64>) {
        self.model_calls += 1;
        self.tokens += usage.total_tokens();
        let cost = cost_usd.or_else(|| self.checked_price.take().map(|price| price.cost(usage)));
        self.cost_usd += cost.unwrap_or(0.0);
        self.checked_price = None;
    }

    /// What is left of every cap (a sub-agent runs within it).
    pub(crate) fn remaining(&self) -> Budget {
        let mut left = self.caps;
        left.max_cost_usd = self.caps.max_cost_usd.map(|cap| (cap - self.cost_usd).max(0.0));
        left.max_tokens = self.caps.max_tokens.map(|cap| cap.saturating_sub(self.tokens));
        left.max_model_calls = self.caps.max_model_calls.map(|cap| cap.saturating_sub(self.model_calls));
        left.max_tool_calls = self.caps.max_tool_calls.map(|cap| cap.saturating_sub(self.tool_calls));
        left.max_wall_clock_ms = self.time_left().map(|d| d.as_millis() as u64);
        left
    }

    pub(crate) fn record_tool_call(&mut self) {
        self.tool_calls += 1;
    }
}

#[cfg(test)]
mod tests {
    use kaos_providers::Message;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// With random prices, prompt sizes and caps, a model that always produces the most it
        /// is allowed never takes the turn over its cost or token cap.
        #[test]
        fn spending_never_exceeds_the_caps(
            cap_usd in 0.0001f64..0.05,
            cap_tokens in prop::option::of(50u64..20_000),
            price_in in 0.0f64..20.0,
            price_out in 0.01f64..80.0,
            calls in prop::collection::vec((1u64..3_000, 1u64..4_000, 1.0f64..=1.5), 1..30),
        ) {
            let mut caps = Budget::unlimited().with_max_cost_usd(cap_usd);
            caps.max_tokens = cap_tokens;
            let price = ModelPrice::new(price_in, price_out, None);
            let mut guard = BudgetGuard::new(caps, Usage::default(), 0.0, 0, 0);
            let (mut spent, mut tokens) = (0.0, 0u64);
            for (estimate, want_out, factor) in calls {
                let mut request = ModelRequest::new("m", vec![Message::user("x")]);
                if guard.before_model_call(&mut request, estimate, want_out, Some(price)).is_err() {
                    break;
                }
                // The server counts the prompt up to 1.5× the estimate, and the model uses
                // every output token it was allowed.
                let input = (estimate as f64 * factor).floor() as u64;
                let out = request.sampling.max_output_tokens.map_or(want_out, u64::from).min(want_out);
                let usage = Usage::new(input, out);
                let cost = price.cost(&usage);
                guard.record_model_call(&usage, Some(cost));
                spent += cost;
                tokens += input + out;
                prop_assert!(spent <= cap_usd * (1.0 + 1e-9), "spent {} of {}", spent, cap_usd);
                if let Some(cap) = cap_tokens {
                    prop_assert!(tokens <= cap);
                }
            }
        }
    }

    #[test]
    fn an_unknown_price_under_a_cost_cap_stops_before_the_call() {
        let mut guard =
            BudgetGuard::new(Budget::unlimited().with_max_cost_usd(1.0), Usage::default(), 0.0, 0, 0);
        let mut request = ModelRequest::new("m", vec![]);
        let err = guard.before_model_call(&mut request, 10, 100, None).unwrap_err();
        assert_eq!(err.kind, "cost_usd");
    }

    #[test]
    fn a_response_without_a_cost_is_charged_at_the_checked_price() {
        let mut guard =
            BudgetGuard::new(Budget::unlimited().with_max_cost_usd(1.0), Usage::default(), 0.0, 0, 0);
        let mut request = ModelRequest::new("m", vec![]);
        let price = ModelPrice::new(1.0, 2.0, None);
        guard.before_model_call(&mut request, 10, 100, Some(price)).unwrap();
        guard.record_model_call(&Usage::new(1_000_000, 0), None);
        assert_eq!(guard.remaining().max_cost_usd, Some(0.0));
    }

    #[test]
    fn call_counts_are_capped() {
        let mut caps = Budget::unlimited().with_max_model_calls(1);
        caps.max_tool_calls = Some(1);
        let mut guard = BudgetGuard::new(caps, Usage::default(), 0.0, 0, 0);
        let mut request = ModelRequest::new("m", vec![]);
        assert!(guard.before_model_call(&mut request, 1, 1, None).is_ok());
        guard.record_model_call(&Usage::new(1, 1), None);
        assert_eq!(guard.before_model_call(&mut request, 1, 1, None).unwrap_err().kind, "model_calls");
        assert!(guard.before_tool_call().is_ok());
        guard.record_tool_call();
        assert_eq!(guard.before_tool_call().unwrap_err().kind, "tool_calls");
    }
}
