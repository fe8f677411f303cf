#!/usr/bin/env python3
"""A stand-in for the Amazon CloudWatch agent in tests: tails real files, "puts" batches to an
output file, and writes the agent's state files and log lines as the agent does.

Only the Python standard library is used.

  cloudwatch_sim.py ship --agent-dir DIR --rate 50000 --output delivered.log /var/log/app/*.log

What lands on disk follows aws/amazon-cloudwatch-agent (v1.300071.0):
- `DIR/etc/amazon-cloudwatch-agent.toml`: the translated config the agent runs with, one
  `[[inputs.logfile.file_config]]` per glob, `file_state_folder` the translator's constant
  (/opt/aws/amazon-cloudwatch-agent/logs/state; drainhook moves it under --cloudwatch-agent-dir).
  `--config json` writes the user's `etc/amazon-cloudwatch-agent.json` instead, `none` nothing.
- `DIR/logs/state/<path with / space : as _>`: `max\\npath\\nstart-end,...` (range format,
  v1.300057.0+), or `offset\\npath` with `--state-format offset` (older agents: never written
  at 0). One range `0-max` unless `--concurrency` > 1 (then up to 2 x concurrency ranges, the
  two oldest merged when there are more). Written truncate-then-write, no trailing newline,
  every 100 ms when changed, and at stop.
- A file's range is handed to its state only when its batch was delivered ("PutLogEvents":
  the batch's lines appended to --output, byte for byte), or when the batch was dropped
  (v1.300059.0+; `--no-drop-state` for older agents). A drop writes the agent's own lines to
  `DIR/logs/amazon-cloudwatch-agent.log`.
- Batches: one per log stream at a time, in order (concurrency 1), closed at --batch-bytes or
  after --flush-interval (force_flush_interval); the output's pace is --rate bytes a second.
- Only the most recently modified match of a glob is tailed (unless --multi-logs). At the end
  of a file whose path now names another file (rotated) or none, the agent logs "Deleting
  state file", deletes the state, reads what is left and queues it, and stops: the ranges of
  those last batches are never written. The new file is found at the next scan (1 s) and
  read from its start (from_beginning). A truncated file is read again from 0.
- The process calls itself `amazon-cloudwat` (the agent's name, cut to 15 bytes).
"""

import argparse
import glob
import os
import random
import signal
import sys
import time

STATE_FOLDER_CONST = "/opt/aws/amazon-cloudwatch-agent/logs/state"
AGENT_LOG_CONST = "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log"
COMPRESSED = (".tar", ".zst", ".gz", ".zip", ".bz2", ".rar")


def set_comm(name):
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


def escape(path):
    return path.replace("/", "_").replace(" ", "_").replace(":", "_")


class AgentLog:
    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(self, level, plugin, msg):
        line = "%s %s! [%s] %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), level, plugin, msg)
        with open(self.path, "a") as f:
            f.write(line)


class StateManager:
    """internal/state/manager.go and range.go: a tracker saved every 100 ms when changed."""

    def __init__(self, a, state_dir, name):
        self.a = a
        self.name = name
        self.file = os.path.join(state_dir, escape(name))
        self.cap = 2 * a.concurrency if a.concurrency > 1 else 1
        self.ranges = []  # sorted, merged [start, end)
        self.last_seq = 0
        self.changed = False
        self.alive = True

    def restore(self):
        """The offset to seek to and the gaps to read again, as logfile.go:199-213."""
        try:
            text = open(self.file).read()
        except OSError:
            return None
        lines = text.split("\n")
        try:
            mx = int(lines[0])
        except ValueError:
            return None
        ranges = []
        if len(lines) >= 3 and self.a.state_format == "ranges":
            for part in lines[2].split(","):
                s, _, e = part.partition("-")
                try:
                    ranges.append((int(s), int(e)))
                except ValueError:
                    ranges = []
                    break
        if not ranges:
            ranges = [(0, mx)] if mx else []
        self.ranges = self._merge(ranges) if self.cap > 1 else ([(0, mx)] if mx else [])
        return self.ranges[-1][1] if self.ranges else 0

    def enqueue(self, start, end, seq):
        if not self.alive or start >= end:
            return
        if seq > self.last_seq:  # truncation: clear
            self.last_seq = seq
            self.ranges = []
        if self.cap == 1:
            cur = self.ranges[0][1] if self.ranges else 0
            if end > cur:
                self.ranges = [(0, end)]
                self.changed = True
            return
        before = list(self.ranges)
        self.ranges = self._merge(self.ranges + [(start, end)])
        while len(self.ranges) > self.cap:  # collapseOldest
            (s1, _), (_, e2) = self.ranges[0], self.ranges[1]
            self.ranges = [(s1, e2)] + self.ranges[2:]
        self.changed = self.changed or self.ranges != before

    @staticmethod
    def _merge(ranges):
        out = []
        for s, e in sorted(ranges):
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], e))
            else:
                out.append((s, e))
        return out

    def text(self):
        mx = max((e for _, e in self.ranges), default=0)
        if self.a.state_format == "offset":
            return "%d\n%s" % (mx, self.name)
        if not self.ranges:
            return "%d\n%s" % (mx, self.name)
        return "%d\n%s\n%s" % (mx, self.name, ",".join("%d-%d" % r for r in self.ranges))

    def save(self, force=False):
        if not self.alive or not (self.changed or force):
            return
        mx = max((e for _, e in self.ranges), default=0)
        if self.a.state_format == "offset" and mx == 0:
            return  # tailersrc.go (v1.300050.0):352 never writes offset 0
        # The ack log records when this write began, the earliest a watcher can see it.
        began = time.time()
        # os.WriteFile: truncate, then write (no rename, no trailing newline), mode 0644
        fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(self.text())
        self.changed = False
        if self.a.ack_log:
            with open(self.a.ack_log, "a") as f:
                f.write("%.6f\n" % began)

    def delete(self, log):
        log.write("W", "logagent", "Deleting state file (%s)" % self.file)
        try:
            os.remove(self.file)
        except OSError:
            pass
        self.alive = False


