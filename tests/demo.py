#!/usr/bin/env python3
"""`make demo`: drainhook holding a terminating instance until its logs are shipped.

Runs against the local AWS emulator (AWS_ENDPOINT_URL, set by with_moto.sh): a group of
three instances with a termination hook notifying an SQS queue, log files written and
shipped by the filebeat simulator at a visible pace, and the drainhook agent for one
instance, with both triggers: the instance's IMDS (the emulator's stand-in) and the queue.
Then the group scales in and this script prints what happens, as a timeline.
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
SIM = os.path.join(ROOT, "tests", "sim", "filebeat_sim.py")
BIN = os.path.join(ROOT, "target", "release", "drainhook")
T0 = time.time()


def say(what):
    print("[%5.1fs] %s" % (time.time() - T0, what), flush=True)


def backlog():
    out = subprocess.run([BIN, "backlog", "--json", "--registry", os.path.join(WORK, "data")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def main():
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
    writer = subprocess.Popen([sys.executable, SIM, "write", "--path", log, "--rate", "60000",
                               "--duration", "6", "--rotate-every", "150000"], stdout=subprocess.PIPE)
    shipper = subprocess.Popen([sys.executable, SIM, "ship", "--data-dir", os.path.join(WORK, "data"),
                                "--rate", "40000", "--flush", "0.5", os.path.join(WORK, "logs", "app.log*")])
    say("the application writes 60 kB/s to %s; filebeat (simulated) ships 40 kB/s" % log)
    while backlog() is None:
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
    agent = subprocess.Popen([BIN, "agent", "--queue-url", q,
                              "--registry", os.path.join(WORK, "data"), "--settle", "2s",
                              "--drained-marker", os.path.join(WORK, "drained"),
                              "--config", os.path.join(WORK, "none.toml")],
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
                                          "belongs to the lifecycle action")):
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
            b = backlog()
            if b and time.time() - last_progress >= 2 and state != "terminated (left the group)":
                say("registry: %d bytes acked, %d pending" % (sum(f["offset"] for f in b["files"]), b["pending_bytes"]))
                last_progress = time.time()
            if not st:
                break
            if time.time() - T0 > 120:
                say("the demo took too long; see %s/agent.log" % WORK)
                return 1
            time.sleep(0.25)
        written = json.loads(writer.communicate()[0])["written"]
        b = backlog()
        shipped = sum(f["offset"] for f in b["files"])
        say("bytes written: %d, bytes shipped: %d -> %s" % (written, shipped, "nothing lost" if written == shipped else "LOST %d" % (written - shipped)))
        return 0 if written == shipped else 1
    finally:
        agent.terminate()
        shipper.terminate()
        agent.wait()
        shipper.wait()


if __name__ == "__main__":
    sys.exit(main())
