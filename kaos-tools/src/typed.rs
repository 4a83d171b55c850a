use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Tool, ToolAnnotations, ToolContext, ToolError, ToolName, ToolResult, ToolSpec};

/// A tool whose arguments are a Rust type: the input schema is derived from it and the raw
/// JSON arguments are parsed into it before [`run`](TypedTool::run) sees them.
///
/// Wrap it with [`typed`] (or [`Typed::new`]) to get a [`Tool`].
///
/// ```
/// use kaos_tools::{typed, ToolContext, ToolError, ToolResult, TypedTool};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Input {
///     /// Who to greet.
///     name: String,
/// }
///
/// #[derive(Debug)]
/// struct Greet;
///
/// #[async_trait::async_trait]
/// impl TypedTool for Greet {
///     type Input = Input;
///     fn name(&self) -> &str { "greet" }
///     fn description(&self) -> &str { "Greets someone by name." }
///     async fn run(&self, input: Input, _ctx: ToolContext) -> Result<ToolResult, ToolError> {
///         Ok(ToolResult::text(format!("Hello, {}!", input.name)))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let tool = typed(Greet).unwrap();
/// assert_eq!(tool.spec().input_schema["properties"]["name"]["description"], "Who to greet.");
/// let out = tool.call(serde_json::json!({"name": "Ada"}), ToolContext::for_tests()).await.unwrap();
/// assert_eq!(out.to_model_text(), "Hello, Ada!");
/// # });
/// ```
#[async_trait]
pub trait TypedTool: Send + Sync + fmt::Debug + 'static {
    /// The arguments. Field doc comments become schema descriptions; serde attributes
    /// (`rename`, `default`, enums) are reflected in the schema, defaults only for field types
    /// that implement `Serialize`.
    type Input: DeserializeOwned + JsonSchema + Send + 'static;

    /// The tool's name (validated by [`ToolName::new`] when wrapped).
    fn name(&self) -> &str;

    /// What the tool does, written for the model.
    fn description(&self) -> &str;

    /// Behaviour hints; the MCP defaults unless overridden.
    fn annotations(&self) -> ToolAnnotations {
        ToolAnnotations::default()
    }

    /// This tool's own time limit; `None` (the default) uses the registry's.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Runs the tool with parsed arguments.
    async fn run(&self, input: Self::Input, ctx: ToolContext) -> Result<ToolResult, ToolError>;
}

/// Adapts a [`TypedTool`] to [`Tool`]: holds the derived [`ToolSpec`] and parses arguments.
#[derive(Debug)]
pub struct Typed<T> {
    tool: T,
    spec: ToolSpec,
}

impl<T: TypedTool> Typed<T> {
    /// Validates the name and derives the input schema.
    ///
    /// Errors with [`ToolError::InvalidName`], or [`ToolError::InvalidSchema`] when the input
    /// type does not describe a JSON object.
    pub fn new(tool: T) -> Result<Self, ToolError> {
        let name = ToolName::new(tool.name())?;
        let input_schema = object_schema_for::<T::Input>(name.as_str())?;
        let spec = ToolSpec::new(name, tool.description(), input_schema)
            .with_annotations(tool.annotations())
            .with_timeout_opt(tool.timeout());
        Ok(Self { tool, spec })
    }

    /// The wrapped tool.
    pub fn inner(&self) -> &T {
        &self.tool
    }
}

#[async_trait]
impl<T: TypedTool> Tool for Typed<T> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let input = parse_input::<T::Input>(self.spec.name.as_str(), args)?;
        self.tool.run(input, ctx).await
    }
}

/// Wraps a [`TypedTool`] as a shareable [`Tool`]. See [`Typed::new`] for the errors.
pub fn typed<T: TypedTool>(tool: T) -> Result<Arc<dyn Tool>, ToolError> {
    Ok(Arc::new(Typed::new(tool)?))
}

