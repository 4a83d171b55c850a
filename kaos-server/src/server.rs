use std::sync::Arc;

use kaos_providers::Usage;
use kaos_tools::{
    Content, ToolAnnotations, ToolContext, ToolError, ToolName, ToolResult, ToolSelector, schemars,
};
use kaos_vfs::ScopedVfs;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource, ResourceContents,
    ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ClientId, ServeError};
use kaos_agent::PermissionRule;
use kaos_runner::{
    Approval, RunError, RunOptions, Runner, SessionId, StopReason, ToolCallRecord, TurnResponse,
};

/// Name of the tool that runs one agent turn.
pub const AGENT_TOOL: &str = "kaos-agent-turn";

/// Name of the tool that resumes a run paused for approval.
pub const RESUME_TOOL: &str = "kaos-agent-resume";

/// Session in which direct calls of the runtime's tools run (per caller, like any session).
pub const DIRECT_SESSION: &str = "mcp-direct";

/// URI prefix of session resources: `kaos://sessions/{session_id}`.
pub const SESSION_URI_PREFIX: &str = "kaos://sessions/";

/// Options shared by every transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Name announced in the MCP handshake [`kaos`].
    pub server_name: String,
    /// Name of the agent tool [`AGENT_TOOL`].
    pub agent_tool: String,
    /// The caller's namespace when the transport has no caller identity of its own (stdio).
    /// `None`: unscoped, the caller sees the runner's sessions as they are.
    pub client_id: Option<ClientId>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { server_name: "kaos".into(), agent_tool: AGENT_TOOL.into(), client_id: None }
    }
}

impl ServeOptions {
    /// `self` with the stdio caller scoped to `client_id`'s namespace.
    pub fn with_client_id(mut self, client_id: ClientId) -> Self {
        self.client_id = Some(client_id);
        self
    }

    /// `self` with another name for the agent tool (it must follow the tool-name rules).
    pub fn with_agent_tool(mut self, name: impl Into<String>) -> Self {
        self.agent_tool = name.into();
        self
    }
}

/// Input of the agent tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
#[serde(deny_unknown_fields)]
struct AgentTurnInput {
    /// The user's message for this turn.
    message: String,
    /// The conversation to continue, or to start when it does not exist yet: 1 to 95
    /// characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'.
    session_id: String,
    /// Tool-name globs (e.g. `kaos-vfs-*`) this request approves in advance: calls of matching
    /// tools run without pausing for approval (the agent's deny rules still apply first).
    #[serde(default)]
    approve: Vec<String>,
    /// Most this turn may cost, in USD (positive); the tighter of it and the agent's budget
    /// applies, checked before every model call.
    #[serde(default)]
    max_cost_usd: Option<f64>,
}

/// Input of the resume tool.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
#[serde(deny_unknown_fields)]
struct ResumeInput {
    /// The paused run's id (from `approval_required.run_id`).
    run_id: String,
    /// The session the run belongs to.
    session_id: String,
    /// Whether to run the pending tool call.
    approve: bool,
    /// With `approve`: also approve further calls of the same tool in this run.
    #[serde(default)]
    remember: bool,
    /// Without `approve`: why, for the model.
    #[serde(default)]
    reason: Option<String>,
}

/// What the agent tool returns as structured content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentTurnOutput {
    /// The turn's final answer.
    pub text: String,
    /// The session, as the caller named it.
    pub session_id: String,
    /// The run id (also the key to resume a paused run).
    pub run_id: String,
    /// The turn's number in its session, from 1.
    pub turn_number: u32,
    /// Why the turn stopped.
    pub stop_reason: StopReason,
    /// Cost in USD of the priced model calls.
    pub cost_usd: f64,
    /// Token usage summed over the turn.
    pub usage: Usage,
    /// Model calls made.
    pub model_calls: u32,
    /// Tool calls made, with arguments and results.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Set when the run paused for a human approval; `None` when the turn finished.
    pub approval_required: Option<ApprovalRequired>,
    /// The per-request guardrails as accepted.
    pub guardrails: Guardrails,
}

