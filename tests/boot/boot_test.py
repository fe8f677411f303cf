#!/usr/bin/env python3
"""`make test-boot`: real init systems, real shutdowns, under qemu (TCG).

Each scenario boots a Debian 12 guest (a rootfs made once with mmdebstrap, from Debian's
packages), lets the filebeat stand-in (tests/sim/filebeat_sim.py) ship a 240 kB backlog at
8 kB/s, shuts the guest down, and reads the evidence off its disk after qemu exits (debugfs):
an events file the guest appended to, and filebeat's registry.

  boot_test.py [--only NAME[,NAME]] [--jobs 2] [--work .boot] [--binary dist/drainhook-x86_64] [--deb dist/*_amd64.deb]

Two boots run side by side by default (--jobs): their drains mostly wait at 8 kB/s.

Scenarios:
- systemd-fallback: the DEB is installed at boot (dpkg -i; its postinst enables
  drainhook-shutdown.service), `drainhook --version` runs, then `systemctl poweroff`: the
  drain returns 0 before filebeat stops, and every byte is acked.
- systemd-control: the same without drainhook: filebeat is stopped at once and bytes are lost
  (so the first scenario cannot pass vacuously).
- systemd-agent: the DEB, then `systemctl enable --now drainhook` (Type=notify): systemd has
  it active with the agent's STATUS line, `systemctl status` shows it. The guest reaches the
  host's emulator and its IMDS stand-in through qemu's user network (10.0.2.2): its instance
  is scaled in, the agent holds it (heartbeats recorded by the emulator), and the guest powers
  off in the middle of that drain, as the README says: the agent stops on SIGTERM with exit 0
  and does not complete the action (Auto Scaling goes on at the heartbeat timeout), and the
  fallback drains every byte before filebeat stops. This scenario needs the emulator
  (AWS_ENDPOINT_URL, as `make test-boot` sets it with tests/moto_ext/with_moto.sh).
  Its pre_drain command writes where the sandbox does not let it: the agent's log says it
  failed with a permission error and points at the README's drop-in. Before filebeat
  starts, the pre-drain probes run commands under the agent's sandbox (the unit's [Service]
  as shipped), bare and with each drop-in of systemd/pre-drain/: `systemctl stop` needs none,
  and each drop-in allows its command and none of the others.

The hardened units run as shipped (only the tests' evidence is added: the events file is
made writable to them), and both note what their sandbox looked like from inside: the
capability bounding set, a read-only /, no new privileges, a seccomp filter.
- sysv-halt, sysv-reboot: a guest with sysvinit-core; the SysV script linked as chkconfig
  links it (S99 in rc2-5.d, K01 in rc0.d and rc6.d, filebeat's script S98/K02) and numbered
  (legacy) ordering; `halt` / `reboot`: the drain returns 0 and every byte is acked.
- sysv-control: the same guest without drainhook's links: bytes are lost.

Every other guest has no network (-nic none): everything it needs is put on its disk.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(ROOT, "tests", "sim", "filebeat_sim.py")
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
BACKLOG = 240_000  # bytes in /var/log/app/app.log
RATE = 8000  # the stand-in's shipping rate: the backlog takes 30 s
# Seconds a boot may take, boot to powered off. Alone, the longest (systemd-agent) takes about
# 125 s under TCG; on a 2-core machine that other builds load, 171 s and once over 180 s
# (two guests at a time, each with one emulated CPU), so the limit only catches a hung guest.
BOOT_LIMIT = 300

PACKAGES = {
    "systemd": "systemd,systemd-sysv,udev,linux-image-amd64,initramfs-tools,python3,procps",
    "sysv": "sysvinit-core,linux-image-amd64,initramfs-tools,python3,procps",
}


# Boots run side by side (--jobs): each scenario's lines are kept and printed together when
# it ends, so they do not interleave.
LINES = threading.local()


def say(what):
    lines = getattr(LINES, "lines", None)
    if lines is None:
        print(what, flush=True)
    else:
        lines.append(what)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def rootfs(work, kind):
    """The extracted Debian 12 rootfs of this kind, built once and cached under work/."""
    tar = os.path.join(work, "rootfs-%s.tar" % kind)
    tree = os.path.join(work, "root-%s" % kind)
    if os.path.isdir(tar):  # left by an older version of this script: not a tar
        shutil.rmtree(tar)
    if not os.path.exists(tar):
        say("building the %s rootfs with mmdebstrap (once)" % kind)
        t = time.time()
        # --format: mmdebstrap picks the format from the file name, and ".part" is none it
        # knows (it would make a directory there).
        run(["mmdebstrap", "--quiet", "--variant=minbase", "--format=tar", "--include=" + PACKAGES[kind],
             "bookworm", tar + ".part", MIRROR])
        os.rename(tar + ".part", tar)
        say("  built in %.0fs" % (time.time() - t))
    if not os.path.exists(os.path.join(tree, ".complete")):
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(tree)
        run(["tar", "-xf", tar, "-C", tree])
        open(os.path.join(tree, ".complete"), "w").close()
    return tree


def put(root, path, text, mode=0o644):
    """Writes a guest file (never through a hard link shared with the cached tree)."""
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if os.path.lexists(full):
        os.unlink(full)
    with open(full, "w") as f:
        f.write(text)
    os.chmod(full, mode)


def put_file(root, path, src, mode=0o755):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if os.path.lexists(full):
        os.unlink(full)
    shutil.copyfile(src, full)
    os.chmod(full, mode)


def link(root, path, target):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    if os.path.lexists(full):
        os.unlink(full)
    os.symlink(target, full)


def backlog_file():
    lines = []
    n = 0
    while n < BACKLOG:
        line = "%08d %s\n" % (len(lines), "x" * 90)
        lines.append(line)
        n += len(line)
    text = "".join(lines)
    return text[: len(text) - (n - BACKLOG)] if n > BACKLOG else text


EVENT = 'echo "$(date +%s.%N) $*" >> /var/log/boottest/events; sync'

# Notes the sandbox of the process that runs it, as an event: `sandbox-WHO CapBnd=... root=ro
# nnp=1 seccomp=2`.
SANDBOX = """#!/bin/sh
cap=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
nnp=$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/self/status)
seccomp=$(sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status)
root=$(awk '$5 == "/" { o = $6 } END { split(o, a, ","); print a[1] }' /proc/self/mountinfo)
/opt/boottest/event "sandbox-$1 CapBnd=$cap root=$root nnp=$nnp seccomp=$seccomp"
"""


def common(root):
    put(root, "/etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    put(root, "/etc/hostname", "boottest\n")
    put(root, "/var/log/app/app.log", backlog_file())
    put_file(root, "/opt/boottest/filebeat_sim.py", SIM)
    put(root, "/opt/boottest/event", "#!/bin/sh\n" + EVENT + "\n", 0o755)
    put(root, "/opt/boottest/sandbox", SANDBOX, 0o755)
    os.makedirs(os.path.join(root, "var/log/boottest"), exist_ok=True)
    os.makedirs(os.path.join(root, "var/lib/filebeat"), exist_ok=True)


# It ships drainhook's drain report too (as the input the packages install does), and writes
# every line its output delivered to /var/log/boottest/delivered.log.
REPORT = "/var/log/drainhook/drain.log"
DELIVERED = "/var/log/boottest/delivered.log"
SHIP = ("/usr/bin/python3 /opt/boottest/filebeat_sim.py ship --data-dir /var/lib/filebeat "
        "--format array7 --rate %d --flush 0.5 --output %s /var/log/app/app.log %s"
        % (RATE, DELIVERED, REPORT))

# Waits until filebeat has written its registry (it ships), then shuts down.
WAIT_SHIPPING = """
for i in $(seq 1 300); do
    [ -s /var/lib/filebeat/registry/filebeat/data.json ] && break
    sleep 0.2
