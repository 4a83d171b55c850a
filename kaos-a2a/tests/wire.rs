//! The types read and write the JSON of the A2A 1.0 specification's own examples.

use kaos_a2a::{
    AgentCard, ErrorCode, JsonRpcError, JsonRpcRequest, JsonRpcResponse, Method, Part, PartContent,
    RequestId, Role, RpcParseError, SecurityScheme, SendMessageRequest, SendMessageResponse, StreamResponse,
    Task, TaskState,
};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn a_task_answer_of_the_specification_reads_and_writes_back_the_same() -> TestResult {
    let wire = json!({
        "task": {
            "id": "task-uuid",
            "contextId": "context-uuid",
            "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{
                "artifactId": "artifact-uuid",
                "name": "Weather Report",
                "parts": [{"text": "Today will be sunny with a high of 75°F"}]
            }]
        }
    });
    let response: SendMessageResponse = serde_json::from_value(wire.clone())?;
    let SendMessageResponse::Task(task) = &response else { return Err("not a task".into()) };
    assert_eq!(task.status.state, TaskState::Completed);
    assert!(task.status.state.is_terminal());
    assert_eq!(task.artifacts[0].parts[0].as_text(), Some("Today will be sunny with a high of 75°F"));
    assert_eq!(serde_json::to_value(&response)?, wire);
    Ok(())
}

#[test]
fn stream_events_are_one_of_task_message_status_or_artifact_update() -> TestResult {
    let events = [
        json!({"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}),
        json!({"artifactUpdate": {"taskId": "t", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"text": "# Report"}]}, "append": true}}),
        json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED", "timestamp": "2025-10-28T10:30:00.000Z"}}}),
        json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"data": {"k": [1, 2]}}]}}),
    ];
    for wire in events {
        let event: StreamResponse = serde_json::from_value(wire.clone())?;
        assert_eq!(serde_json::to_value(&event)?, wire, "{event:?}");
    }
    Ok(())
}

#[test]
fn parts_hold_text_bytes_urls_or_data_with_their_media_type() -> TestResult {
    let raw: Part =
        serde_json::from_value(json!({"raw": "aGVsbG8=", "mediaType": "text/plain", "filename": "a.txt"}))?;
    assert_eq!(raw.content, PartContent::Raw(b"hello".to_vec()));
    assert_eq!(raw.media_type.as_deref(), Some("text/plain"));
    assert_eq!(
        serde_json::to_value(&raw)?,
        json!({"raw": "aGVsbG8=", "mediaType": "text/plain", "filename": "a.txt"})
    );
    // ProtoJSON readers accept unpadded and URL-safe base64.
    let unpadded: Part = serde_json::from_value(json!({"raw": "_-8"}))?;
    assert_eq!(unpadded.content, PartContent::Raw(vec![0xff, 0xef]));
    let url: Part =
        serde_json::from_value(json!({"url": "https://x.test/a.pdf", "mediaType": "application/pdf"}))?;
    assert_eq!(url, Part::url("https://x.test/a.pdf", "application/pdf"));
    assert!(serde_json::from_value::<Part>(json!({"raw": "not base64!"})).is_err());
    assert!(
        serde_json::from_value::<Part>(json!({"mediaType": "text/plain"})).is_err(),
        "a part holds content"
    );
    Ok(())
}

#[test]
fn the_sample_agent_card_of_the_specification_reads() -> TestResult {
    let wire = json!({
        "name": "GeoSpatial Route Planner Agent",
        "description": "Provides advanced route planning.",
        "supportedInterfaces": [
            {"url": "https://georoute-agent.example.com/a2a/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "https://georoute-agent.example.com/a2a/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
        ],
        "provider": {"organization": "Example Geo Services Inc.", "url": "https://www.examplegeoservices.com"},
        "iconUrl": "https://georoute-agent.example.com/icon.png",
        "version": "1.2.0",
        "documentationUrl": "https://docs.examplegeoservices.com/georoute-agent/api",
        "capabilities": {"streaming": true, "pushNotifications": true, "extendedAgentCard": true},
        "securitySchemes": {
            "google": {"openIdConnectSecurityScheme": {"openIdConnectUrl": "https://accounts.google.com/.well-known/openid-configuration"}},
            "bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer"}}
        },
        "securityRequirements": [{"schemes": {"google": {"list": ["openid", "profile", "email"]}}}],
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json", "image/png"],
        "skills": [{
            "id": "route-optimizer-traffic",
            "name": "Traffic-Aware Route Optimizer",
            "description": "Calculates the optimal driving route.",
            "tags": ["maps", "routing"],
            "examples": ["Plan a route from A to B."],
            "inputModes": ["application/json", "text/plain"],
            "outputModes": ["application/json"]
        }],
        "signatures": [{"protected": "eyJhbGciOiJFUzI1NiJ9", "signature": "QFdkNLNszlGj3z3u0YQGt"}]
    });
    let card: AgentCard = serde_json::from_value(wire.clone())?;
    assert_eq!(
        card.interface("JSONRPC").map(|i| i.url.as_str()),
        Some("https://georoute-agent.example.com/a2a/v1")
    );
    assert_eq!(card.security_schemes.get("bearer"), Some(&SecurityScheme::bearer("")));
    assert_eq!(card.capabilities.streaming, Some(true));
    assert_eq!(serde_json::to_value(&card)?, wire);
    Ok(())
}