/// A run paused before a tool call that needs approval. Resume it with its `run_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApprovalRequired {
    /// The paused run.
    pub run_id: String,
    /// The tool waiting for approval.
    pub tool: String,
    /// The pending call's id.
    pub call_id: String,
    /// The pending call's arguments.
    pub arguments: Value,
}

/// The per-request approvals and budget the caller sent, as validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Guardrails {
    /// Pre-approved tool-name globs.
    pub approve: Vec<String>,
    /// Cost cap in USD.
    pub max_cost_usd: Option<f64>,
    /// Whether the runner enforces them (always, since permissions and budgets landed).
    pub enforced: bool,
}

/// Who is calling: the namespace its sessions live in (`None`: unscoped).
#[derive(Debug, Clone)]
pub(super) struct Caller(pub(super) Option<ClientId>);

/// The MCP server handler over one [`Runner`]; [`serve_stdio`](super::serve_stdio) and
/// [`serve_http`](super::serve_http) run it, or serve it over any rmcp transport yourself.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct KaosMcpServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runner: Runner,
    options: ServeOptions,
    tools: Vec<Tool>,
}

impl KaosMcpServer {
    /// The handler for `runner`. Errors when the agent tool's name is invalid or taken by a
    /// runtime tool.
    pub fn new(runner: Runner, options: ServeOptions) -> Result<Self, ServeError> {
        let agent_tool =
            ToolName::new(&options.agent_tool).map_err(|e| ServeError::Options(e.to_string()))?;
        if runner.runtime().tools().contains(agent_tool.as_str()) {
            return Err(ServeError::Options(format!(
                "the agent tool name `{agent_tool}` is taken by a runtime tool"
            )));
        }
        let schema = kaos_tools::input_schema_for::<AgentTurnInput>();
        let description = format!(
            "Runs one turn of the agent `{}`: sends `message` in session `session_id` (created on first use) and \
             returns the agent's answer, with cost, usage, stop reason, turn number and run id as structured content.",
            runner.agent().name()
        );
        let mut tools = vec![mcp_tool(agent_tool.as_str(), &description, schema, ToolAnnotations::DEFAULT)];
        tools.push(mcp_tool(
            RESUME_TOOL,
            "Resumes a run of the agent that paused because a tool call needs approval: approve (optionally \
             for the rest of the run) or deny the pending call; the same run continues and returns like the agent tool.",
            kaos_tools::input_schema_for::<ResumeInput>(),
            ToolAnnotations::DEFAULT,
        ));
        for tool in runner.runtime().tools().list() {
            let spec = tool.spec();
            tools.push(mcp_tool(
                spec.name.as_str(),
                &spec.description,
                spec.input_schema.clone(),
                spec.annotations,
            ));
        }
        Ok(Self { inner: Arc::new(Inner { runner, options, tools }) })
    }