done
/opt/boottest/event shipping
"""


def systemd_guest(root, with_deb, deb, agent=None):
    """`agent`: the emulator's side of the agent scenario (instance, endpoint, imds), or None."""
    common(root)
    put(root, "/etc/systemd/system/filebeat.service", """[Unit]
Description=filebeat (the project's stand-in, shipping at %d B/s)
[Service]
ExecStart=%s
ExecStopPost=/opt/boottest/event filebeat-stopped
[Install]
WantedBy=multi-user.target
""" % (RATE, SHIP))
    # Evidence of the drain's exit code: the package's own ExecStop, with its status and its
    # sandbox noted. The hardened unit may write nothing but its own directories: the events
    # file is made writable to it, and nothing else is changed.
    put(root, "/etc/systemd/system/drainhook-shutdown.service.d/evidence.conf", """[Service]
ReadWritePaths=/var/log/boottest
ExecStop=
ExecStop=/bin/sh -c '/opt/boottest/sandbox drain; /usr/bin/drainhook drain --timeout 10m --report; rc=$?; /opt/boottest/event drain-exit $rc; exit $rc'
""")
    scenario = "#!/bin/sh\n/opt/boottest/event booted\n"
    if with_deb:
        put_file(root, "/opt/boottest/drainhook.deb", deb, 0o644)
        scenario += """
dpkg -i /opt/boottest/drainhook.deb > /var/log/boottest/dpkg.log 2>&1
/opt/boottest/event dpkg-exit $?
/usr/bin/drainhook --version > /var/log/boottest/version 2>&1
/opt/boottest/event version-exit $?
systemctl is-active drainhook-shutdown.service > /var/log/boottest/fallback-state 2>&1
systemctl is-enabled drainhook.service >> /var/log/boottest/fallback-state 2>&1
"""
    if agent:
        # The agent as an operator enables it. Its AWS API and IMDS are the host's emulator and
        # the instance's IMDS stand-in, reached through qemu's user network: the host is
        # 10.0.2.2, and the guest gets 10.0.2.15 from systemd-networkd.
        # The SDK builds its HTTPS client at start with the system's root certificates, and
        # panics without any, even for the emulator's plain HTTP; the minbase image has none
        # (every EC2 image has them). The host's bundle stands in.
        if not os.path.exists(CA_BUNDLE):
            raise SystemExit("systemd-agent needs %s on the host (apt-get install ca-certificates)" % CA_BUNDLE)
        put_file(root, CA_BUNDLE, CA_BUNDLE, 0o644)
        put(root, "/etc/systemd/network/10-boottest.network",
            "[Match]\nName=eth0\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n")
        link(root, "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
             "/lib/systemd/system/systemd-networkd.service")
        link(root, "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
             "/lib/systemd/system/systemd-networkd.socket")
        # Its pre-drain command writes where the sandbox does not let it.
        put(root, "/etc/drainhook/drainhook.toml.boottest",
            'region = "us-east-1"\npre_drain = ["%s"]\n' % PRE_DRAIN_REFUSED)
        put(root, "/etc/systemd/system/drainhook.service.d/boottest.conf", """[Service]
Environment=AWS_ENDPOINT_URL=%s AWS_EC2_METADATA_SERVICE_ENDPOINT=%s
Environment=AWS_ACCESS_KEY_ID=boottest AWS_SECRET_ACCESS_KEY=boottest AWS_SDK_UA_APP_ID=%s
StandardError=append:/var/log/boottest/agent.log
ReadWritePaths=/var/log/boottest
ExecStopPost=/opt/boottest/sandbox agent
ExecStopPost=/opt/boottest/event agent-exit $EXIT_STATUS
""" % (guest_url(agent["endpoint"]), guest_url(agent["imds"]), agent["instance"]))
        pre_drain_probes(root)
        scenario += """
cp /etc/drainhook/drainhook.toml.boottest /etc/drainhook/drainhook.toml
systemctl enable --now drainhook.service
/opt/boottest/event agent-enabled $?
sleep 3
systemctl show drainhook.service -p Type -p ActiveState -p SubState -p StatusText > /var/log/boottest/agent-show 2>&1
SYSTEMD_COLORS=0 systemctl status drainhook.service --no-pager > /var/log/boottest/agent-status 2>&1
""" + PROBE_RUNS + """
# filebeat starts only now, so that the poweroff comes early in its drain however slow the
# boot was.
systemctl start filebeat.service
""" + WAIT_SHIPPING + """
# The host scales this instance in when it reads this line on the console.
echo "%s" > /dev/console
for i in $(seq 1 600); do
    grep -q "holding instance" /var/log/boottest/agent.log && break
    sleep 0.2
done
grep -q "holding instance" /var/log/boottest/agent.log && /opt/boottest/event holding
SYSTEMD_COLORS=0 systemctl status drainhook.service --no-pager > /var/log/boottest/agent-status-holding 2>&1
sleep 2
/opt/boottest/event poweroff
systemctl --no-block poweroff
""" % READY_FOR_SCALE_IN
    else:
        scenario += WAIT_SHIPPING + "/opt/boottest/event poweroff\nsystemctl --no-block poweroff\n"
    put(root, "/opt/boottest/scenario.sh", scenario, 0o755)
    put(root, "/etc/systemd/system/boottest.service", """[Unit]
Description=boot test: install, let filebeat ship, power off
After=filebeat.service
%s
[Service]
Type=oneshot
ExecStart=/opt/boottest/scenario.sh
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
""" % ("" if agent else "Wants=filebeat.service"))
    for unit in ("boottest.service",) if agent else ("filebeat.service", "boottest.service"):
        link(root, "/etc/systemd/system/multi-user.target.wants/" + unit, "/etc/systemd/system/" + unit)


