//! Serves a KAOS agent over MCP, until `kaos serve` lands in the CLI.
//!
//! ```text
//! cargo run -p kaos-server --example mcp_serve -- --stdio [--data-dir DIR]
//! KAOS_MCP_TOKEN=… cargo run -p kaos-server --example mcp_serve -- --http 127.0.0.1:8080
//! ```
//!
//! The agent runs on the offline model `scripted:echo` (it reports what it saw), with the
//! built-in VFS tools and a `kaos-demo-greet` tool, so any MCP client can try it without an
//! API key. Over HTTP the token comes from `KAOS_MCP_TOKEN` (client id `default`) or from
//! `--token TOKEN=CLIENT_ID` (repeatable); the server refuses to start without one. It prints
//! `listening on URL` to stderr once it accepts connections.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use kaos_agent::Agent;
use kaos_runner::Runner;
use kaos_runtime::Runtime;
use kaos_server::{HttpOptions, ServeOptions, serve_http, serve_stdio};
use kaos_tools::{Tool, ToolAnnotations, ToolResult, schemars, tool_fn};
use serde::{Deserialize, Serialize};

/// How formal a greeting is.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
#[serde(rename_all = "snake_case")]
enum Style {
    /// A greeting for strangers.
    Formal,
    /// A greeting for friends.
    #[default]
    Casual,
}

/// Input of `kaos-demo-greet`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "kaos_tools::schemars")]
struct GreetInput {
    /// Who to greet.
    name: String,
    /// How formal the greeting is.
    #[serde(default)]
    style: Style,
}

fn greet_tool() -> anyhow::Result<Arc<dyn Tool>> {
    let tool = tool_fn("kaos-demo-greet", "Greets someone by name.", |input: GreetInput, _ctx| async move {
        Ok(ToolResult::text(match input.style {
            Style::Formal => format!("Good day, {}.", input.name),
            Style::Casual => format!("Hi {}!", input.name),
        }))
    })
    .annotations(ToolAnnotations::read_only().with_open_world(false))
    .build()?;
    Ok(tool)
}

#[derive(Debug)]
enum Mode {
    Stdio,
    Http(SocketAddr),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut mode = None;
    let mut data_dir = None;
    let mut tokens = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stdio" => mode = Some(Mode::Stdio),
            "--http" => {
                let addr = args.next().context("--http needs an address, e.g. 127.0.0.1:8080")?;
                mode = Some(Mode::Http(addr.parse().with_context(|| format!("bad address {addr:?}"))?));
            }
            "--data-dir" => data_dir = Some(args.next().context("--data-dir needs a directory")?),
            "--token" => {
                let pair = args.next().context("--token needs TOKEN=CLIENT_ID")?;
                let (token, client) = pair.split_once('=').context("--token needs TOKEN=CLIENT_ID")?;
                tokens.push((token.to_owned(), client.to_owned()));
            }
            other => bail!("unknown argument {other:?} (use --stdio or --http ADDR)"),
        }
    }
    let builder = match &data_dir {
        Some(dir) => Runtime::on_disk(dir)?.to_builder(),
        None => Runtime::builder(),
    };
    let runtime = builder.builtin_tools()?.tool(greet_tool()?)?.build();
    let agent = Agent::builder().name("echo-agent").instructions("Report what you saw.").build()?;
    let runner = Runner::builder(agent, runtime).build()?;

    match mode {
        Some(Mode::Stdio) => serve_stdio(runner, ServeOptions::default()).await?,
        Some(Mode::Http(addr)) => {
            if tokens.is_empty()
                && let Ok(token) = std::env::var("KAOS_MCP_TOKEN")
            {
                tokens.push((token, "default".to_owned()));
            }
            let options = tokens
                .into_iter()
                .fold(HttpOptions::new(), |options, (token, client)| options.with_token(token, client));
            let server = serve_http(runner, addr, options).await?;
            eprintln!("listening on {}", server.url());
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
        }
        None => bail!("choose a transport: --stdio or --http ADDR"),
    }
    Ok(())
}
