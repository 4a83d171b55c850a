//! The public types users share across tasks and threads stay `Send + Sync` (and the errors
//! `'static` with `std::error::Error`, so they fit `anyhow`/`Box<dyn Error + Send + Sync>`).
//! A change that makes one of them `!Send` or `!Sync` fails to compile here, before a user's
//! `tokio::spawn` does.

fn send_sync<T: Send + Sync>() {}

fn error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn shared_types_are_send_and_sync() {
    send_sync::<kaos_runner::Runner>();
    send_sync::<kaos_runner::RunnerBuilder>();
    send_sync::<kaos_runner::RunState>();
    send_sync::<kaos_runner::TurnResponse>();
    send_sync::<kaos_runner::Event>();
    send_sync::<kaos_runner::PendingApproval>();
    send_sync::<kaos_agent::Agent>();
    send_sync::<kaos_agent::AgentConfig>();
    send_sync::<kaos_runtime::Runtime>();
    send_sync::<kaos_session::Sessions>();
    send_sync::<kaos_session::SessionId>();
    send_sync::<kaos_tools::ToolRegistry>();
    send_sync::<std::sync::Arc<dyn kaos_tools::Tool>>();
    send_sync::<std::sync::Arc<dyn kaos_providers::ModelClient>>();
    send_sync::<std::sync::Arc<dyn kaos_vfs::Vfs>>();
    send_sync::<kaos_vfs::VfsPath>();
    send_sync::<kaos_providers::ModelRequest>();
    send_sync::<kaos_providers::ModelResponse>();
}

#[test]
fn the_run_stream_can_move_to_another_task() {
    fn send<T: Send>() {}
    send::<kaos_runner::RunStream>();
}

#[test]
fn errors_are_send_sync_static() {
    error::<kaos_runner::RunError>();
    error::<kaos_runner::RunStateError>();
    error::<kaos_agent::AgentError>();
    error::<kaos_runtime::RuntimeError>();
    error::<kaos_session::SessionError>();
    error::<kaos_tools::ToolError>();
    error::<kaos_providers::ProviderError>();
    error::<kaos_vfs::VfsError>();
}
