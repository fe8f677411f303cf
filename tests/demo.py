#!/usr/bin/env python3
"""`make demo [SHIPPER=filebeat]`: drainhook holding a terminating instance until its logs are delivered.

Runs against the local AWS emulator (AWS_ENDPOINT_URL, set by with_moto.sh): a group of
three instances with a termination hook notifying an SQS queue, log files written and
shipped by a log shipper's simulator at a visible pace, and the drainhook agent for one
instance, with both triggers: the instance's IMDS (the emulator's stand-in) and the queue.
Then the group scales in and this script prints what happens, as a timeline, and at the
end compares what was written with what the shipper's output delivered.

Each shipper is an entry of SHIPPERS: how its simulator is started (tailing the demo's
logs and drainhook's report file, delivering what it ships to an output file, as a log
store would receive it) and the agent's flags that find it.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import boto3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_ext"))
from group import create_group  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, ".demo")
SIMS = os.path.join(ROOT, "tests", "sim")
# DRAINHOOK_DEMO_BIN: another build (e.g. dist/drainhook-x86_64) than `make demo` builds.
BIN = os.environ.get("DRAINHOOK_DEMO_BIN") or os.path.join(ROOT, "target", "release", "drainhook")
T0 = time.time()


def say(what):
    print("[%5.1fs] %s" % (time.time() - T0, what), flush=True)


class Shipper:
    """What every entry shares: its output (the log store) is one file of delivered lines."""

    def output(self):
        return os.path.join(WORK, "delivered.log")


class Filebeat(Shipper):
    """filebeat (simulated) with its memory queue: the registry advances on the output's ack."""
    name = "filebeat (simulated)"

    def start(self, globs, rate):
        return subprocess.Popen([sys.executable, os.path.join(SIMS, "filebeat_sim.py"), "ship",
                                 "--data-dir", os.path.join(WORK, "data"), "--rate", str(rate),
                                 "--flush", "0.5", "--output", self.output()] + globs)

    def flags(self):
        return ["--shipper", "filebeat", "--registry", os.path.join(WORK, "data")]


class CloudWatch(Shipper):
    """The Amazon CloudWatch agent (simulated): its state files advance after PutLogEvents."""
    name = "the CloudWatch agent (simulated)"

    def start(self, globs, rate):
        return subprocess.Popen([sys.executable, os.path.join(SIMS, "cloudwatch_sim.py"), "ship",
                                 "--agent-dir", self.dir(), "--rate", str(rate),
                                 "--output", self.output()] + globs)

    def dir(self):
        return os.path.join(WORK, "amazon-cloudwatch-agent")

    def flags(self):
        return ["--shipper", "cloudwatch", "--cloudwatch-agent-dir", self.dir()]


class FluentBit(Shipper):
    """Fluent Bit (simulated), filesystem storage and its HTTP server on: its tail DB's offsets
    advance when lines are read into a chunk; the chunks left and the drop counters say what
    the output has not delivered."""
    name = "Fluent Bit (simulated)"

    def start(self, globs, rate):
        # Fluent Bit follows a renamed file through its open descriptor until Rotate_Wait; a
        # Path that matched the rotated names (app.log.1) would read them again once let go.
        globs = [g[:-1] if g.endswith(".log*") else g for g in globs]
        fb = os.path.join(WORK, "fluent-bit")
        return subprocess.Popen([sys.executable, os.path.join(SIMS, "fluentbit_sim.py"), "ship",
                                 "--config", self.config(), "--db", os.path.join(fb, "tail.db"),
                                 "--storage-path", os.path.join(fb, "storage"),
                                 "--storage-type", "filesystem", "--rate", str(rate),
                                 "--output", self.output()] + globs)

    def config(self):
        return os.path.join(WORK, "fluent-bit.conf")

    def flags(self):
        return ["--shipper", "fluent-bit", "--fluent-bit-config", self.config()]


class Vector(Shipper):
    """Vector (simulated): a file source whose sink has end-to-end acknowledgements, so its
    checkpoints.json moves when the sink delivered a line."""
    name = "Vector (simulated)"

    def start(self, globs, rate):
        return subprocess.Popen([sys.executable, os.path.join(SIMS, "vector_sim.py"), "ship",
                                 "--data-dir", os.path.join(WORK, "vector-data"), "--acks",
                                 "--rate", str(rate), "--output", self.output(),
                                 "--write-config", self.config()] + globs)

    def flags(self):
        return ["--shipper", "vector", "--vector-config", self.config()]

    def config(self):
        return os.path.join(WORK, "vector.yaml")


SHIPPERS = {"filebeat": Filebeat, "cloudwatch": CloudWatch, "fluent-bit": FluentBit, "vector": Vector}