class Tailer:
    def __init__(self, sim, path, target, state):
        self.sim = sim
        self.path = path
        self.target = target
        self.state = state
        self.fd = open(path, "rb")
        st = os.fstat(self.fd.fileno())
        self.ino, self.dev = st.st_ino, st.st_dev
        restored = state.restore()
        self.offset = restored if restored is not None else 0  # from_beginning = true
        self.seq = 0
        self.prev_end = self.offset
        self.done = False

    def read(self, budget):
        """Queues whole lines as events, up to budget bytes; returns the bytes read."""
        size = os.fstat(self.fd.fileno()).st_size
        if size < self.offset:  # truncated: tail.go reopens it from 0
            self.offset = self.prev_end = 0
            self.seq += 1
        self.fd.seek(self.offset)
        chunk = self.fd.read(min(budget, max(size - self.offset, 0)))
        cut = chunk.rfind(b"\n") + 1
        for line in chunk[:cut].splitlines(keepends=True):
            start, end = self.prev_end, self.offset + len(line)
            self.sim.queue(self.target, (line, self, start, end, self.seq))
            self.offset = end
            self.prev_end = end
        if cut == 0 and budget > 0:
            self.at_eof()
        return cut

    def at_eof(self):
        try:
            st = os.stat(self.path)
            same = (st.st_ino, st.st_dev) == (self.ino, self.dev)
        except OSError:
            same = False
        if same:
            return
        # tail.go:460-477: ErrDeletedNotReOpen -> the state file is deleted, the rest read
        self.state.delete(self.sim.log)
        rest = self.fd.read()
        cut = rest.rfind(b"\n") + 1
        for line in rest[:cut].splitlines(keepends=True):
            start, end = self.prev_end, self.offset + len(line)
            self.sim.queue(self.target, (line, self, start, end, self.seq))
            self.offset = self.prev_end = end
        self.fd.close()
        self.done = True


