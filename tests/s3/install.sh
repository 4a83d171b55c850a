#!/usr/bin/env bash
# Installs the pinned S3-compatible test server (moto, tests/s3/requirements.txt) for the
# object-store tests and bench. Needs python3 (>= 3.9) with pip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python="${KAOS_S3_PYTHON:-python3}"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r requirements.txt
"$python" -c "import moto, werkzeug; print('S3 test server: moto', moto.__version__)"
