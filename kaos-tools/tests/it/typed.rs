#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use kaos_tools::{
    NoInput, ToolAnnotations, ToolContext, ToolError, ToolResult, TypedTool, async_trait, tool_fn, typed,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Unit {
    Celsius,
    Fahrenheit,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct ConvertInput {
    /// The temperature to convert.
    value: f64,
    /// The unit to convert to.
    to: Unit,
}

#[derive(Debug)]
struct Convert;

#[async_trait]
impl TypedTool for Convert {
    type Input = ConvertInput;

    fn name(&self) -> &str {
        "convert-temperature"
    }

    fn description(&self) -> &str {
        "Converts a temperature."
    }

    fn annotations(&self) -> ToolAnnotations {
        ToolAnnotations::read_only().with_open_world(false)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(2))
    }

    async fn run(&self, input: ConvertInput, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let out = match input.to {
            Unit::Celsius => (input.value - 32.0) * 5.0 / 9.0,
            Unit::Fahrenheit => input.value * 9.0 / 5.0 + 32.0,
        };
        Ok(ToolResult::json(json!({ "value": out, "call": ctx.call_id() })))
    }
}

#[tokio::test]
async fn typed_tool_receives_parsed_input_and_carries_its_spec() {
    let tool = typed(Convert).unwrap();
    let spec = tool.spec();
    assert_eq!(spec.name.as_str(), "convert-temperature");
    assert_eq!(spec.description, "Converts a temperature.");
    assert_eq!(spec.annotations, ToolAnnotations::read_only().with_open_world(false));
    assert_eq!(spec.timeout, Some(Duration::from_secs(2)));
    assert_eq!(spec.input_schema["properties"]["to"]["enum"], json!(["celsius", "fahrenheit"]));

    let result =
        tool.call(json!({"value": 100.0, "to": "fahrenheit"}), ToolContext::for_tests()).await.unwrap();
    assert_eq!(
        result,
        ToolResult {
            content: vec![kaos_tools::Content::text(r#"{"call":"test-call","value":212.0}"#)],
            structured_content: Some(json!({"value": 212.0, "call": "test-call"})),
            is_error: false,
        }
    );
}

#[tokio::test]
async fn bad_arguments_name_the_problem() {
    let tool = typed(Convert).unwrap();
    let ctx = ToolContext::for_tests();

    let err = tool.call(json!({"value": 1.0}), ctx.clone()).await.unwrap_err();
    let ToolError::InvalidArguments { tool: name, message } = &err else { panic!("{err:?}") };
    assert_eq!(name, "convert-temperature");
    assert!(message.contains("missing field `to`"), "{message}");
    assert!(err.is_call_error());
    assert!(err.model_message().contains("missing field `to`"));

    let err = tool.call(json!({"value": 1.0, "to": "kelvin"}), ctx.clone()).await.unwrap_err();
    assert!(err.model_message().contains("unknown variant `kelvin`"), "{err}");

    let err = tool.call(json!({"value": "hot", "to": "celsius"}), ctx).await.unwrap_err();
    assert!(err.model_message().contains("invalid type: string \"hot\""), "{err}");
}

#[tokio::test]
async fn double_encoded_and_null_arguments_are_accepted() {
    let tool = typed(Convert).unwrap();
    let result =
        tool.call(json!(r#"{"value": 0, "to": "fahrenheit"}"#), ToolContext::for_tests()).await.unwrap();
    assert_eq!(result.structured_content.unwrap()["value"], 32.0);

    let nothing = tool_fn("ping", "Replies pong.", |_: NoInput, _ctx: ToolContext| async {
        Ok(ToolResult::text("pong"))
    })
    .build()
    .unwrap();
    let result = nothing.call(serde_json::Value::Null, ToolContext::for_tests()).await.unwrap();
    assert_eq!(result, ToolResult::text("pong"));
}

#[tokio::test]
async fn a_raw_json_tool_gets_the_arguments_as_parse_arguments_gives_them() {
    let echo =
        tool_fn("echo", "Echoes its input.", |input: serde_json::Value, _ctx: ToolContext| async move {
            Ok(ToolResult::json(input))
        })
        .build()
        .unwrap();
    let cases = [
        json!({"a": 2, "b": [3, {"c": null}]}),
        serde_json::Value::Null,
        json!(r#"{"path": "a.txt"}"#),
        json!("not an object"),
        json!([1, 2]),
        json!(7),
    ];
    for args in cases {
        let expected: serde_json::Value = kaos_tools::parse_arguments("echo", args.clone()).unwrap();
        let result = echo.call(args.clone(), ToolContext::for_tests()).await.unwrap();
        assert_eq!(result.structured_content, Some(expected), "{args}");
    }
}

#[tokio::test]
async fn closure_tools_take_annotations_and_timeouts() {
    #[derive(Deserialize, JsonSchema)]
    struct Add {
        /// First term.
        a: i64,
        /// Second term.
        b: i64,
    }
    let tool = tool_fn("add", "Adds two integers.", |input: Add, ctx: ToolContext| async move {
        Ok(ToolResult::text(format!("{} ({})", input.a + input.b, ctx.session_id())))
    })
    .annotations(ToolAnnotations::read_only())
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap();
    assert_eq!(tool.spec().annotations, ToolAnnotations::read_only());
    assert_eq!(tool.spec().timeout, Some(Duration::from_millis(500)));
    assert_eq!(tool.spec().input_schema["properties"]["a"]["description"], "First term.");
    assert_eq!(tool.spec().input_schema["required"], json!(["a", "b"]));

    let result = tool.call(json!({"a": 2, "b": 3}), ToolContext::for_tests()).await.unwrap();
    assert_eq!(result.to_model_text(), "5 (test-session)");

    let err = tool.call(json!({"a": 2}), ToolContext::for_tests()).await.unwrap_err();
    assert!(
        matches!(err, ToolError::InvalidArguments { ref message, .. } if message.contains("`b`")),
        "{err}"
    );
}

#[test]
fn invalid_names_are_rejected_when_the_tool_is_built() {
    let build = |name: &str| {
        tool_fn(name, "x", |_: NoInput, _ctx: ToolContext| async { Ok(ToolResult::text("")) }).build()
    };
    for bad in ["", "Upper", "1st", "-dash", "with space", "dots.not.ok", &"a".repeat(65)] {
        let err = build(bad).unwrap_err();
        assert!(matches!(&err, ToolError::InvalidName { name, .. } if name == bad), "{bad:?}: {err:?}");
    }
    for good in ["a", "kaos-vfs-read", "web_search2", &"a".repeat(64)] {
        assert!(build(good).is_ok(), "{good:?}");
    }
}