class Sim:
    def __init__(self, a):
        self.a = a
        self.state_dir = os.path.join(a.agent_dir, "logs", "state")
        os.makedirs(self.state_dir, exist_ok=True)
        self.log = AgentLog(os.path.join(a.agent_dir, "logs", "amazon-cloudwatch-agent.log"))
        self.tailers = {}  # path -> Tailer
        self.queues = {}  # target -> {"events": [...], "first": t}
        self.ready = []  # closed batches waiting to be sent: (target, events)
        self.in_flight = []  # batches being sent (concurrency > 1)
        self.batch_no = 0
        self.drop = set(int(x) for x in a.drop_batches.split(",") if x) if a.drop_batches else set()
        self.credit = 0.0
        self.retries = 0
        out_dir = os.path.dirname(os.path.abspath(a.output))
        os.makedirs(out_dir, exist_ok=True)
        self.out = open(a.output, "ab")

    def target_of(self, pattern, path):
        stream = self.a.stream
        if self.a.multi_logs:
            stream = path.replace("/", "_")
        return (self.a.group, stream)

    # -- FindLogSrc, every second ---------------------------------------------
    def scan(self):
        for name, t in list(self.tailers.items()):
            if t.done:
                del self.tailers[name]
        for pattern in self.a.paths:
            matches = []
            for p in glob.glob(pattern):
                p = os.path.abspath(p)
                if p.startswith(self.state_dir) or p.endswith(COMPRESSED) or os.path.isdir(p):
                    continue
                try:
                    matches.append((os.stat(p).st_mtime_ns, p))
                except OSError:
                    continue
            if not matches:
                continue
            chosen = [p for _, p in matches] if self.a.multi_logs else [max(matches)[1]]
            for p in chosen:
                if p in self.tailers:
                    continue
                state = StateManager(self.a, self.state_dir, p)
                try:
                    self.tailers[p] = Tailer(self, p, self.target_of(pattern, p), state)
                except OSError:
                    continue

    # -- the output ------------------------------------------------------------
    def queue(self, target, event):
        q = self.queues.setdefault(target, {"events": [], "bytes": 0, "first": time.time()})
        if not q["events"]:
            q["first"] = time.time()
        q["events"].append(event)
        q["bytes"] += len(event[0])
        if q["bytes"] >= self.a.batch_bytes:
            self.close_batch(target)

    def close_batch(self, target):
        q = self.queues.get(target)
        if q and q["events"]:
            self.ready.append((target, q["events"]))
            self.queues[target] = {"events": [], "bytes": 0, "first": time.time()}

    def queued_bytes(self):
        return sum(q["bytes"] for q in self.queues.values()) + sum(
            sum(len(e[0]) for e in evs) for _, evs in self.ready + self.in_flight)

    def output_down(self):
        return bool(self.a.down_file) and os.path.exists(self.a.down_file)

    def done_state(self, events):
        """batch.go:151-197: each file's ranges in the batch merged into one, handed to its state."""
        per = {}
        for _, tailer, start, end, seq in events:
            t, s, e, q = per.get(id(tailer), (tailer, start, end, seq))
            per[id(tailer)] = (t, min(s, start), max(e, end), max(q, seq))
        for t, s, e, q in per.values():
            t.state.enqueue(s, e, q)

    def send_one(self, target, events, now):
        """sender.go Send: PutLogEvents, or a drop after the retries."""
        self.batch_no += 1
        group, stream = target
        if self.batch_no in self.drop:
            n = self.a.drop_retries
            for i in range(n):
                self.log.write("W", "outputs.cloudwatchlogs", "Retried %d time, going to sleep 200ms before retrying." % i)
            self.log.write("E", "outputs.cloudwatchlogs",
                           "All %d retries to %s/%s failed for PutLogEvents, request dropped." % (n, group, stream))
            if not self.a.no_drop_state:
                self.done_state(events)
            return
        self.out.write(b"".join(e[0] for e in events))
        self.out.flush()
        self.done_state(events)

    def pump(self, now, stopping=False):
        for target, q in list(self.queues.items()):
            if q["events"] and (stopping or now - q["first"] >= self.a.flush_interval):
                self.close_batch(target)
        if self.output_down():
            if self.ready and not stopping:
                self.retries += 1
                if self.retries % 25 == 1:
                    self.log.write("W", "outputs.cloudwatchlogs",
                                   "Aws error received when sending logs to %s/%s: ServiceUnavailableException" % self.ready[0][0])
            if stopping:
                for (group, stream), events in self.in_flight + self.ready:
                    self.log.write("E", "outputs.cloudwatchlogs",
                                   "Stop requested after %d retries to %s/%s failed for PutLogEvents, request dropped." % (self.retries, group, stream))
                    if not self.a.no_drop_state:
                        self.done_state(events)
                self.ready, self.in_flight = [], []
            return
        self.retries = 0
        # Batches of one stream go in order; with concurrency > 1 up to that many are in
        # flight and finish in any order.
        width = max(self.a.concurrency, 1)
        while self.ready and len(self.in_flight) < width:
            self.in_flight.append(self.ready.pop(0))
        while self.in_flight:
            i = random.randrange(len(self.in_flight)) if width > 1 else 0
            target, events = self.in_flight[i]
            size = sum(len(e[0]) for e in events)
            if not stopping and self.credit < size:
                return
            self.credit -= size
            del self.in_flight[i]
            self.send_one(target, events, now)
            while self.ready and len(self.in_flight) < width:
                self.in_flight.append(self.ready.pop(0))

    def run(self):
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        self.log.write("I", "logagent", "starting the stand-in agent")
        next_scan, next_save, last = 0.0, 0.0, time.time()
        # At least a whole batch (batch_bytes and the event that overflowed it), else a full
        # batch would wait for credit that never accrues.
        cap = max(self.a.rate, 65536.0, 2.0 * self.a.batch_bytes)
        while not stop:
            now = time.time()
            if now >= next_scan:
                self.scan()
                next_scan = now + 1.0
            self.credit = min(self.credit + self.a.rate * (now - last), cap)
            last = now
            # The agent's input blocks when the output is behind (eventsCh holds 100 events).
            room = self.a.read_ahead - self.queued_bytes()
            for t in list(self.tailers.values()):
                if not t.done and room > 0:
                    room -= t.read(room)
            self.pump(now)
            if now >= next_save:
                for t in self.tailers.values():
                    t.state.save()
                next_save = now + 0.1
            time.sleep(0.02)
        # Stop: the output flushes what it holds (or drops it, "Stop requested"), then the
        # tailers save their state (logfile.go:144-148: tailers stop after the output).
        self.pump(time.time(), stopping=True)
        for t in self.tailers.values():
            t.state.save(force=True)