READY_FOR_SCALE_IN = "boottest: ready for the scale-in"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# The agent's pre-drain command in its boot: refused by the sandbox (ProtectSystem=strict).
PRE_DRAIN_REFUSED = "touch /var/lib/myapp/down"

# What pre_drain commands do, each run by the probe under the agent's sandbox: the name,
# the command, and the drop-in of systemd/pre-drain/ that allows it (None: needs none).
PRE_DRAIN_COMMANDS = [
    ("stop", "systemctl stop boottest-app.service && ! systemctl is-active --quiet boottest-app.service",
     None),
    ("kill", 'pid=$(systemctl show -p MainPID --value boottest-user-app.service); [ "$pid" -gt 0 ] && kill -TERM "$pid"',
     "kill-other-users.conf"),
    ("write", PRE_DRAIN_REFUSED, "write-paths.conf"),
    ("setuid", "setpriv --reuid=boottest --regid=boottest --init-groups true", "run-as-user.conf"),
]
PROBES = ["bare"] + [name for name, _, dropin in PRE_DRAIN_COMMANDS if dropin]

PROBE_RUNS = """
# The pre-drain probes: each command under the agent's sandbox, bare and with each drop-in.
/opt/boottest/event probes-start
mkdir -p /var/lib/myapp
for probe in %s; do
    systemctl start boottest-app.service boottest-user-app.service
    rm -f /var/lib/myapp/down
    systemctl start pre-drain-probe-$probe.service
done
systemctl stop boottest-user-app.service
/opt/boottest/event probes-end
""" % " ".join(PROBES)


