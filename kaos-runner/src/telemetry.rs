//! OpenTelemetry export (feature `otel`).
//!
//! Every turn runs inside `tracing` spans: `kaos.turn` (`invoke_agent {agent}`), with a
//! `kaos.llm_call` (`chat {model}`) per model call and a `kaos.tool_call`
//! (`execute_tool {tool}`) per tool call as children. They carry the OpenTelemetry GenAI
//! semantic attributes: `gen_ai.operation.name`, `gen_ai.system`, `gen_ai.request.model`,
//! `gen_ai.response.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
//! `gen_ai.tool.name`, `gen_ai.tool.call.id`, plus `kaos.session_id`, `kaos.run_id`,
//! `kaos.turn_number` and `kaos.cost_usd`. [`layer`] exports them through
//! `tracing-opentelemetry` to any OpenTelemetry tracer (OTLP, stdout, in-memory, …).

use opentelemetry::trace::Tracer;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// A `tracing` layer sending the Runner's spans to `tracer`. Install it in your subscriber:
/// `tracing_subscriber::registry().with(kaos_runner::telemetry::layer(tracer))`.
pub fn layer<S, T>(tracer: T) -> OpenTelemetryLayer<S, T>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    T: Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer().with_tracer(tracer)
}
