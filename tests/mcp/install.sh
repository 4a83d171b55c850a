#!/usr/bin/env bash
# Installs the pinned MCP implementations the interop tests run against
# (tests/mcp/package-lock.json) into tests/mcp/node_modules. Needs node >= 20 and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --ignore-scripts --no-audit --no-fund