    /// The tools this server lists, the agent tool first.
    pub fn tools(&self) -> &[Tool] {
        &self.inner.tools
    }

    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        let from_http =
            context.extensions.get::<http::request::Parts>().and_then(|p| p.extensions.get::<Caller>());
        from_http.cloned().unwrap_or_else(|| Caller(self.inner.options.client_id.clone()))
    }

    async fn agent_turn(&self, caller: &Caller, arguments: Value) -> Result<CallToolResult, ErrorData> {
        let input: AgentTurnInput = kaos_tools::parse_arguments(&self.inner.options.agent_tool, arguments)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        ToolSelector::new(&input.approve).map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        if let Some(cap) = input.max_cost_usd
            && !(cap.is_finite() && cap > 0.0)
        {
            return Err(ErrorData::invalid_params("max_cost_usd must be a positive number of USD", None));
        }
        let session = scoped_session(caller, &input.session_id)?;
        let mut options = RunOptions::default();
        for glob in &input.approve {
            options = options.with_permission(PermissionRule::allow(glob.clone()));
        }
        if let Some(cap) = input.max_cost_usd {
            options = options.with_max_cost_usd(cap);
        }
        let guardrails =
            Guardrails { approve: input.approve, max_cost_usd: input.max_cost_usd, enforced: true };
        let outcome = self.inner.runner.turn_with(input.message, session.as_str(), options).await;
        respond(outcome, input.session_id, guardrails)
    }

    async fn resume(&self, caller: &Caller, arguments: Value) -> Result<CallToolResult, ErrorData> {
        let input: ResumeInput = kaos_tools::parse_arguments(RESUME_TOOL, arguments)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let session = scoped_session(caller, &input.session_id)?;
        let state = match self.inner.runner.run_state(&input.run_id).await {
            // Another caller's run is the same "not found" as a missing one.
            Ok(state) if state.session_id == session.as_str() => state,
            _ => return Err(ErrorData::resource_not_found(format!("no paused run {}", input.run_id), None)),
        };
        let approval = match (input.approve, input.remember) {
            (true, false) => Approval::approve(),
            (true, true) => Approval::approve_and_remember(),
            (false, _) => Approval::deny(input.reason.unwrap_or_else(|| "denied by the caller".into())),
        };
        let outcome = self.inner.runner.resume_turn(state, approval).await;
        let guardrails = Guardrails { approve: Vec::new(), max_cost_usd: None, enforced: true };
        respond(outcome, input.session_id, guardrails)
    }

    async fn direct_call(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Value,
    ) -> Result<CallToolResult, ErrorData> {
        let runtime = self.inner.runner.runtime();
        if !runtime.tools().contains(name) {
            return Err(ErrorData::invalid_params(format!("no tool named `{name}`"), None));
        }
        let session = scoped_session(caller, DIRECT_SESSION)?;
        let root =
            kaos_session::files_dir(&session).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let vfs = Arc::new(ScopedVfs::new(runtime.vfs().clone(), root));
        let run_id = format!("mcp_{}", uuid::Uuid::now_v7().simple());
        let context = ToolContext::new(session.as_str(), run_id, "mcp", vfs);
        let result =
            runtime.tools().invoke(name, arguments, context).await.unwrap_or_else(ToolError::into_result);
        Ok(to_mcp_result(result))
    }

    async fn session_ids(&self, caller: &Caller) -> Result<Vec<String>, ErrorData> {
        let stored = self
            .inner
            .runner
            .sessions()
            .ids()
            .await
            .map_err(|e| ErrorData::internal_error(format!("cannot list sessions: {e}"), None))?;
        let ids = stored
            .into_iter()
            .map(|id| id.as_str().to_owned())
            .filter_map(|stored| match &caller.0 {
                None => Some(stored),
                Some(client) => stored.strip_prefix(&format!("{client}.")).map(str::to_owned),
            })
            .collect();
        Ok(ids)
    }

    async fn read_session(&self, caller: &Caller, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let not_found = || ErrorData::resource_not_found(format!("no resource {uri}"), None);
        let public = uri.strip_prefix(SESSION_URI_PREFIX).ok_or_else(not_found)?;
        let session = scoped_session(caller, public).map_err(|_| not_found())?;
        let turns = self
            .inner
            .runner
            .sessions()
            .turns(session.as_str())
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let messages: Vec<_> = turns.ok_or_else(not_found)?.into_iter().flat_map(|r| r.messages).collect();
        let body = json!({ "session_id": public, "messages": messages });
        let text = serde_json::to_string_pretty(&body)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type("application/json"),
        ]))
    }
}

/// The runner session of `caller`'s session `public`: `{client_id}.{public}` when scoped.
fn scoped_session(caller: &Caller, public: &str) -> Result<SessionId, ErrorData> {
    // The public id must itself be valid, so `a.b` as a public id can never reach `a`'s namespace
    // from an unscoped caller by accident of concatenation.
    SessionId::new(public).map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
    let stored = match &caller.0 {
        None => public.to_owned(),
        Some(client) => format!("{client}.{public}"),
    };
    SessionId::new(&stored).map_err(|e| ErrorData::invalid_params(e.to_string(), None))
}