def pre_drain_probes(root):
    """Units that run the pre-drain commands under drainhook.service's sandbox as shipped (its
    [Service] settings but what runs), bare and with each drop-in of systemd/pre-drain/."""
    unit = open(os.path.join(ROOT, "systemd", "drainhook.service")).read()
    service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    sandbox = "\n".join(l for l in service.splitlines() if not l.startswith(
        ("Type=", "NotifyAccess=", "ExecStart=", "Restart=", "RestartSec=", "TimeoutStopSec=")))
    # An application as root, and one as a user of its own (uid 1000).
    for db, entry in (("passwd", "boottest:x:1000:1000::/nonexistent:/usr/sbin/nologin\n"),
                      ("group", "boottest:x:1000:\n")):
        with open(os.path.join(root, "etc", db)) as f:
            put(root, "/etc/" + db, f.read() + entry)
    put(root, "/etc/systemd/system/boottest-app.service", "[Service]\nExecStart=/bin/sleep infinity\n")
    put(root, "/etc/systemd/system/boottest-user-app.service",
        "[Service]\nUser=boottest\nExecStart=/bin/sleep infinity\n")
    lines = []
    for name, cmd, _ in PRE_DRAIN_COMMANDS:
        lines.append("if ( %s ) > /tmp/err 2>&1; then echo '%s ok'; else echo \"%s failed: $(tr '\\n' ' ' < /tmp/err)\"; fi"
                     % (cmd, name, name))
    put(root, "/opt/boottest/pre-drain-probe", "#!/bin/sh\n{\n%s\n} >> /var/log/boottest/probe-$1\n"
        % "\n".join(lines), 0o755)
    for probe in PROBES:
        unit_name = "pre-drain-probe-%s.service" % probe
        put(root, "/etc/systemd/system/" + unit_name,
            "[Service]\nType=oneshot\nExecStart=/opt/boottest/pre-drain-probe %s\n%s\n" % (probe, sandbox))
        put(root, "/etc/systemd/system/%s.d/boottest.conf" % unit_name,
            "[Service]\nReadWritePaths=/var/log/boottest\n")
        dropin = next((d for n, _, d in PRE_DRAIN_COMMANDS if n == probe), None)
        if dropin:
            put_file(root, "/etc/systemd/system/%s.d/%s" % (unit_name, dropin),
                     os.path.join(ROOT, "systemd", "pre-drain", dropin), 0o644)


def check_pre_drain_probes(name, disk, ev, problems):
    """Bare, only `systemctl stop` works; each drop-in adds its own command and no other."""
    start, end = when(ev, "probes-start"), when(ev, "probes-end")
    say("  pre-drain probes: %s" % ("%.1fs" % (end - start) if start and end else "did not end"))
    for probe in PROBES:
        got = {}
        for line in guest_file(disk, "/var/log/boottest/probe-" + probe).splitlines():
            what, _, result = line.partition(" ")
            got[what] = result
        allowed = {n for n, _, d in PRE_DRAIN_COMMANDS if d is None or n == probe}
        say("  pre-drain probe %s: %s" % (
            probe, ", ".join("%s %s" % (n, "ok" if got.get(n) == "ok" else "refused")
                             for n, _, _ in PRE_DRAIN_COMMANDS)))
        for n, _, _ in PRE_DRAIN_COMMANDS:
            if n not in got:
                problems.append("%s: probe %s did not run %s: %s" % (name, probe, n, got))
            elif (got[n] == "ok") != (n in allowed):
                problems.append("%s: probe %s: %s %s" % (name, probe, n, got[n] if n in allowed
                                                          else "was allowed"))


# The capabilities the units keep, as /proc/<pid>/status shows their bounding set.
CAP_BITS = {"CAP_DAC_READ_SEARCH": 2, "CAP_SYS_PTRACE": 19}


def check_sandbox(name, ev, who, unit, problems):
    """The unit's process ran confined: its bounding set, read-only /, NoNewPrivs, seccomp."""
    caps = next(l.split("=", 1)[1].split() for l in open(os.path.join(ROOT, "systemd", unit))
                if l.startswith("CapabilityBoundingSet="))
    want = "CapBnd=%016x root=ro nnp=1 seccomp=2" % sum(1 << CAP_BITS[c] for c in caps)
    got = next((e.split(" ", 1)[1] for _, e in ev if e.startswith("sandbox-%s " % who)), None)
    say("  %s ran with %s" % (unit, got))
    if got != want:
        problems.append("%s: %s did not run in its sandbox: %s, expected %s" % (name, unit, got, want))


