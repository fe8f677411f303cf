#!/usr/bin/env bash
# Installs drainhook: the binary, its config, and the init flavour the machine has
# (systemd when present, else SysV with chkconfig). Safe to run on every deployment.
#
#   install.sh [--binary PATH | --binary-dir DIR] [--config PATH] [--init auto|systemd|sysv]
#   install.sh --uninstall
#
# --binary-dir DIR takes the binary for this machine's CPU, DIR/drainhook-$(uname -m)
# (drainhook-x86_64 or drainhook-aarch64), so one bundle serves both kinds of instance.
# A binary built for another CPU than this machine's is refused.
# DRAINHOOK_ROOT (default /) installs into another root: tests use a scratch directory.
# Under a root other than /, nothing is started or stopped.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${DRAINHOOK_ROOT:-/}
root=${root%/}
binary=""
binary_dir=""
config=""
init=auto
uninstall=false

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --binary-dir) binary_dir=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        --uninstall) uninstall=true; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done

# Source files: beside this script in the repository, or in the bundle's drainhook/ dir.
find_src() {
    for p in "$here/../$1" "$here/$1" "$here/$(basename "$1")"; do
        if [ -e "$p" ]; then echo "$p"; return 0; fi
    done
    echo "install.sh: cannot find $1 next to $here" >&2
    exit 1
}

live() { [ -z "$root" ]; }

bin_path=$root/usr/local/bin/drainhook
conf_dir=$root/etc/drainhook
report_dir=$root/var/log/drainhook
report=$report_dir/drain.log
filebeat_dir=$root/etc/filebeat
filebeat_input=$filebeat_dir/inputs.d/drainhook-report.yml
unit_dir=$root/etc/systemd/system
initd=$root/etc/rc.d/init.d
units=(drainhook.service drainhook-shutdown.service)

if [ "$init" = auto ]; then
    if [ -d "$root/run/systemd/system" ]; then init=systemd; else init=sysv; fi
fi
case "$init" in systemd|sysv) ;; *) echo "install.sh: --init must be auto, systemd or sysv" >&2; exit 2 ;; esac

# What the chkconfig header says: start and stop priorities, and the runlevels it runs in.
chk=$(grep -m1 '^# chkconfig:' "$(find_src systemd/sysvinit/drainhook)")
read -r _ _ levels start_prio stop_prio <<<"$chk"

copy() { # copy SRC DEST MODE, only when different (idempotent)
    if ! cmp -s "$1" "$2" 2>/dev/null; then
        mkdir -p "$(dirname "$2")"
        install -m "$3" "$1" "$2"
        echo "installed $2"
    fi
}

sysv_links() { # create or remove the S/K links chkconfig would make
    local action=$1 lvl
    for lvl in 0 1 2 3 4 5 6; do
        local d=$root/etc/rc.d/rc$lvl.d s_link k_link
        s_link=$d/S${start_prio}drainhook
        k_link=$d/K${stop_prio}drainhook
        if [ "$action" = remove ]; then
            rm -f "$s_link" "$k_link"
            rmdir "$d" 2>/dev/null || true
            continue
        fi
        mkdir -p "$d"
        if [[ $levels == *$lvl* ]]; then
            ln -sfn ../init.d/drainhook "$s_link"
        else
            ln -sfn ../init.d/drainhook "$k_link"
        fi
    done
}

prune() { # remove directories we may have created, if empty
    local d
    for d in "$@"; do
        while [ -n "$d" ] && [ "$d" != "$root" ] && [ "$d" != / ] && rmdir "$d" 2>/dev/null; do
            d=$(dirname "$d")
        done
    done
}

if $uninstall; then
    if live && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now "${units[@]}" 2>/dev/null || true
    elif live && [ -x "$initd/drainhook" ]; then
        # Uninstalling is not a shutdown: drop the lock without draining.
        rm -f /var/lock/subsys/drainhook
        if command -v chkconfig >/dev/null; then chkconfig --del drainhook || true; fi
    fi
    for u in "${units[@]}"; do
        rm -f "$unit_dir/$u" "$unit_dir/multi-user.target.wants/$u"
    done
    sysv_links remove
    rm -f "$initd/drainhook" "$bin_path" "$filebeat_input"
    rm -rf "$conf_dir"
    # The drain reports are the operator's: kept, unless there are none.
    if [ -f "$report" ] && [ ! -s "$report" ]; then rm -f "$report"; fi
    rmdir "$(dirname "$filebeat_input")" 2>/dev/null || true
    if live && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    prune "$unit_dir/multi-user.target.wants" "$initd" "$(dirname "$bin_path")" "$root/etc/rc.d" "$report_dir"
    echo "drainhook uninstalled"
    exit 0
fi

# The CPU an ELF binary is built for, as `uname -m` names it (x86_64, aarch64).
elf_machine() {
    local magic machine
    magic=$(od -An -c -N4 "$1" | tr -d ' ')
    if [ "$magic" != '177ELF' ]; then echo "not-elf"; return; fi
    machine=$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')
    case "$machine" in 62) echo x86_64 ;; 183) echo aarch64 ;; *) echo "elf-machine-$machine" ;; esac
}

