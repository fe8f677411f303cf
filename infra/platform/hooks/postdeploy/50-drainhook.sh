#!/usr/bin/env bash
# Amazon Linux 2 / 2023: make sure the agent runs the binary and config just deployed.
# (container_commands already installed it; this restarts it after the app is live.)
set -euo pipefail
if [ -x /usr/local/bin/drainhook ] && command -v systemctl >/dev/null; then
    systemctl restart drainhook.service
fi
