#!/usr/bin/env python3
"""A stand-in for Vector in tests: a `file` source tailing real files, one sink, and the
source's checkpoints.json written as Vector writes it.

Only the Python standard library is used, so it runs on any test machine.

  vector_sim.py ship --data-dir DIR --output FILE --rate 40000 [--acks] /var/log/app/*.log

What lands on disk follows Vector's source (vectordotdev/vector, snapshot c3445d42):
- `<data-dir>/<source-id>/checkpoints.json`: `{"version":"1","checkpoints":[{"fingerprint":
  {"first_lines_checksum":N} or {"dev_inode":[dev,ino]},"position":P,"modified":RFC3339}]}`,
  written when it changed, every `--cooldown-ms` (glob_minimum_cooldown_ms, 1 s by default),
  to `checkpoints.new.json`, fsynced, then renamed (lib/file-source-common/src/
  checkpointer.rs:188-227; lib/file-source/src/file_server.rs:492-515). Checkpoints of
  files gone for 60 s are dropped (checkpointer.rs:89-111).
- Fingerprints: `checksum` is CRC-64/ECMA-182 over the first `--lines` lines with their
  newline, after `--ignored-header-bytes`, within `--max-line-bytes` (gzip files
  decompressed); files shorter than that are not read at all. `device_and_inode` is the
  file's (st_dev, st_ino) (lib/file-source-common/src/fingerprinter.rs:171-276).
- When a position moves: without `--acks`, when a line is read (src/sources/file.rs:
  664-666); with `--acks` and the memory buffer, when the sink has delivered the line
  (file.rs:571-596); with `--acks --buffer disk`, when the line is written to the disk
  buffer (lib/vector-buffers/src/variants/disk_v2/writer.rs:256-295).
- Files are found by globbing every cooldown; a file renamed out of the patterns or deleted
  is read through its open descriptor to its end, then dropped (file_server.rs:357-374).

The sink ("out") delivers `--rate` bytes a second: each line it delivers is appended to
`--output`, byte for byte, in delivery order (the log store). Its memory buffer holds
`--buffer-events` events (Vector's default 500); the source stops reading while it is full.
While `--pause-file` exists the sink delivers nothing (an output that is down).
`--write-config FILE` writes the Vector configuration (YAML, or TOML for a .toml name) that
describes this pipeline, for drainhook to read. The process calls itself `vector`, so
drainhook finds its open files in /proc.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import signal
import sys
import time

MASK = (1 << 64) - 1
POLY = 0x42F0E1EBA9EA3693  # CRC-64/ECMA-182: init 0, not reflected, xorout 0


def _table():
    t = []
    for i in range(256):
        c = i << 56
        for _ in range(8):
            c = ((c << 1) ^ POLY) & MASK if c & (1 << 63) else (c << 1) & MASK
        t.append(c)
    return t


TABLE = _table()


def crc64(data):
    c = 0
    for b in data:
        c = TABLE[((c >> 56) ^ b) & 0xFF] ^ ((c << 8) & MASK)
    return c


assert crc64(b"123456789") == 0x6C40DF5F0B497347


def set_comm(name):
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


def rfc3339(ns):
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % frac


class Watcher:
    """One file being read (FileWatcher): its descriptor, its position, whether the last
    glob found it."""

    def __init__(self, path, fid, position):
        self.path = path
        self.fid = fid
        self.fd = open(path, "rb")
        self.position = position
        self.findable = True
        self.dead = False
        self.partial = b""

    def read_lines(self, budget):
        """Whole lines from the position on, up to `budget` events: [(end_offset, bytes)]."""
        out = []
        self.fd.seek(self.position)
        while len(out) < budget:
            line = self.fd.readline()
            if not line.endswith(b"\n"):
                if not line and not self.findable:
                    self.dead = True  # gone from the globs and read to its end
                break
            self.position += len(line)
            out.append((self.position, line))
        return out


class Vector:
    def __init__(self, a):
        self.a = a
        self.state_dir = os.path.join(a.data_dir, a.source_id)
        os.makedirs(self.state_dir, exist_ok=True)
        self.watchers = {}  # fid -> Watcher
        self.checkpoints = {}  # fid -> position
        self.modified = {}  # fid -> ns
        self.removed = {}  # fid -> time it went dead
        self.last_written = None
        self.buffer = collections.deque()  # (fid, end_offset, line) waiting for the sink
        self.credit = 0.0
        self.load()

    # -- fingerprints -------------------------------------------------------
    def fingerprint(self, path):
        a = self.a
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not os.path.isfile(path):
            return None
        if a.fingerprint == "device_and_inode":
            return ("dev_inode", st.st_dev, st.st_ino)
        try:
            with open(path, "rb") as f:
                magic = f.read(2)
            if len(magic) < 2:
                return None
            opener = gzip.open if magic == b"\x1f\x8b" else open
            with opener(path, "rb") as f:
                if len(f.read(a.ignored_header_bytes)) < a.ignored_header_bytes:
                    return None
                head = f.read(a.max_line_bytes)
        except (OSError, EOFError):
            return None
        want, seen = max(a.lines, 1), 0
        for i, b in enumerate(head):
            if b == 0x0A:
                seen += 1
                if seen == want:
                    return ("first_lines_checksum", crc64(head[: i + 1]))
        if len(head) >= a.max_line_bytes:
            return ("first_lines_checksum", crc64(head))
        return None

    # -- checkpoints --------------------------------------------------------
    def load(self):
        """At start: a leftover checkpoints.new.json first, then checkpoints.json."""
        for name in ("checkpoints.new.json", "checkpoints.json"):
            try:
                with open(os.path.join(self.state_dir, name)) as f:
                    state = json.load(f)
            except (OSError, ValueError):
                continue
            for c in state.get("checkpoints", []):
                fp = c["fingerprint"]
                if "dev_inode" in fp:
                    fid = ("dev_inode", fp["dev_inode"][0], fp["dev_inode"][1])
                else:
                    fid = ("first_lines_checksum", fp.get("first_lines_checksum", fp.get("first_line_checksum")))
                self.checkpoints[fid] = c["position"]
                self.modified[fid] = time.time_ns()
            return

    def update(self, fid, position):
        self.checkpoints[fid] = position
        self.modified[fid] = time.time_ns()
        self.removed.pop(fid, None)

    def write_checkpoints(self):
        now = time.time()
        for fid, t in list(self.removed.items()):
            if now - t >= 60:
                for m in (self.checkpoints, self.modified, self.removed):
                    m.pop(fid, None)
        state = sorted(
            ((0, fid[1:]) if fid[0] == "first_lines_checksum" else (1, fid[1:]), pos, self.modified[fid], fid)
            for fid, pos in self.checkpoints.items()
        )
        if state == self.last_written:
            return
        entries = []
        for _, pos, mod, fid in state:
            fp = {"first_lines_checksum": fid[1]} if fid[0] == "first_lines_checksum" else {"dev_inode": [fid[1], fid[2]]}
            entries.append({"fingerprint": fp, "position": pos, "modified": rfc3339(mod)})
        tmp = os.path.join(self.state_dir, "checkpoints.new.json")
        with open(tmp, "w") as f:
            f.write(json.dumps({"version": "1", "checkpoints": entries}, separators=(",", ":")))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.state_dir, "checkpoints.json"))
        self.last_written = state
        if self.a.ack_log:
            with open(self.a.ack_log, "a") as f:
                f.write("%.6f\n" % now)

    # -- the file server ----------------------------------------------------
    def scan(self):
        for w in self.watchers.values():
            w.findable = False
        for pattern in self.a.paths:
            for path in sorted(os.path.abspath(p) for p in glob.glob(pattern)):
                fid = self.fingerprint(path)
                if fid is None:
                    continue
                w = self.watchers.get(fid)
                if w is not None:
                    if w.path != path and not w.findable:
                        w.path = path  # renamed
                    w.findable = True
                    continue
                try:
                    # The stored checkpoint, else the beginning (read_from: beginning).
                    self.watchers[fid] = Watcher(path, fid, self.checkpoints.get(fid, 0))
                except OSError:
                    pass

    def read(self):
        room = self.a.buffer_events - len(self.buffer) if self.a.buffer == "memory" else 1 << 30
        for fid, w in list(self.watchers.items()):
            if room <= 0:
                break
            lines = w.read_lines(room)
            room -= len(lines)
            for end, line in lines:
                # Without acknowledgements the checkpoint moves as the line becomes an event;
                # with them and a disk buffer, when it is written to the buffer.
                if not self.a.acks or self.a.buffer == "disk":
                    self.update(fid, end)
                self.buffer.append((fid, end, line))
            if w.dead:
                w.fd.close()
                del self.watchers[fid]
                self.removed[fid] = time.time()

    def deliver(self, out, dt):
        if self.a.pause_file and os.path.exists(self.a.pause_file):
            return
        cap = max(self.a.rate, 65536.0)
        self.credit = min(self.credit + self.a.rate * dt, cap)
        wrote = False
        while self.buffer and self.credit >= len(self.buffer[0][2]):
            fid, end, line = self.buffer.popleft()
            out.write(line)
            self.credit -= len(line)
            wrote = True
            if self.a.acks and self.a.buffer == "memory":
                self.update(fid, end)  # BatchStatus::Delivered
        if wrote:
            out.flush()

    def run(self):
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        cooldown = self.a.cooldown_ms / 1000.0
        next_scan = next_write = 0.0
        last = time.time()
        with open(self.a.output, "ab") as out:
            while not stop:
                now = time.time()
                if now >= next_scan:
                    self.scan()
                    next_scan = now + cooldown
                self.read()
                self.deliver(out, now - last)
                last = now
                if now >= next_write:
                    if next_write:
                        self.write_checkpoints()
                    next_write = now + cooldown
                time.sleep(0.01)
        self.write_checkpoints()  # the last write at shutdown (file_server.rs:413-425)


def quoted(s):
    return json.dumps(s)  # a JSON string is a YAML and a TOML basic string too


def write_config(a):
    """The Vector configuration of this pipeline, with paths relative to --config-root."""
    root = a.config_root.rstrip("/") if a.config_root else ""

    def rel(p):
        p = os.path.abspath(p)
        return p[len(root):] if root and p.startswith(root + "/") else p

    includes = [rel(p) for p in a.paths]
    toml = a.write_config.endswith(".toml")
    buf = {"memory": {"type": "memory", "max_events": a.buffer_events}, "disk": {"type": "disk", "max_size": 268435488}}[a.buffer]
    if toml:
        fp = 'strategy = "device_and_inode"' if a.fingerprint == "device_and_inode" else (
            'strategy = "checksum"\nlines = %d\nignored_header_bytes = %d' % (a.lines, a.ignored_header_bytes))
        text = "\n".join([
            "data_dir = %s" % quoted(rel(a.data_dir)),
            "[sources.%s]" % a.source_id,
            'type = "file"',
            "include = [%s]" % ", ".join(quoted(p) for p in includes),
            "glob_minimum_cooldown_ms = %d" % a.cooldown_ms,
            "max_line_bytes = %d" % a.max_line_bytes,
            "[sources.%s.fingerprint]" % a.source_id,
            fp,
            "[sinks.out]",
            'type = "file"',
            "inputs = [%s]" % quoted(a.source_id),
            "path = %s" % quoted(rel(a.output)),
            'encoding.codec = "text"',
            "acknowledgements.enabled = %s" % ("true" if a.acks else "false"),
            "[sinks.out.buffer]",
        ] + ["%s = %s" % (k, quoted(v) if isinstance(v, str) else v) for k, v in buf.items()]) + "\n"
    else:
        fp = "      strategy: device_and_inode" if a.fingerprint == "device_and_inode" else (
            "      strategy: checksum\n      lines: %d\n      ignored_header_bytes: %d" % (a.lines, a.ignored_header_bytes))
        text = "\n".join([
            "data_dir: %s" % quoted(rel(a.data_dir)),
            "sources:",
            "  %s:" % a.source_id,
            "    type: file",
            "    include: [%s]" % ", ".join(quoted(p) for p in includes),
            "    glob_minimum_cooldown_ms: %d" % a.cooldown_ms,
            "    max_line_bytes: %d" % a.max_line_bytes,
            "    fingerprint:",
            fp,
            "sinks:",
            "  out:",
            "    type: file",
            "    inputs: [%s]" % quoted(a.source_id),
            "    path: %s" % quoted(rel(a.output)),
            "    encoding:",
            "      codec: text",
            "    acknowledgements:",
            "      enabled: %s" % ("true" if a.acks else "false"),
            "    buffer:",
        ] + ["      %s: %s" % (k, v) for k, v in buf.items()]) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(a.write_config)), exist_ok=True)
    with open(a.write_config, "w") as f:
        f.write(text)


def cmd_ship(a):
    if a.write_config:
        write_config(a)
    set_comm("vector")
    if a.pid_file:
        with open(a.pid_file, "w") as f:
            f.write(str(os.getpid()))
    Vector(a).run()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ship", help="tail files, deliver them to --output, write checkpoints.json")
    s.add_argument("--data-dir", required=True, help="Vector's data_dir")
    s.add_argument("--source-id", default="app_logs")
    s.add_argument("--output", required=True, help="the log store: delivered lines are appended here")
    s.add_argument("--rate", type=float, default=1e6, help="bytes the sink delivers per second")
    s.add_argument("--acks", action="store_true", help="end-to-end acknowledgements on the sink")
    s.add_argument("--buffer", choices=["memory", "disk"], default="memory")
    s.add_argument("--buffer-events", type=int, default=500)
    s.add_argument("--fingerprint", choices=["checksum", "device_and_inode"], default="checksum")
    s.add_argument("--lines", type=int, default=1)
    s.add_argument("--ignored-header-bytes", type=int, default=0)
    s.add_argument("--max-line-bytes", type=int, default=102400)
    s.add_argument("--cooldown-ms", type=int, default=1000, help="glob_minimum_cooldown_ms")
    s.add_argument("--pause-file", help="while this file exists the sink delivers nothing")
    s.add_argument("--ack-log", help="append the time of every checkpoints.json write here")
    s.add_argument("--write-config", help="write the matching Vector config here (.yaml or .toml)")
    s.add_argument("--config-root", help="paths in the written config are relative to this root")
    s.add_argument("--pid-file")
    s.add_argument("paths", nargs="+", help="globs of files to tail (the source's include)")
    s.set_defaults(func=cmd_ship)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    sys.exit(main())