# DRAINHOOK_MACHINE stands in for `uname -m` (tests pick the other CPU's binary with it).
machine=${DRAINHOOK_MACHINE:-$(uname -m)}
if [ -n "$binary_dir" ]; then
    if [ -n "$binary" ]; then echo "install.sh: give --binary or --binary-dir, not both" >&2; exit 2; fi
    binary=$binary_dir/drainhook-$machine
    if [ ! -f "$binary" ]; then
        have=$(shopt -s nullglob; if cd "$binary_dir" 2>/dev/null; then echo drainhook-*; fi)
        echo "install.sh: no drainhook for this machine's CPU ($machine): $binary is missing" \
            "(in $binary_dir: ${have:-no drainhook-* at all})" >&2
        exit 1
    fi
fi
if [ -n "$binary" ]; then
    if [ ! -f "$binary" ]; then echo "install.sh: no binary at $binary" >&2; exit 1; fi
    built_for=$(elf_machine "$binary")
    if [ "$built_for" != not-elf ] && [ "$built_for" != "$machine" ]; then
        echo "install.sh: $binary is built for $built_for, and this machine is $machine;" \
            "take drainhook-$machine (or --binary-dir DIR to pick it)" >&2
        exit 1
    fi
    copy "$binary" "$bin_path" 0755
elif [ ! -x "$bin_path" ]; then
    echo "install.sh: no binary at $bin_path; pass --binary PATH" >&2
    exit 1
fi
if [ -n "$config" ]; then
    copy "$config" "$conf_dir/drainhook.toml" 0644
fi
# Only root may be able to change the config: the agent runs its pre_drain commands as root,
# and refuses to start when anyone else could write the file or its directory. Whoever wrote
# them (this script, .ebextensions, an operator), leave them root's, 0644 in 0755.
if [ -e "$conf_dir/drainhook.toml" ]; then
    chmod 0755 "$conf_dir"
    chmod 0644 "$conf_dir/drainhook.toml"
    if [ "$(id -u)" = 0 ]; then chown root:root "$conf_dir" "$conf_dir/drainhook.toml"; fi
fi

case "$init" in
systemd)
    for u in "${units[@]}"; do copy "$(find_src "systemd/$u")" "$unit_dir/$u" 0644; done
    if live && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable "${units[@]}"
        # restart the agent to pick up a new binary or config; the fallback only needs to be active
        systemctl restart drainhook.service
        systemctl start drainhook-shutdown.service
    else
        mkdir -p "$unit_dir/multi-user.target.wants"
        for u in "${units[@]}"; do ln -sfn "../$u" "$unit_dir/multi-user.target.wants/$u"; done
    fi
    ;;
sysv)
    copy "$(find_src systemd/sysvinit/drainhook)" "$initd/drainhook" 0755
    if live && command -v chkconfig >/dev/null; then
        chkconfig --add drainhook
        service drainhook start
    else
        sysv_links add
    fi
    ;;
esac
# The drain report: one JSON line per termination, which the log shipper ships with the rest.
# Created now (root's alone), so that a shipper tracks it before the first line is written.
if [ ! -e "$report" ]; then
    mkdir -p "$report_dir"
    chmod 0700 "$report_dir"
    install -m 0600 /dev/null "$report"
    echo "installed $report"
fi
# filebeat ships it through an input of its own, in its input config directory.
if [ -d "$filebeat_dir" ]; then
    copy "$(find_src infra/filebeat/drainhook-report.yml)" "$filebeat_input" 0644
    if ! grep -q 'inputs\.d' "$filebeat_dir/filebeat.yml" 2>/dev/null; then
        echo "NOTE: filebeat reads $filebeat_input only with external inputs enabled; add to" \
            "$filebeat_dir/filebeat.yml:  filebeat.config.inputs: {enabled: true, path: inputs.d/*.yml}"
    fi
else
    echo "NOTE: no filebeat config here: ship $report with your log shipper (see the README," \
        "\"The drain report\"), so the log store shows every termination's drain"
fi

echo "drainhook installed ($init)"
# What a drain will watch, and whether it can be exact: said now, not at the first scale-in.
if [ -x "$bin_path" ]; then
    echo "drainhook check:"
    rc=0
    if live; then
        out=$("$bin_path" check 2>&1) || rc=$?
    else
        out=$(DRAINHOOK_TEST_ROOT=$root "$bin_path" check 2>&1) || rc=$?
    fi
    printf '%s\n' "$out" | sed 's/^/  /'
    case $rc in
        0) ;;
        2) echo "WARNING: drainhook check: \"drained\" cannot be exact here (see above)" ;;
        *) echo "WARNING: drainhook check found nothing it can drain yet, or could not read it (exit $rc; see above)" ;;
    esac
fi