def guest_url(url):
    """A loopback URL of the host as the guest reaches it through qemu's user network."""
    return url.replace("127.0.0.1", "10.0.2.2")


class Emulator:
    """The agent scenario's AWS side: a group of one instance on the emulator (AWS_ENDPOINT_URL)
    with a terminating hook (HeartbeatTimeout 30 s, DefaultResult CONTINUE) and no queue, and
    the instance's IMDS stand-in."""

    def __init__(self):
        self.endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not self.endpoint:
            raise SystemExit("systemd-agent needs the emulator: run it through `make test-boot` "
                             "(tests/moto_ext/with_moto.sh sets AWS_ENDPOINT_URL)")
        import boto3

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "moto_ext"))
        from group import create_group

        self.asg = boto3.client("autoscaling")
        self.group = "boottest-%d" % int(time.time())
        (self.instance,), _ = create_group(self.group, 1, heartbeat_timeout=30)
        self.imds = self.get("/_drainhook/imds/%s" % self.instance)["endpoint"]
        self.scaled_in_at = None

    def get(self, path):
        with urllib.request.urlopen(self.endpoint + path, timeout=30) as r:
            return json.load(r)

    def guest_side(self):
        return {"instance": self.instance, "endpoint": self.endpoint, "imds": self.imds}

    def scale_in_when_ready(self, console, until):
        """Runs beside qemu: scales the instance in once the guest says it is ready."""
        while time.time() < until:
            try:
                with open(console, errors="replace") as f:
                    if READY_FOR_SCALE_IN in f.read():
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            return
        self.asg.terminate_instance_in_auto_scaling_group(InstanceId=self.instance,
                                                          ShouldDecrementDesiredCapacity=True)
        self.scaled_in_at = time.time()

    def action(self):
        return self.get("/_drainhook/stats")["actions"].get(self.instance, {})

    def lifecycle_state(self):
        found = self.asg.describe_auto_scaling_instances(InstanceIds=[self.instance])["AutoScalingInstances"]
        return found[0]["LifecycleState"] if found else "gone"


FILEBEAT_INIT = """#!/bin/sh
# filebeat: the project's stand-in, as a SysV service (chkconfig: 2345 98 02).
### BEGIN INIT INFO
# Provides:          filebeat
# Required-Start:    $local_fs
# Required-Stop:     $local_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: filebeat stand-in
### END INIT INFO
case "$1" in
  start)
    start-stop-daemon --start --background --make-pidfile --pidfile /run/filebeat.pid \\
        --exec /usr/bin/python3 -- %s
    ;;
  stop)
    start-stop-daemon --stop --pidfile /run/filebeat.pid --retry TERM/10/KILL/5 --remove-pidfile
    /opt/boottest/event filebeat-stopped
    ;;
esac
exit 0
""" % SHIP.split(" ", 1)[1]


def sysv_guest(root, binary, with_drainhook, how):
    common(root)
    # Numbered links, run in order, as on a chkconfig system (see the README).
    put(root, "/etc/init.d/.legacy-bootordering", "")
    put(root, "/etc/init.d/filebeat", FILEBEAT_INIT, 0o755)
    for lvl in "2345":
        link(root, "/etc/rc%s.d/S98filebeat" % lvl, "../init.d/filebeat")
    for lvl in "06":
        link(root, "/etc/rc%s.d/K02filebeat" % lvl, "../init.d/filebeat")
    if with_drainhook:
        put_file(root, "/etc/init.d/drainhook", os.path.join(ROOT, "systemd", "sysvinit", "drainhook"))
        # The binary, behind a wrapper that notes the drain's exit code.
        put_file(root, "/usr/local/lib/drainhook/drainhook", binary)
        put(root, "/usr/local/bin/drainhook", """#!/bin/sh
/usr/local/lib/drainhook/drainhook "$@"
rc=$?
[ "$1" = drain ] && /opt/boottest/event drain-exit $rc
exit $rc
""", 0o755)
        for lvl in "2345":
            link(root, "/etc/rc%s.d/S99drainhook" % lvl, "../init.d/drainhook")
        for lvl in "06":
            link(root, "/etc/rc%s.d/K01drainhook" % lvl, "../init.d/drainhook")
    verb = {"halt": "halt", "reboot": "reboot"}[how]
    put(root, "/opt/boottest/scenario.sh", "#!/bin/sh\n/opt/boottest/event booted\n"
        "[ -e /var/lock/subsys/drainhook ] && /opt/boottest/event lock-present\n"
        + WAIT_SHIPPING + "/opt/boottest/event %s\n%s\n" % (verb, verb), 0o755)
    # Last in runlevel 2: after S98filebeat and S99drainhook.
    put(root, "/etc/init.d/zboottest", "#!/bin/sh\n[ \"$1\" = start ] && (/opt/boottest/scenario.sh &)\nexit 0\n", 0o755)
    link(root, "/etc/rc2.d/S99zboottest", "../init.d/zboottest")


