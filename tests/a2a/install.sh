#!/usr/bin/env bash
# Installs the pinned official A2A Python SDK (tests/a2a/requirements.txt) whose client drives
# `kaos serve --http` in the A2A interop test. Needs python3 (>= 3.10) with pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python="${KAOS_A2A_PYTHON:-python3}"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r requirements.txt -r requirements-peer.txt
"$python" -c "from importlib.metadata import version; print('A2A interop client: a2a-sdk', version('a2a-sdk'))"