/// A turn's outcome as the agent and resume tools return it.
fn respond(
    outcome: Result<TurnResponse, RunError>,
    session_id: String,
    guardrails: Guardrails,
) -> Result<CallToolResult, ErrorData> {
    match outcome {
        Ok(response) => {
            let output = turn_output(response, session_id, guardrails);
            let structured = serde_json::to_value(&output)
                .map_err(|e| ErrorData::internal_error(format!("cannot encode the turn: {e}"), None))?;
            let mut result = CallToolResult::success(vec![ContentBlock::text(output.text.clone())]);
            result.structured_content = Some(structured);
            Ok(result)
        }
        Err(e) => {
            tracing::warn!(error = %e, "agent turn over MCP failed");
            Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "the turn failed ({}): {e}",
                e.kind()
            ))]))
        }
    }
}

fn turn_output(response: TurnResponse, session_id: String, guardrails: Guardrails) -> AgentTurnOutput {
    AgentTurnOutput {
        text: response.text,
        session_id,
        run_id: response.run_id.to_string(),
        turn_number: response.turn_number,
        stop_reason: response.stop_reason,
        cost_usd: response.cost_usd,
        usage: response.usage,
        model_calls: response.model_calls,
        tool_calls: response.tool_calls,
        approval_required: response.pending_approval.map(|pending| ApprovalRequired {
            run_id: response.run_id.to_string(),
            tool: pending.tool_name,
            call_id: pending.call_id,
            arguments: pending.arguments,
        }),
        guardrails,
    }
}

fn mcp_tool(name: &str, description: &str, schema: Value, a: ToolAnnotations) -> Tool {
    let schema = match schema {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let annotations = rmcp::model::ToolAnnotations::from_raw(
        None,
        Some(a.read_only),
        Some(a.destructive),
        Some(a.idempotent),
        Some(a.open_world),
    );
    Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema)).with_annotations(annotations)
}

fn to_mcp_result(result: ToolResult) -> CallToolResult {
    let content: Vec<ContentBlock> = result
        .content
        .iter()
        .map(|part| match part {
            Content::ResourceLink { uri, name, mime_type } => {
                let link = Resource::new(uri.clone(), name.clone());
                ContentBlock::ResourceLink(match mime_type {
                    Some(mime) => link.with_mime_type(mime.clone()),
                    None => link,
                })
            }
            other => ContentBlock::text(other.to_model_text()),
        })
        .collect();
    let mut out =
        if result.is_error { CallToolResult::error(content) } else { CallToolResult::success(content) };
    out.structured_content = result.structured_content;
    out
}

impl ServerHandler for KaosMcpServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_resources().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(self.inner.options.server_name.clone(), env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Call `{}` to talk to the agent `{}`; read a session's conversation at {SESSION_URI_PREFIX}{{session_id}}.",
                self.inner.options.agent_tool,
                self.inner.runner.agent().name()
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.inner.tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context);
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let result = if request.name == self.inner.options.agent_tool {
            self.agent_turn(&caller, arguments).await?
        } else if request.name == RESUME_TOOL {
            self.resume(&caller, arguments).await?
        } else {
            self.direct_call(&caller, &request.name, arguments).await?
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller(&context);
        let resources = self
            .session_ids(&caller)
            .await?
            .into_iter()
            .map(|id| {
                Resource::new(format!("{SESSION_URI_PREFIX}{id}"), format!("session {id}"))
                    .with_mime_type("application/json")
                    .with_description("The stored conversation of this session.")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(format!("{SESSION_URI_PREFIX}{{session_id}}"), "session")
            .with_mime_type("application/json")
            .with_description("The stored conversation of a session (messages, oldest first), as JSON.");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context);
        Ok(self.read_session(&caller, &request.uri).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_namespaced_per_caller() {
        let alice = Caller(Some(ClientId::new("alice").unwrap()));
        assert_eq!(scoped_session(&alice, "s1").unwrap().as_str(), "alice.s1");
        assert_eq!(scoped_session(&Caller(None), "s1").unwrap().as_str(), "s1");
        assert!(scoped_session(&alice, "../x").is_err());
        // Valid alone, too long once namespaced.
        assert!(scoped_session(&alice, &"x".repeat(125)).is_err());
    }
}