def build_disk(tree, scen_dir, disk):
    shutil.rmtree(scen_dir, ignore_errors=True)
    run(["cp", "-al", tree, scen_dir])  # hard links: instant; put() never writes through them
    return scen_dir


def boot(work, kind, name, prepare, beside=None, network=False, cpus=2):
    """Boots the scenario's guest until it shuts down. `beside(console, until)` runs on the host
    meanwhile; `network`: qemu's user network (the host's loopback is 10.0.2.2 in the guest)."""
    tree = rootfs(work, kind)
    scen = os.path.join(work, "scen-" + name)
    disk = os.path.join(work, name + ".img")
    console = os.path.join(work, name + ".console.log")
    build_disk(tree, scen, disk)
    prepare(scen)
    if os.path.exists(disk):
        os.unlink(disk)
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", scen, disk, "2G"])
    kernel = sorted(glob.glob(os.path.join(tree, "boot", "vmlinuz-*")))[-1]
    initrd = sorted(glob.glob(os.path.join(tree, "boot", "initrd.img-*")))[-1]
    t = time.time()
    qemu = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max", "-m", "1024",
            "-smp", str(cpus), "-display", "none", "-monitor", "none", "-no-reboot",
            "-nic", "user,model=virtio-net-pci" if network else "none",
            "-serial", "file:" + console, "-kernel", kernel, "-initrd", initrd,
            "-append", "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0",
            "-drive", "file=%s,format=raw,if=virtio" % disk]
    if os.path.exists(console):
        os.unlink(console)
    helper = None
    if beside:
        helper = threading.Thread(target=beside, args=(console, t + BOOT_LIMIT), daemon=True)
        helper.start()
    try:
        subprocess.run(qemu, timeout=BOOT_LIMIT, check=False)
    except subprocess.TimeoutExpired:
        raise SystemExit("%s: the guest did not shut down within %ds; console: %s" % (name, BOOT_LIMIT, console))
    if helper:
        helper.join(timeout=5)
    took = time.time() - t
    shutil.rmtree(scen, ignore_errors=True)
    return disk, took, console


def guest_file(disk, path):
    out = subprocess.run(["debugfs", "-R", "cat " + path, disk], capture_output=True, text=True)
    return out.stdout


def events(disk):
    ev = []
    for line in guest_file(disk, "/var/log/boottest/events").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            ev.append((float(parts[0]), " ".join(parts[1:])))
    return ev


def acked(disk):
    text = guest_file(disk, "/var/lib/filebeat/registry/filebeat/data.json")
    try:
        entries = json.loads(text)
    except ValueError:
        return 0
    return sum(e.get("offset", 0) for e in entries if e.get("source") == "/var/log/app/app.log")


def when(ev, what):
    return next((t for t, e in ev if e == what or e.startswith(what + " ")), None)


def check_drained(name, disk, ev, problems):
    got = acked(disk)
    drain = next(((t, e) for t, e in ev if e.startswith("drain-exit")), None)
    stopped = when(ev, "filebeat-stopped")
    say("  %s: %d of %d bytes acked; drain %s; filebeat stopped %s" % (
        name, got, BACKLOG, drain[1] if drain else "never ran",
        "%.2fs after the drain" % (stopped - drain[0]) if drain and stopped else "(no stop noted)"))
    if drain is None or drain[1] != "drain-exit 0":
        problems.append("%s: the drain did not return 0: %s" % (name, drain))
    if got != BACKLOG:
        problems.append("%s: %d of %d bytes acked" % (name, got, BACKLOG))
    if drain and stopped and stopped < drain[0]:
        problems.append("%s: filebeat stopped before the drain returned" % name)


def reports(disk):
    """The drain report lines drainhook wrote, and those the shipper delivered."""
    def parse(text):
        out = []
        for line in text.splitlines():
            if line.startswith('{"event":"drainhook.drain"'):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"unparsable": line})
        return out
    return parse(guest_file(disk, REPORT)), parse(guest_file(disk, DELIVERED))


def check_report(name, disk, outcomes, problems):
    """The report lines of `outcomes` (in order) were written and delivered by the shipper
    before it stopped; the last one (the shutdown drain's) says drained."""
    written, delivered = reports(disk)
    say("  drain report: written %s; delivered %s" % (
        [r.get("outcome") for r in written] or "nothing",
        ["%s (drained %s, %d B delivered, %d B pending)" % (
            r.get("outcome"), r.get("drained"), r.get("shipped_bytes", 0), r.get("pending_bytes", 0))
         for r in delivered] or "nothing"))
    if [r.get("outcome") for r in delivered] != outcomes:
        problems.append("%s: the report lines delivered are %s, expected %s (written: %s)"
                        % (name, [r.get("outcome") for r in delivered], outcomes, written))
    elif not delivered[-1].get("drained") or delivered[-1].get("pending_bytes") != 0:
        problems.append("%s: the last report line does not say drained: %s" % (name, delivered[-1]))


