#!/usr/bin/env bash
# Installs Chromium from Debian's packages for the console's browser test
# (kaos-server/tests/it/browser.rs drives /usr/bin/chromium headless over the DevTools
# Protocol; no browser is downloaded by any test tool). Pinned as far as apt allows: the
# version is Debian's current security-supported `chromium` of the release, printed below.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    chromium --version
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium
chromium --version
