#!/usr/bin/env bash
# Idle agent cost: peak RSS and CPU over one minute of long-polling an empty queue.
# Run through `make idle` (needs the emulator: AWS_ENDPOINT_URL).
set -euo pipefail
bin=${1:-target/release/drainhook}
py=${PYTHON:-python3}
q=$("$py" -c "import boto3; print(boto3.client('sqs').create_queue(QueueName='drainhook-idle')['QueueUrl'])")
"$bin" agent --instance-id i-idle --queue-url "$q" --config /dev/null 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 2
t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
sleep 60
t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
hz=$(getconf CLK_TCK)
echo "idle agent over 60 s: CPU $(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN{printf "%.3f%%", (b-a)/hz/60*100}') ($((t1 - t0)) ticks of 1/$hz s), peak RSS $(awk '/VmHWM/{print $2, $3}' "/proc/$pid/status")"