#[test]
fn a_request_names_a_method_of_the_protocol_and_its_params_fit_it() -> TestResult {
    let request: JsonRpcRequest = serde_json::from_value(json!({
        "jsonrpc": "2.0", "id": 7, "method": "SendMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "taskId": "t", "parts": [{"text": "yes"}]},
                   "configuration": {"returnImmediately": true, "historyLength": 3}}
    }))?;
    assert_eq!(request.id, Some(RequestId::Number(7)));
    assert_eq!(request.method()?, Method::SendMessage);
    let params: SendMessageRequest = request.params()?;
    assert_eq!(params.message.task_id.as_deref(), Some("t"));
    assert_eq!(params.message.role, Role::User);
    assert_eq!(params.message.text(), "yes");
    let configuration = params.configuration.ok_or("configuration")?;
    assert!(configuration.return_immediately);
    assert_eq!(configuration.history_length, Some(3));

    let unknown: JsonRpcRequest =
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": "x", "method": "message/send"}))?;
    assert_eq!(unknown.method(), Err(RpcParseError::UnknownMethod("message/send".into())));
    assert_eq!(JsonRpcError::from(unknown.method().err().ok_or("error")?).code, -32601);
    let old: JsonRpcRequest =
        serde_json::from_value(json!({"jsonrpc": "1.0", "id": 1, "method": "GetTask"}))?;
    assert_eq!(old.method().err().map(|e| e.code()), Some(ErrorCode::InvalidRequest));
    let bad: JsonRpcRequest = serde_json::from_value(
        json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER"}}}),
    )?;
    let error = bad.params::<SendMessageRequest>().err().ok_or("no error")?;
    assert_eq!(error.code(), ErrorCode::InvalidParams);
    assert!(error.to_string().contains("messageId"), "{error}");
    Ok(())
}

#[test]
fn errors_carry_the_protocol_codes_and_an_error_info_detail() -> TestResult {
    for (code, number) in [
        (ErrorCode::ParseError, -32700),
        (ErrorCode::InvalidRequest, -32600),
        (ErrorCode::MethodNotFound, -32601),
        (ErrorCode::InvalidParams, -32602),
        (ErrorCode::InternalError, -32603),
        (ErrorCode::TaskNotFound, -32001),
        (ErrorCode::TaskNotCancelable, -32002),
        (ErrorCode::PushNotificationNotSupported, -32003),
        (ErrorCode::UnsupportedOperation, -32004),
        (ErrorCode::ContentTypeNotSupported, -32005),
        (ErrorCode::InvalidAgentResponse, -32006),
        (ErrorCode::ExtendedAgentCardNotConfigured, -32007),
        (ErrorCode::ExtensionSupportRequired, -32008),
        (ErrorCode::VersionNotSupported, -32009),
    ] {
        assert_eq!(code.code(), number);
        assert_eq!(ErrorCode::from_code(number), Some(code));
    }
    let error = JsonRpcError::new(ErrorCode::TaskNotFound, "Task not found").with_metadata("taskId", "t-1");
    let response = JsonRpcResponse::<Value>::failure(Some(RequestId::String("2".into())), error);
    assert_eq!(
        serde_json::to_value(&response)?,
        json!({"jsonrpc": "2.0", "id": "2", "error": {"code": -32001, "message": "Task not found", "data": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TASK_NOT_FOUND",
            "domain": "a2a-protocol.org", "metadata": {"taskId": "t-1"}}]}})
    );
    let unreadable = JsonRpcResponse::<Value>::failure(
        None,
        JsonRpcError::new(ErrorCode::ParseError, ErrorCode::ParseError.message()),
    );
    assert_eq!(
        serde_json::to_value(&unreadable)?["id"],
        Value::Null,
        "an unreadable request is answered with id null"
    );
    let ok: JsonRpcResponse<Task> = serde_json::from_value(
        json!({"jsonrpc": "2.0", "id": 1, "result": {"id": "t", "status": {"state": "TASK_STATE_CANCELED"}}}),
    )?;
    assert_eq!(ok.into_result()?.status.state, TaskState::Canceled);
    let failed: JsonRpcResponse<Task> = serde_json::from_value(
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32002, "message": "no"}}),
    )?;
    assert_eq!(failed.into_result().err().and_then(|e| e.error_code()), Some(ErrorCode::TaskNotCancelable));
    Ok(())
}