def check_lost(name, disk, ev, problems):
    got = acked(disk)
    say("  %s (negative control): %d of %d bytes acked" % (name, got, BACKLOG))
    if not when(ev, "shipping"):
        problems.append("%s: filebeat never shipped: the control proves nothing" % name)
    if got >= BACKLOG:
        problems.append("%s: no byte was lost without drainhook: the test cannot tell" % name)


SCENARIOS = ["systemd-fallback", "systemd-control", "systemd-agent", "sysv-halt", "sysv-reboot", "sysv-control"]


def check_agent(name, disk, ev, emulator, problems):
    """The agent under systemd, with a poweroff in the middle of its hold."""
    show = dict(l.split("=", 1) for l in guest_file(disk, "/var/log/boottest/agent-show").splitlines() if "=" in l)
    status = guest_file(disk, "/var/log/boottest/agent-status")
    holding = guest_file(disk, "/var/log/boottest/agent-status-holding")
    log = guest_file(disk, "/var/log/boottest/agent.log")
    say("  drainhook.service: Type=%s %s/%s, STATUS %r; exit at poweroff: %s"
        % (show.get("Type"), show.get("ActiveState"), show.get("SubState"), show.get("StatusText"),
           next((e for _, e in ev if e.startswith("agent-exit")), "none")))
    if show.get("Type") != "notify" or show.get("ActiveState") != "active":
        problems.append("%s: drainhook.service is not an active notify service: %s" % (name, show))
    if not show.get("StatusText", "").startswith("idle, watching IMDS"):
        problems.append("%s: no STATUS from the agent: %r" % (name, show.get("StatusText")))
    if 'Status: "idle, watching IMDS' not in status:
        problems.append("%s: systemctl status does not show the STATUS line:\n%s" % (name, status))
    refused = next((l for l in log.splitlines() if "failed with a permission error" in l), None)
    say("  the refused pre-drain command: %s" % (refused.split("pre-drain:", 1)[-1].strip() if refused
                                                   else "(no permission error said)"))
    if refused is None or PRE_DRAIN_REFUSED not in refused or "drainhook.service.d" not in refused:
        problems.append("%s: the agent did not say its pre-drain command was refused:\n%s" % (name, log[-3000:]))
    check_pre_drain_probes(name, disk, ev, problems)
    check_sandbox(name, ev, "agent", "drainhook.service", problems)
    if "drainhook agent started" not in log or "SIGTERM received: stopping" not in log:
        problems.append("%s: the agent's log lacks its start or its stop:\n%s" % (name, log[-3000:]))
    if not when(ev, "agent-exit 0"):
        problems.append("%s: the agent did not exit 0 at poweroff: %s" % (name, ev))
    # The hold, then the poweroff in its middle.
    action = emulator.action()
    beats = action.get("heartbeats", [])
    first_beat = beats[0][0] if beats and isinstance(beats[0], list) else None
    poweroff = when(ev, "poweroff")
    stopped_line = next((l for l in log.splitlines() if "stopping mid-drain" in l), None)
    say("  scaled in %s; first heartbeat %s after; %d heartbeat(s); poweroff %s after the scale-in; "
        "the agent said: %s" % (
            "yes" if emulator.scaled_in_at else "NEVER",
            "%.1fs" % (first_beat - emulator.scaled_in_at) if first_beat and emulator.scaled_in_at else "-",
            len(beats),
            "%.1fs" % (poweroff - emulator.scaled_in_at) if poweroff and emulator.scaled_in_at else "-",
            stopped_line.split("WARN", 1)[-1].strip() if stopped_line else "(nothing)"))
    if emulator.scaled_in_at is None:
        problems.append("%s: the guest never said it was ready for the scale-in" % name)
        return
    if not when(ev, "holding") or not beats:
        problems.append("%s: the agent did not hold the instance: action %s\n%s" % (name, action, log[-3000:]))
        return
    if 'Status: "holding %s' % emulator.instance not in holding and "Status: \"draining" not in holding:
        problems.append("%s: systemctl status did not show the hold:\n%s" % (name, holding))
    if stopped_line is None or "still pending" not in stopped_line:
        problems.append("%s: the poweroff did not come in the middle of the drain:\n%s" % (name, log[-3000:]))
    if action.get("completed_by"):
        problems.append("%s: the action was completed (by %s) although the agent was stopped mid-drain"
                        % (name, action.get("completed_by")))
    # As the README says: not completed; Auto Scaling goes on at the heartbeat timeout.
    deadline = beats[-1][0] + 30 + 5
    while time.time() < deadline and not emulator.action().get("expired_at"):
        time.sleep(1)
    action = emulator.action()
    say("  the action: %s at the heartbeat timeout, %.1fs after the last heartbeat; instance %s"
        % (action.get("result"), (action.get("expired_at") or 0) - beats[-1][0], emulator.lifecycle_state()))
    if not action.get("expired_at") or not str(action.get("result", "")).startswith("CONTINUE"):
        problems.append("%s: the action did not end at its heartbeat timeout with the DefaultResult: %s"
                        % (name, action))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=os.path.join(ROOT, ".boot"))
    p.add_argument("--binary", default=os.path.join(ROOT, "dist", "drainhook-x86_64"))
    p.add_argument("--deb", default=None)
    p.add_argument("--only", default="")
    p.add_argument("--jobs", type=int, default=2,
                   help="boots side by side (their drains mostly wait; default 2)")
    p.add_argument("--images-only", action="store_true", help="build the cached rootfs images and stop")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if a.images_only:
        for kind in PACKAGES:
            rootfs(a.work, kind)
        return 0
    deb = a.deb or (sorted(glob.glob(os.path.join(ROOT, "dist", "drainhook_*_amd64.deb"))) or [None])[-1]
    if deb is None or not os.path.exists(a.binary):
        raise SystemExit("make dist first: test-boot installs dist/drainhook-x86_64 and the amd64 DEB in the guests")
    wanted = [s for s in a.only.split(",") if s] or SCENARIOS
    emulator = Emulator() if "systemd-agent" in wanted else None
    scenarios = {
        "systemd-fallback": ("systemd", lambda r: systemd_guest(r, True, deb), check_drained),
        "systemd-control": ("systemd", lambda r: systemd_guest(r, False, deb), check_lost),
        "systemd-agent": ("systemd", lambda r: systemd_guest(r, True, deb, emulator.guest_side()),
                          check_drained),
        "sysv-halt": ("sysv", lambda r: sysv_guest(r, a.binary, True, "halt"), check_drained),
        "sysv-reboot": ("sysv", lambda r: sysv_guest(r, a.binary, True, "reboot"), check_drained),
        "sysv-control": ("sysv", lambda r: sysv_guest(r, a.binary, False, "halt"), check_lost),
    }
    unknown = set(wanted) - set(scenarios)
    if unknown:
        raise SystemExit("unknown scenario(s) %s; known: %s" % (", ".join(sorted(unknown)), ", ".join(SCENARIOS)))
    problems = []

    def run(name):
        """One boot and its checks; returns what it said and the problems it found."""
        LINES.lines = []
        found = []
        try:
            scenario(name, found)
        except SystemExit as e:  # a boot that did not shut down: the others still run
            found.append(str(e))
        return LINES.lines, found

    def scenario(name, problems):
        kind, prepare, check = scenarios[name]
        say("boot %s (%s)" % (name, kind))
        agent = name == "systemd-agent"
        # One guest CPU each when boots run side by side, so that they do not contend.
        disk, took, console = boot(a.work, kind, name, prepare, network=agent, cpus=1 if a.jobs > 1 else 2,
                                   beside=emulator.scale_in_when_ready if agent else None)
        ev = events(disk)
        say("  booted, ran and shut down in %.0fs; events: %s" % (took, ", ".join(e for _, e in ev)))
        if took > BOOT_LIMIT:
            problems.append("%s took %.0fs" % (name, took))
        if not ev:
            problems.append("%s: no evidence on the disk; console: %s" % (name, console))
        if agent:
            check_agent(name, disk, ev, emulator, problems)
        if name in ("systemd-fallback", "systemd-agent"):
            check_sandbox(name, ev, "drain", "drainhook-shutdown.service", problems)
            version = guest_file(disk, "/var/log/boottest/version").strip()
            state = guest_file(disk, "/var/log/boottest/fallback-state").split()
            say("  in the guest: dpkg -i %s; drainhook --version: %r; fallback %s, agent %s"
                % ("ok" if when(ev, "dpkg-exit 0") else "FAILED", version, *(state + ["?", "?"])[:2]))
            if not when(ev, "dpkg-exit 0") or not version.startswith("drainhook "):
                problems.append("%s: the DEB did not install or the binary did not run: %s"
                                % (name, guest_file(disk, "/var/log/boottest/dpkg.log")[-2000:]))
            if state[:2] != ["active", "disabled"]:
                problems.append("%s: after dpkg -i the fallback should be active and the agent "
                                "disabled, got %s" % (name, state))
        if name.startswith("sysv") and name != "sysv-control" and not when(ev, "lock-present"):
            problems.append("%s: start did not create /var/lock/subsys/drainhook" % name)
        check(name, disk, ev, problems)
        if not name.endswith("-control"):
            # The agent, stopped mid-drain, says so; the fallback's drain then finishes.
            check_report(name, disk, ["stopped", "shutdown"] if agent else ["shutdown"], problems)
        os.unlink(disk)

    for kind in sorted({scenarios[name][0] for name in wanted}):
        rootfs(a.work, kind)  # once, before boots side by side would both unpack it
    t = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for lines, found in pool.map(run, wanted):
            for line in lines:
                say(line)
            problems += found
    say("%d boots in %.0fs, %d at a time" % (len(wanted), time.time() - t, a.jobs))
    if problems:
        say("FAILED:\n  " + "\n  ".join(problems))
        return 1
    say("%d boots: all passed" % len(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