def backlog(shipper):
    out = subprocess.run([BIN, "backlog", "--json"] + shipper.flags(), capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def delivered(shipper):
    """The output's lines: the application's, and drainhook's report lines."""
    try:
        lines = open(shipper.output(), "rb").read().splitlines(keepends=True)
    except FileNotFoundError:
        return [], []
    reports = [l for l in lines if b'"event":"drainhook.drain"' in l]
    return [l for l in lines if l not in reports], reports


def main():
    which = os.environ.get("SHIPPER") or "filebeat"
    if which not in SHIPPERS:
        print("SHIPPER must be one of: %s" % ", ".join(SHIPPERS), file=sys.stderr)
        return 2
    shipper = SHIPPERS[which]()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(os.path.join(WORK, "logs"))
    asg = boto3.client("autoscaling")
    name = "demo-%d" % int(T0)
    ids, q = create_group(name, 3, heartbeat_timeout=6, queue=True)
    me = ids[0]
    # The other two are protected, so the scale-in picks the instance our agent runs on.
    asg.set_instance_protection(AutoScalingGroupName=name, InstanceIds=ids[1:], ProtectedFromScaleIn=True)
    say("group %s: instances %s; hook 'drainhook' (HeartbeatTimeout 6s) -> queue %s" % (name, ", ".join(ids), name))

    log = os.path.join(WORK, "logs", "app.log")
    report_file = os.path.join(WORK, "report", "drain.log")
    writer = subprocess.Popen([sys.executable, os.path.join(SIMS, "filebeat_sim.py"), "write", "--path", log,
                               "--rate", "60000", "--duration", "6", "--rotate-every", "150000"],
                              stdout=subprocess.PIPE)
    os.makedirs(os.path.dirname(report_file))
    open(report_file, "w").close()  # the installer's input tails it from the start
    ship = shipper.start([os.path.join(WORK, "logs", "app.log*"), report_file], 40000)
    say("the application writes 60 kB/s to %s; %s ships 40 kB/s" % (log, shipper.name))
    while backlog(shipper) is None:
        time.sleep(0.1)

    open(os.path.join(WORK, "none.toml"), "w").close()  # an empty config: all from flags
    agent_log = open(os.path.join(WORK, "agent.log"), "w")
    # The instance's own metadata service: the emulator's IMDSv2 stand-in, whose
    # target-lifecycle-state follows the instance's state in the group.
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    with urllib.request.urlopen("%s/_drainhook/imds/%s" % (endpoint, me)) as r:
        imds = json.load(r)["endpoint"]
    env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds)
    env.pop("AWS_EC2_METADATA_DISABLED", None)
    agent = subprocess.Popen([BIN, "agent", "--queue-url", q, "--settle", "2s",
                              "--drained-marker", os.path.join(WORK, "drained"),
                              "--report-file", report_file,
                              "--config", os.path.join(WORK, "none.toml")] + shipper.flags(),
                             stderr=agent_log, env=env)
    say("drainhook agent started for %s: triggers IMDS (%s) and the queue" % (me, imds))
    time.sleep(3)
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    say("scale-in: desired capacity 3 -> 2")

    seen = 0
    last_state = None
    last_progress = 0
    try:
        while True:
            lines = open(os.path.join(WORK, "agent.log")).read().splitlines()
            for line in lines[seen:]:
                msg = line.split(" INFO ", 1)[-1].split(" WARN ", 1)[-1]
                if any(k in msg for k in ("received", "holding", "heartbeat sent", "draining", "drained",
                                          "completed", "pre-drain", "timed out", "did not finish",
                                          "target lifecycle state Terminated", "terminating (noticed",
                                          "belongs to the lifecycle action", "drain report", "check:")):
                    say("agent: " + msg.split(" message_id=")[0].split(" instance=i-")[0])
            seen = len(lines)
            if agent.poll() is not None:
                say("the agent exited (%s); its log:\n%s" % (agent.returncode, "\n".join(lines)))
                return 1
            st = asg.describe_auto_scaling_instances(InstanceIds=[me])["AutoScalingInstances"]
            state = st[0]["LifecycleState"] if st else "terminated (left the group)"
            if state != last_state:
                say("instance %s: %s" % (me, state))
                last_state = state
            b = backlog(shipper)
            if b and time.time() - last_progress >= 2 and state != "terminated (left the group)":
                say("%s: %d bytes acknowledged, %d pending" % (which, sum(f["offset"] for f in b["files"]), b["pending_bytes"]))
                last_progress = time.time()
            if not st:
                break
            if time.time() - T0 > 120:
                say("the demo took too long; see %s/agent.log" % WORK)
                return 1
            time.sleep(0.25)
        written = json.loads(writer.communicate()[0])["written"]
        lines, reports = delivered(shipper)
        shipped = sum(len(l) for l in lines)
        for r in reports:
            say("drain report, as the shipper delivered it:\n%s" % r.decode().rstrip())
        if not reports:
            say("the drain report was not delivered (see %s/agent.log)" % WORK)
        ok = written == shipped and reports
        say("bytes written: %d, bytes delivered by the output: %d -> %s" % (
            written, shipped, "nothing lost" if written == shipped else "LOST %d" % (written - shipped)))
        return 0 if ok else 1
    finally:
        agent.terminate()
        ship.terminate()
        agent.wait()
        ship.wait()


if __name__ == "__main__":
    sys.exit(main())
