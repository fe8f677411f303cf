#!/usr/bin/env bash
# Runs a command with the moto server (plus our lifecycle extension) listening on a free
# loopback port, exported as AWS_ENDPOINT_URL; stops the server afterwards.
#   tests/moto_ext/with_moto.sh PYTHON COMMAND [ARGS...]
set -euo pipefail
py=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t moto.XXXXXX.log)
"$py" "$here/server.py" --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if "$py" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "the moto server did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
echo "moto server (with the lifecycle extension) at $AWS_ENDPOINT_URL" >&2
"$@"
