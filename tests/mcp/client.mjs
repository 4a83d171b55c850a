// Drives a KAOS MCP server with the official TypeScript SDK and prints what it saw as one
// JSON object on stdout (kaos-runner/tests/mcp.rs asserts on it).
//
//   node tests/mcp/client.mjs stdio COMMAND [ARGS...]
//   node tests/mcp/client.mjs http URL TOKEN
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, ...rest] = process.argv.slice(2);
const out = {};
// The session this run talks in, and optionally another caller's session it tries to read.
const session = process.env.KAOS_TEST_SESSION ?? "interop";
const foreign = process.env.KAOS_TEST_FOREIGN_SESSION;

// Status codes of raw requests with no token and with a wrong token (HTTP only).
async function unauthorizedStatuses(url) {
  const body = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "probe", version: "0" } },
  });
  const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
  const missing = await fetch(url, { method: "POST", headers, body });
  const wrong = await fetch(url, { method: "POST", headers: { ...headers, authorization: "Bearer wrong-token-0123456789" }, body });
  return { missing_token: missing.status, wrong_token: wrong.status, www_authenticate: missing.headers.get("www-authenticate") };
}

let transport;
if (mode === "stdio") {
  const [command, ...args] = rest;
  transport = new StdioClientTransport({ command, args, stderr: "inherit" });
} else if (mode === "http") {
  const [url, token] = rest;
  out.unauthorized = await unauthorizedStatuses(url);
  transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
} else {
  console.error("usage: client.mjs stdio COMMAND [ARGS...] | client.mjs http URL TOKEN");
  process.exit(2);
}

const client = new Client({ name: "kaos-interop-test", version: "1.0.0" });
await client.connect(transport);
out.server = client.getServerVersion()?.name;

const { tools } = await client.listTools();
out.tools = tools.map((t) => t.name);
const greet = tools.find((t) => t.name === "kaos-demo-greet");
out.greet = { description: greet?.description, input_schema: greet?.inputSchema, annotations: greet?.annotations };
const agent = tools.find((t) => t.name === "kaos-agent-turn");
out.agent_tool = { required: agent?.inputSchema?.required, properties: Object.keys(agent?.inputSchema?.properties ?? {}).sort() };

// The demo tool exists only on the example server; `kaos serve` has the built-in tools only.
if (greet) {
  const greeting = await client.callTool({ name: "kaos-demo-greet", arguments: { name: "Ada", style: "formal" } });
  out.greeting = greeting.content.map((c) => c.text);
} else {
  out.greeting = [];
}

const first = await client.callTool({ name: "kaos-agent-turn", arguments: { message: "hello", session_id: session } });
const second = await client.callTool({
  name: "kaos-agent-turn",
  arguments: { message: "again", session_id: session, approve: ["kaos-vfs-*"], max_cost_usd: 0.5 },
});
out.turns = [first, second].map((r) => ({ text: r.content.map((c) => c.text).join(""), is_error: r.isError ?? false, structured: r.structuredContent }));

const bad = await client.callTool({ name: "kaos-agent-turn", arguments: { message: "x", session_id: "../escape" } }).then(
  (r) => ({ is_error: r.isError ?? false }),
  (e) => ({ rejected: true, code: e.code }),
);
out.bad_session = bad;

const { resources } = await client.listResources();
out.resources = resources.map((r) => r.uri).sort();
const read = await client.readResource({ uri: `kaos://sessions/${session}` });
out.session = { mime_type: read.contents[0].mimeType, json: JSON.parse(read.contents[0].text) };
out.missing_session = await client.readResource({ uri: "kaos://sessions/nobody-here" }).then(
  () => ({ found: true }),
  (e) => ({ found: false, code: e.code }),
);

if (foreign) {
  out.foreign_session = await client.readResource({ uri: `kaos://sessions/${foreign}` }).then(
    () => ({ found: true }),
    (e) => ({ found: false, code: e.code }),
  );
}

await client.close();
console.log(JSON.stringify(out));