def write_config(a):
    etc = os.path.join(a.agent_dir, "etc")
    os.makedirs(etc, exist_ok=True)
    if a.config == "toml":
        parts = ['[agent]\n  logfile = "%s"\n  logtarget = "lumberjack"\n\n[inputs]\n\n  [[inputs.logfile]]\n'
                 '    destination = "cloudwatchlogs"\n    file_state_folder = "%s"\n' % (AGENT_LOG_CONST, STATE_FOLDER_CONST)]
        if a.concurrency > 1:
            parts.append("    max_persist_state = %d\n" % (2 * a.concurrency))
        for g in a.paths:
            parts.append('\n    [[inputs.logfile.file_config]]\n      file_path = "%s"\n      from_beginning = true\n'
                         '      log_group_name = "%s"\n      log_stream_name = "%s"\n      pipe = false\n'
                         '      publish_multi_logs = %s\n      retention_in_days = -1\n      timezone = "UTC"\n'
                         % (os.path.abspath(g), a.group, a.stream, "true" if a.multi_logs else "false"))
        parts.append('\n[outputs]\n\n  [[outputs.cloudwatchlogs]]\n    force_flush_interval = "5s"\n    region = "us-east-1"\n')
        if a.concurrency > 1:
            parts.append("    concurrency = %d\n" % a.concurrency)
        with open(os.path.join(etc, "amazon-cloudwatch-agent.toml"), "w") as f:
            f.write("".join(parts))
    elif a.config == "json":
        import json
        entries = [{"file_path": os.path.abspath(g), "log_group_name": a.group, "log_stream_name": a.stream,
                    "publish_multi_logs": a.multi_logs} for g in a.paths]
        logs = {"logs_collected": {"files": {"collect_list": entries}}}
        if a.concurrency > 1:
            logs["concurrency"] = a.concurrency
        with open(os.path.join(etc, "amazon-cloudwatch-agent.json"), "w") as f:
            json.dump({"agent": {"run_as_user": "root"}, "logs": logs}, f, indent=2)


def cmd_ship(a):
    set_comm("amazon-cloudwat")
    write_config(a)
    if a.pid_file:
        with open(a.pid_file, "w") as f:
            f.write(str(os.getpid()))
    Sim(a).run()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ship", help="tail files, put batches to --output, write the state")
    s.add_argument("--agent-dir", required=True, help="the agent's install dir (etc/, logs/state/)")
    s.add_argument("--output", required=True, help="the log store: delivered lines are appended here")
    s.add_argument("--rate", type=float, default=1e6, help="bytes the output delivers per second")
    s.add_argument("--batch-bytes", type=int, default=64 * 1024, help="a batch is sent at this size")
    s.add_argument("--flush-interval", type=float, default=0.2, help="force_flush_interval, seconds")
    s.add_argument("--read-ahead", type=int, default=256 * 1024, help="bytes read but not delivered, at most")
    s.add_argument("--state-format", choices=["ranges", "offset"], default="ranges")
    s.add_argument("--concurrency", type=int, default=0, help="logs.concurrency")
    s.add_argument("--drop-batches", default="", help="comma-separated batch numbers (from 1) to drop")
    s.add_argument("--drop-retries", type=int, default=5)
    s.add_argument("--no-drop-state", action="store_true", help="a drop does not advance the state (before v1.300059.0)")
    s.add_argument("--down-file", help="while this file exists, PutLogEvents fails")
    s.add_argument("--group", default="app")
    s.add_argument("--stream", default="i-0stand-in")
    s.add_argument("--multi-logs", action="store_true", help="publish_multi_logs")
    s.add_argument("--config", choices=["toml", "json", "none"], default="toml")
    s.add_argument("--ack-log", help="append the time of every state write here")
    s.add_argument("--pid-file")
    s.add_argument("paths", nargs="+", help="globs of files to tail (one collect_list entry each)")
    s.set_defaults(func=cmd_ship)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    sys.exit(main())
