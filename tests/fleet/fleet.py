#!/usr/bin/env python3
"""`make fleet`: one group of N instances, one drainhook agent per instance, a 25 % scale-in.

Runs against the local AWS emulator (AWS_ENDPOINT_URL, set by with_moto.sh) with the project's
extension: every agent has its own IMDSv2 stand-in, whose target-lifecycle-state follows the
emulator's state of that instance, and labels its requests (AWS_SDK_UA_APP_ID = its instance
id) so the emulator counts them per agent. For each mode (imds: no queue; queue: the queue
alone; both: the default with a queue) it prints:

- instances completed with CONTINUE by their own agent, and any that expired;
- p50 / p99 / max from the scale-in to the first heartbeat and to the completion;
- SQS requests per agent during the scale-in and per minute idle; IMDS requests per agent
  per second idle; the agents' CPU while idle;
- live actions' messages deleted by a foreign agent (must be none);
- the queue depth 60 s after the last action, with each agent stopped (SIGTERM) 5 s after its
  own instance left the group, as its shutdown would.

- with an account-wide Auto Scaling rate limit (the emulator's token buckets, shared by every
  agent: --describe-rate Describe calls and --lifecycle-rate heartbeats and completes a second;
  0 turns one off), how many of the agents' calls were throttled, by action.

It writes the figures as JSON (--out) and exits 1 if a bar of issue 7 (or, under a rate limit,
of issue 17) is not reached.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import boto3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "moto_ext"))
from group import create_group  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = os.path.join(ROOT, "tests", "sim", "filebeat_sim.py")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "")
HZ = os.sysconf("SC_CLK_TCK")


def say(what):
    print(what, flush=True)


def get(path, method="GET"):
    req = urllib.request.Request(ENDPOINT + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def drained_registry(work, binary):
    """A filebeat data dir whose registry shows one file shipped to its end."""
    logs = os.path.join(work, "logs")
    data = os.path.join(work, "data")
    os.makedirs(logs)
    with open(os.path.join(logs, "app.log"), "w") as f:
        for i in range(100):
            f.write("line %05d of a log that is already shipped\n" % i)
    sim = subprocess.Popen([sys.executable, SIM, "ship", "--data-dir", data, "--format", "array7",
                            "--rate", "10000000", "--flush", "0.1", os.path.join(logs, "app.log")])
    deadline = time.time() + 20
    while time.time() < deadline:
        out = subprocess.run([binary, "backlog", "--json", "--registry", data], capture_output=True, text=True)
        if out.returncode == 0 and json.loads(out.stdout)["pending_bytes"] == 0 and json.loads(out.stdout)["files"]:
            break
        time.sleep(0.2)
    else:
        raise SystemExit("the simulator did not write a drained registry")
    sim.terminate()
    sim.wait()
    return data


class Agents:
    def __init__(self, work, binary, data):
        self.work, self.binary, self.data = work, binary, data
        self.procs = {}
        self.logs = {}
        self.stopped_at = {}

    def start(self, instance, args):
        imds = get("/_drainhook/imds/%s" % instance)["endpoint"]
        env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds, AWS_SDK_UA_APP_ID=instance)
        env.pop("AWS_EC2_METADATA_DISABLED", None)
        env.pop("RUST_LOG", None)
        log = os.path.join(self.work, "%s.log" % instance)
        empty = os.path.join(self.work, "empty.toml")
        open(empty, "a").close()
        self.logs[instance] = log
        self.procs[instance] = subprocess.Popen(
            [self.binary, "agent", "--config", empty, "--registry", self.data, "--settle", "1s",
             "--drained-marker", os.path.join(self.work, "%s.drained" % instance)] + args,
            stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)

    def log(self, instance):
        try:
            with open(self.logs[instance]) as f:
                return f.read()
        except OSError:
            return ""

    def wait_all(self, needle, within):
        deadline = time.time() + within
        missing = list(self.procs)
        while missing and time.time() < deadline:
            missing = [i for i in missing if needle not in self.log(i)]
            dead = [i for i in missing if self.procs[i].poll() is not None]
            if dead:
                raise SystemExit("agent %s exited:\n%s" % (dead[0], self.log(dead[0])))
            time.sleep(0.5)
        if missing:
            raise SystemExit("%d agents never logged %r, e.g. %s:\n%s"
                             % (len(missing), needle, missing[0], self.log(missing[0])))

    def cpu_ticks(self):
        total = 0
        for p in self.procs.values():
            try:
                with open("/proc/%d/stat" % p.pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total

    def stop(self, instance):
        p = self.procs[instance]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        self.stopped_at[instance] = time.time()

    def stop_all(self):
        for i in self.procs:
            self.stop(i)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def sqs_requests(stats, label):
    return sum(stats["requests"].get(label, {}).get("sqs", {}).values())


def post(path, obj):
    req = urllib.request.Request(ENDPOINT + path, method="POST", data=json.dumps(obj).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def throttled_by_action(stats, labels):
    out = {}
    for label in labels:
        for action, k in stats.get("throttled", {}).get(label, {}).items():
            out[action] = out.get(action, 0) + k
    return out


def asg_requests_by_action(stats, labels):
    out = {}
    for label in labels:
        for action, k in stats["requests"].get(label, {}).get("autoscaling", {}).items():
            out[action] = out.get(action, 0) + k
    return out


def run_mode(mode, n, binary, data, work, idle_seconds, rates=None):
    asg = boto3.client("autoscaling")
    sqs = boto3.client("sqs")
    name = "fleet-%s-%d" % (mode, int(time.time()))
    say("\n== mode %s: %d instances, group %s" % (mode, n, name))
    # ABANDON makes an expiry visible: the agents themselves only ever complete with CONTINUE.
    ids, queue_url = create_group(name, n, heartbeat_timeout=60, default_result="ABANDON", queue=mode != "imds")

    args = {"imds": [], "queue": ["--queue-url", queue_url, "--imds-trigger", "false"],
            "both": ["--queue-url", queue_url] if queue_url else []}[mode]
    agents = Agents(os.path.join(work, mode), binary, data)
    os.makedirs(agents.work)
    t = time.time()
    for k, i in enumerate(ids):
        agents.start(i, args)
        if k % 25 == 24:
            time.sleep(0.5)
    ready = "IMDS: target lifecycle state InService" if mode != "queue" else "drainhook agent started"
    agents.wait_all(ready, 120)
    say("%d agents up in %.0fs" % (n, time.time() - t))

    # Idle.
    time.sleep(3)  # the test notification, start-up calls
    get("/_drainhook/stats/reset", "POST")
    imds0 = {i: s["requests"] for i, s in get("/_drainhook/stats")["imds"].items()}
    cpu0, t0 = agents.cpu_ticks(), time.time()
    time.sleep(idle_seconds)
    stats = get("/_drainhook/stats")
    idle = time.time() - t0
    cpu = agents.cpu_ticks() - cpu0
    idle_sqs = [sqs_requests(stats, i) * 60.0 / idle for i in ids]
    idle_imds = [(stats["imds"].get(i, {}).get("requests", 0) - imds0.get(i, 0)) / idle for i in ids]
    say("idle %.0fs: SQS requests per agent per minute mean %.2f max %.2f; IMDS requests per agent per second mean %.2f max %.2f; agents' CPU %.3f%% each"
        % (idle, sum(idle_sqs) / n, max(idle_sqs), sum(idle_imds) / n, max(idle_imds),
           100.0 * cpu / HZ / idle / n))

    # Scale-in by 25 % at once.
    get("/_drainhook/stats/reset", "POST")
    victims_n = n // 4
    scale_t = time.time()
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=n - victims_n)
    victims = [i for i, r in get("/_drainhook/stats")["actions"].items()
               if r["group"] == name and r["scale_in_at"] >= scale_t - 1]
    say("scale-in: desired %d -> %d, %d instances in Terminating:Wait" % (n, n - victims_n, len(victims)))
    if rates:
        say("account-wide Auto Scaling rate limit (an assumption, see docs/pressure.md): %s" % rates)
    ended = {}
    deadline = scale_t + 300
    while len(ended) < len(victims) and time.time() < deadline:
        actions = get("/_drainhook/stats")["actions"]
        now = time.time()
        for v in victims:
            r = actions[v]
            end = r["completed_at"] or r["expired_at"]
            if end and v not in ended:
                ended[v] = end
            if v in ended and now >= ended[v] + 5 and v not in agents.stopped_at:
                agents.stop(v)  # its instance is gone: so is its agent
        time.sleep(0.5)
    last = max(ended.values()) if ended else time.time()
    during = get("/_drainhook/stats")
    # The queue must be empty 60 s after the last action, whoever is left to clean it.
    while time.time() < last + 60:
        now = time.time()
        for v in victims:
            if v in ended and now >= ended[v] + 5 and v not in agents.stopped_at:
                agents.stop(v)
        time.sleep(0.5)
    after = get("/_drainhook/stats")
    depth = None
    if queue_url:
        a = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        depth = int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])
    agents.stop_all()

    actions = after["actions"]
    own = [v for v in victims if actions[v]["result"] == "CONTINUE" and actions[v]["completed_by"] == v]
    expired = [v for v in victims if actions[v]["expired_at"]]
    first_hb = [actions[v]["heartbeats"][0][0] - actions[v]["scale_in_at"] for v in victims if actions[v]["heartbeats"]]
    done = [actions[v]["completed_at"] - actions[v]["scale_in_at"] for v in victims if actions[v]["completed_at"]]
    sqs_scale = [sqs_requests(after, i) for i in ids]
    sqs_until_last = [sqs_requests(during, i) for i in ids]
    live_deleted = [d for d in after["deletes"] if d["alive"] and d["by"] != d["instance"]]
    deleted_foreign = [d for d in after["deletes"] if d["by"] != d["instance"]]
    lost = [v for v in victims if "LOST" in agents.log(v) or "lost its drain" in agents.log(v)]
    r = {
        "mode": mode, "n": n, "victims": len(victims),
        "completed_by_own_agent": len(own), "expired": len(expired), "lost_logged": len(lost),
        "first_heartbeat_s": {"p50": pct(first_hb, 50), "p99": pct(first_hb, 99), "max": max(first_hb, default=None), "count": len(first_hb)},
        "completion_s": {"p50": pct(done, 50), "p99": pct(done, 99), "max": max(done, default=None)},
        "sqs_requests_per_agent_scale_in": {"mean": sum(sqs_scale) / n, "max": max(sqs_scale)},
        "sqs_requests_per_agent_until_last_action": {"mean": sum(sqs_until_last) / n, "max": max(sqs_until_last)},
        "sqs_requests_per_agent_per_minute_idle": {"mean": sum(idle_sqs) / n, "max": max(idle_sqs)},
        "imds_requests_per_agent_per_second_idle": {"mean": sum(idle_imds) / n, "max": max(idle_imds)},
        "agent_cpu_percent_idle": 100.0 * cpu / HZ / idle / n,
        "foreign_deletes": len(deleted_foreign), "live_messages_deleted_by_foreign_agents": len(live_deleted),
        "queue_depth_60s_after_last_action": depth,
        "last_action_s": last - scale_t,
        "rate_limit_per_s": rates or None,
        "autoscaling_requests_scale_in": asg_requests_by_action(after, ids),
        "autoscaling_throttled_scale_in": throttled_by_action(after, ids),
    }
    f = lambda x: "-" if x is None else "%.2f" % x
    say("completed with CONTINUE by their own agent: %d/%d; expired: %d" % (len(own), len(victims), len(expired)))
    say("scale-in -> first heartbeat: p50 %s s, p99 %s s, max %s s" % (f(r["first_heartbeat_s"]["p50"]), f(r["first_heartbeat_s"]["p99"]), f(r["first_heartbeat_s"]["max"])))
    say("scale-in -> completion:      p50 %s s, p99 %s s, max %s s" % (f(r["completion_s"]["p50"]), f(r["completion_s"]["p99"]), f(r["completion_s"]["max"])))
    say("SQS requests per agent, scale-in until 60 s after the last action: mean %.2f, max %d (until the last action: mean %.2f, max %d)"
        % (r["sqs_requests_per_agent_scale_in"]["mean"], r["sqs_requests_per_agent_scale_in"]["max"],
           r["sqs_requests_per_agent_until_last_action"]["mean"], r["sqs_requests_per_agent_until_last_action"]["max"]))
    busiest = max(ids, key=lambda i: sqs_requests(after, i))
    say("the busiest agent (%s): %s" % (busiest, after["requests"].get(busiest, {}).get("sqs", {})))
    say("messages deleted by a foreign agent: %d, of them while their action was alive: %d" % (len(deleted_foreign), len(live_deleted)))
    say("queue depth 60 s after the last action: %s" % ("no queue" if depth is None else depth))
    say("Auto Scaling requests of the agents, scale-in until 60 s after the last action: %s; throttled: %s"
        % (r["autoscaling_requests_scale_in"], r["autoscaling_throttled_scale_in"] or "none"))
    return r


# The largest fleet at which the queue alone must still hold every instance: issue 7 asks
# for N=150; the README gives what was measured (every action held at N=150 and N=200).
QUEUE_ALONE_LIMIT = 150


def bars(r):
    """The bars of issue 7 for this mode; returns the failures."""
    fail = []
    if r["mode"] in ("imds", "both"):
        if r["completed_by_own_agent"] != r["victims"]:
            fail.append("%d/%d completed by their own agent" % (r["completed_by_own_agent"], r["victims"]))
        # Under an account-wide rate limit a scale-in's first asks queue behind each other
        # (50 DescribeAutoScalingInstances at 10 a second take 5 s at best): the bar is then
        # the hook's safety, half its HeartbeatTimeout (60 s here), not speed.
        first_bar = 30.0 if r["rate_limit_per_s"] else 3.0
        if (r["first_heartbeat_s"]["p99"] or 99) > first_bar:
            fail.append("p99 first heartbeat %.2f s > %.0f s" % (r["first_heartbeat_s"]["p99"], first_bar))
    if r["live_messages_deleted_by_foreign_agents"]:
        fail.append("a live action's message was deleted by a foreign agent")
    if r["mode"] == "imds" and r["sqs_requests_per_agent_scale_in"]["max"] != 0:
        fail.append("SQS requests without a queue")
    if r["mode"] == "both":
        if r["queue_depth_60s_after_last_action"]:
            fail.append("queue depth %d 60 s after the last action" % r["queue_depth_60s_after_last_action"])
        if r["sqs_requests_per_agent_scale_in"]["max"] > 10:
            fail.append("an agent made %d SQS requests over the scale-in" % r["sqs_requests_per_agent_scale_in"]["max"])
    if r["mode"] in ("queue", "both") and r["sqs_requests_per_agent_per_minute_idle"]["max"] > 3.5:
        fail.append("idle SQS requests per minute %.2f > 3" % r["sqs_requests_per_agent_per_minute_idle"]["max"])
    if r["mode"] == "imds" and r["sqs_requests_per_agent_per_minute_idle"]["max"] != 0:
        fail.append("idle SQS requests without a queue")
    if r["mode"] != "queue" and r["imds_requests_per_agent_per_second_idle"]["max"] > 1.05:
        fail.append("IMDS requests per second %.2f > 1" % r["imds_requests_per_agent_per_second_idle"]["max"])
    # Queue alone is held to every action only up to N=150 (issue 7's bar): beyond it the
    # figures are printed, not judged.
    if r["mode"] == "queue" and r["completed_by_own_agent"] != r["victims"] and r["n"] <= QUEUE_ALONE_LIMIT:
        fail.append("queue alone: %d/%d completed by their own agent at N=%d"
                    % (r["completed_by_own_agent"], r["victims"], r["n"]))
    return fail


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="instances (and agents) in the group")
    p.add_argument("--modes", default="imds,queue,both", help="comma-separated: imds, queue, both")
    p.add_argument("--idle", type=float, default=60, help="seconds of idle measurement")
    p.add_argument("--out", default=os.path.join(ROOT, ".fleet", "fleet.json"))
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "drainhook"))
    p.add_argument("--describe-rate", type=float, default=10,
                   help="account-wide Auto Scaling Describe* calls a second (0: unlimited)")
    p.add_argument("--lifecycle-rate", type=float, default=20,
                   help="account-wide heartbeats and completes a second (0: unlimited)")
    a = p.parse_args()
    if not ENDPOINT:
        raise SystemExit("AWS_ENDPOINT_URL is not set: run through `make fleet`")
    # The agents' logs stay in .fleet/work/<mode>/ for a look afterwards (replaced each run).
    work = os.path.join(os.path.dirname(a.out), "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    results, failures = [], []
    data = drained_registry(work, a.binary)
    rates = {k: v for k, v in (("describe", a.describe_rate), ("lifecycle", a.lifecycle_rate)) if v}
    post("/_drainhook/ratelimit", rates)
    for mode in a.modes.split(","):
        r = run_mode(mode.strip(), a.n, a.binary, data, work, a.idle, rates)
        results.append(r)
        for f in bars(r):
            failures.append("%s: %s" % (mode, f))
        if r["mode"] == "queue" and r["n"] > QUEUE_ALONE_LIMIT and r["completed_by_own_agent"] != r["victims"]:
            say("queue alone beyond the N it is judged at (N=%d > %d): %d/%d completed by their own agent; "
                "use IMDS (see the README)" % (r["n"], QUEUE_ALONE_LIMIT, r["completed_by_own_agent"], r["victims"]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    say("\nfigures written to %s; the agents' logs are in %s" % (a.out, work))
    if failures:
        say("BARS NOT REACHED:\n  " + "\n  ".join(failures))
        return 1
    say("every bar reached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
