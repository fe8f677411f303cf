#!/bin/sh
# dist/drainhook-aarch64 under qemu-user, for the integration tests' DRAINHOOK_TEST_BIN
# (`make test-aarch64`). exec: the tests' signals reach qemu, which hands them to the binary.
# DRAINHOOK_AARCH64 names another aarch64 build.
here=$(cd "$(dirname "$0")" && pwd)
bin=${DRAINHOOK_AARCH64:-$here/../../dist/drainhook-aarch64}
if ! command -v qemu-aarch64-static >/dev/null; then
    echo "drainhook-aarch64.sh: qemu-aarch64-static is missing (apt-get install qemu-user-static)" >&2
    exit 127
fi
exec qemu-aarch64-static -L / "$bin" "$@"