/// Starts a tool from a closure taking typed input. Set hints with
/// [`annotations`](ToolFnBuilder::annotations) and a time limit with
/// [`timeout`](ToolFnBuilder::timeout), then [`build`](ToolFnBuilder::build).
///
/// ```
/// use kaos_tools::{tool_fn, ToolAnnotations, ToolContext, ToolResult};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Add {
///     /// First term.
///     a: i64,
///     /// Second term.
///     b: i64,
/// }
///
/// let tool = tool_fn("add", "Adds two integers.", |input: Add, _ctx: ToolContext| async move {
///     Ok(ToolResult::text((input.a + input.b).to_string()))
/// })
/// .annotations(ToolAnnotations::read_only().with_open_world(false))
/// .build()
/// .unwrap();
/// assert_eq!(tool.spec().name.as_str(), "add");
/// ```
pub fn tool_fn<I, F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    f: F,
) -> ToolFnBuilder<I, F, Fut>
where
    I: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(I, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ToolResult, ToolError>> + Send + 'static,
{
    ToolFnBuilder {
        name: name.into(),
        description: description.into(),
        annotations: ToolAnnotations::default(),
        timeout: None,
        f,
        _types: PhantomData,
    }
}

/// A closure tool being configured; see [`tool_fn`].
pub struct ToolFnBuilder<I, F, Fut> {
    name: String,
    description: String,
    annotations: ToolAnnotations,
    timeout: Option<Duration>,
    f: F,
    _types: PhantomData<fn(I) -> Fut>,
}

impl<I, F, Fut> ToolFnBuilder<I, F, Fut>
where
    I: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(I, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ToolResult, ToolError>> + Send + 'static,
{
    /// Sets the behaviour hints (MCP defaults otherwise).
    pub fn annotations(mut self, annotations: ToolAnnotations) -> Self {
        self.annotations = annotations;
        self
    }

    /// Sets the tool's own time limit (the registry default otherwise).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Validates the name, derives the schema and returns the concrete tool.
    pub fn into_tool(self) -> Result<FnTool<I, F, Fut>, ToolError> {
        let name = ToolName::new(&self.name)?;
        let input_schema = object_schema_for::<I>(name.as_str())?;
        let spec = ToolSpec::new(name, self.description, input_schema)
            .with_annotations(self.annotations)
            .with_timeout_opt(self.timeout);
        Ok(FnTool { spec, f: self.f, _types: PhantomData })
    }

    /// Validates the name, derives the schema and returns a shareable [`Tool`].
    pub fn build(self) -> Result<Arc<dyn Tool>, ToolError> {
        Ok(Arc::new(self.into_tool()?))
    }
}

impl<I, F, Fut> fmt::Debug for ToolFnBuilder<I, F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolFnBuilder")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("annotations", &self.annotations)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A tool made from a closure by [`tool_fn`].
pub struct FnTool<I, F, Fut> {
    spec: ToolSpec,
    f: F,
    _types: PhantomData<fn(I) -> Fut>,
}

impl<I, F, Fut> fmt::Debug for FnTool<I, F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTool").field("spec", &self.spec).finish_non_exhaustive()
    }
}

#[async_trait]
impl<I, F, Fut> Tool for FnTool<I, F, Fut>
where
    I: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(I, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ToolResult, ToolError>> + Send + 'static,
{
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, args: Value, ctx: ToolContext) -> Result<ToolResult, ToolError> {
        let input = parse_input::<I>(self.spec.name.as_str(), args)?;
        (self.f)(input, ctx).await
    }
}

/// Input for a tool that takes no arguments: its schema is an empty object and it accepts
/// `{}` (or `null`). Unknown fields are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct NoInput {}

