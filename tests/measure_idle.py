#!/usr/bin/env python3
"""`make idle`: what an idle agent costs, over one minute, in three configurations.

Runs against the emulator (AWS_ENDPOINT_URL): a group of one instance whose hook notifies a
queue, the instance's IMDS stand-in, and the release agent: first with IMDS alone, then with
the queue too, then IMDS alone with four log shippers at work beside it (the stand-ins of
filebeat, the CloudWatch agent, Fluent Bit with its HTTP server, and Vector), all of which
the agent finds and checks at start-up. For each: CPU (time on a CPU from /proc/<pid>/schedstat, and the coarser
ticks of /proc/<pid>/stat), peak RSS, IMDS requests per second
and SQS requests per minute (counted by the emulator, per agent label).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_ext"))
from group import create_group  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "drainhook")
ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
SECONDS = 60


def get(path):
    with urllib.request.urlopen(ENDPOINT + path) as r:
        return json.load(r)


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def on_cpu_ns(pid):
    """Time on a CPU, in nanoseconds (the scheduler's own count: not sampled like ticks)."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM"):
                return line.split(":", 1)[1].strip()
    return "?"


SIMS = os.path.join(ROOT, "tests", "sim")
WORK = os.path.join(ROOT, ".idle")


def four_shippers():
    """The four stand-ins at work on a log each; returns them and the agent's flags."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(os.path.join(WORK, "logs"))
    py, w = sys.executable, lambda *p: os.path.join(WORK, *p)
    for n in ("fb", "cw", "flb", "vec"):
        subprocess.run([py, os.path.join(SIMS, "filebeat_sim.py"), "write", "--path", w("logs", n + ".log"),
                        "--rate", "10000000", "--total", "20000"], check=True, stdout=subprocess.DEVNULL)
    sims = [
        [py, os.path.join(SIMS, "filebeat_sim.py"), "ship", "--data-dir", w("filebeat"), "--output", w("fb.out"),
         w("logs", "fb.log")],
        [py, os.path.join(SIMS, "cloudwatch_sim.py"), "ship", "--agent-dir", w("cwagent"), "--output", w("cw.out"),
         w("logs", "cw.log")],
        [py, os.path.join(SIMS, "fluentbit_sim.py"), "ship", "--config", w("fluent-bit.conf"), "--db", w("tail.db"),
         "--storage-path", w("flb-storage"), "--storage-type", "filesystem", "--output", w("flb.out"),
         w("logs", "flb.log")],
        [py, os.path.join(SIMS, "vector_sim.py"), "ship", "--data-dir", w("vector"), "--acks", "--output",
         w("vec.out"), "--write-config", w("vector.yaml"), w("logs", "vec.log")],
    ]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in sims]
    time.sleep(3)  # each has written its state (and config) once
    flags = ["--registry", w("filebeat"), "--cloudwatch-agent-dir", w("cwagent"),
             "--fluent-bit-config", w("fluent-bit.conf"), "--vector-config", w("vector.yaml")]
    return procs, flags


def main():
    name = "idle-%d" % int(time.time())
    (me,), q = create_group(name, 1, heartbeat_timeout=300, default_result="ABANDON", queue=True)
    imds = get("/_drainhook/imds/%s" % me)["endpoint"]
    hz = os.sysconf("SC_CLK_TCK")
    shippers, shipper_flags = four_shippers()
    for label, extra in [("IMDS alone", ["--registry", "/nonexistent"]),
                         ("IMDS and the queue", ["--registry", "/nonexistent", "--queue-url", q]),
                         ("IMDS alone, four shippers found", shipper_flags)]:
        env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds, AWS_SDK_UA_APP_ID=me)
        if extra is not shipper_flags:
            # Not this machine's shippers, if it has any: none at all.
            env["DRAINHOOK_TEST_ROOT"] = os.path.join(WORK, "no-root")
        env.pop("AWS_EC2_METADATA_DISABLED", None)
        log = open(os.path.join(WORK, "agent.log"), "w")
        agent = subprocess.Popen([BIN, "agent", "--config", "/dev/null"] + extra, stderr=log, env=env)
        time.sleep(5)  # start-up calls, the shippers' check and the test notification
        s0 = get("/_drainhook/stats")
        imds0 = s0["imds"].get(me, {}).get("requests", 0)
        sqs0 = sum(s0["requests"].get(me, {}).get("sqs", {}).values())
        t0, n0 = ticks(agent.pid), on_cpu_ns(agent.pid)
        time.sleep(SECONDS)
        t1, n1 = ticks(agent.pid), on_cpu_ns(agent.pid)
        s1 = get("/_drainhook/stats")
        imds1 = s1["imds"].get(me, {}).get("requests", 0)
        sqs1 = sum(s1["requests"].get(me, {}).get("sqs", {}).values())
        rss = peak_rss(agent.pid)
        agent.send_signal(signal.SIGTERM)
        agent.wait()
        print("idle agent, %s, over %d s: CPU %.3f%% (%.1f ms on a CPU; %d ticks of 1/%d s), peak RSS %s, IMDS %.2f requests/s, SQS %.1f requests/min"
              % (label, SECONDS, (n1 - n0) / 1e9 / SECONDS * 100, (n1 - n0) / 1e6, t1 - t0, hz, rss,
                 (imds1 - imds0) / SECONDS, (sqs1 - sqs0) * 60.0 / SECONDS), flush=True)
        log.close()
        said = [l for l in open(log.name) if "check:" in l or "will drain" in l]
        if extra is shipper_flags:
            print("  its start-up check: " + "  ".join(l.split(" INFO ", 1)[-1].split(" WARN ", 1)[-1] for l in said),
                  end="", flush=True)
    for p in shippers:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    sys.exit(main())