/// The JSON Schema of `T` in the form tool-calling models expect.
///
/// Draft 2020-12 with subschemas inlined (only recursive types keep a `$defs` section), no
/// `$schema` key, and no root `title` or `description` (the tool's description plays that
/// part). Field doc comments become `description`s; enums and serde defaults are kept.
/// Properties appear in alphabetical order.
///
/// ```
/// use schemars::JsonSchema;
/// #[derive(JsonSchema, serde::Deserialize)]
/// struct Input {
///     /// How many.
///     #[serde(default)]
///     count: u32,
/// }
/// let schema = kaos_tools::input_schema_for::<Input>();
/// assert_eq!(schema["type"], "object");
/// assert_eq!(schema["properties"]["count"]["description"], "How many.");
/// assert_eq!(schema["properties"]["count"]["default"], 0);
/// assert!(schema.get("$schema").is_none());
/// ```
pub fn input_schema_for<T: JsonSchema + ?Sized>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        // The type's own name and doc comment are written for Rust readers; the model reads
        // the tool's description instead.
        map.remove("title");
        map.remove("description");
    }
    value
}

/// [`input_schema_for`], checked to describe a JSON object (tool arguments always are one).
///
/// A schema without a `type` (e.g. a `oneOf` over tagged variants) gets `"type": "object"`; an
/// accept-anything schema (`true`, e.g. for `serde_json::Value`) becomes `{"type": "object"}`;
/// a plain object schema without `properties` gets an empty one, which some providers
/// require. Any other root type is an error.
pub(crate) fn object_schema_for<T: JsonSchema + ?Sized>(tool: &str) -> Result<Value, ToolError> {
    let invalid = |message: String| ToolError::InvalidSchema { tool: tool.to_owned(), message };
    let mut map = match input_schema_for::<T>() {
        Value::Object(map) => map,
        Value::Bool(true) => Map::new(),
        other => return Err(invalid(format!("expected an object schema, got {other}"))),
    };
    match map.get("type") {
        None => {
            map.insert("type".to_owned(), Value::from("object"));
        }
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => {
            return Err(invalid(format!(
                "tool arguments are a JSON object, but the input type's schema has type {other}; \
                 use a struct (or `NoInput`)"
            )));
        }
    }
    let is_combinator = ["oneOf", "anyOf", "allOf"].iter().any(|k| map.contains_key(*k));
    if !is_combinator && !map.contains_key("properties") {
        map.insert("properties".to_owned(), Value::Object(Map::new()));
    }
    Ok(Value::Object(map))
}

/// Parses raw tool arguments into `T`.
///
/// [`parse_arguments`] for a tool's input: a tool taking raw JSON (`Value`) gets the arguments
/// as they are (after the same repairs), not rebuilt by deserializing them into a copy.
fn parse_input<T: DeserializeOwned + 'static>(tool: &str, args: Value) -> Result<T, ToolError> {
    let mut args = Some(normalize(args));
    // `T` is `Value` exactly when an `Option<Value>` is an `Option<T>`.
    if let Some(input) =
        (&mut args as &mut dyn std::any::Any).downcast_mut::<Option<T>>().and_then(Option::take)
    {
        return Ok(input);
    }
    deserialize(tool, args.unwrap_or(Value::Null))
}

/// The repairs [`parse_arguments`] makes before deserializing.
fn normalize(args: Value) -> Value {
    match args {
        Value::Null => Value::Object(Map::new()),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => Value::String(s),
        },
        other => other,
    }
}

/// `null` counts as `{}` (some models send no arguments for argument-less tools), and a string
/// holding a JSON object is parsed (some models double-encode). Failures are
/// [`ToolError::InvalidArguments`] carrying serde's message, e.g. ``missing field `path` ``.
pub fn parse_arguments<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T, ToolError> {
    deserialize(tool, normalize(args))
}

/// Deserializes repaired arguments.
fn deserialize<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T, ToolError> {
    serde_json::from_value(args).map_err(|err| ToolError::InvalidArguments {
        tool: tool.to_owned(),
        message: format!("{err}; check the arguments against the tool's input schema"),
    })
}
