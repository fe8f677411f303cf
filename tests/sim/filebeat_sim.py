#!/usr/bin/env python3
"""A stand-in for filebeat in tests: tails real files and writes the registry as filebeat does.

Only the Python standard library is used, so it runs on any test machine.

  filebeat_sim.py ship --data-dir DIR --format memlog --rate 200000 /var/log/app/*.log
  filebeat_sim.py write --path /var/log/app/app.log --rate 50000 --duration 5

`ship` follows filebeat's source for what lands on disk:
- `array5` (5.x/6.x): `<data>/registry`, a JSON array written to `registry.new` and renamed;
- `array7` (7.0-7.8): `<data>/registry/filebeat/data.json`, the same array, same rename;
- `memlog` (7.9-9.x): `meta.json`, `log.json` with one action line and one data line per
  operation (ids rising by one), and checkpoints: `checkpoint.new` renamed to
  `<nextTxID>.json`, `log.json` truncated, `active.dat` rewritten, older checkpoints deleted.
Offsets advance only over whole lines and are written only after the "output" acked them,
at most once per --flush. Rotated files keep being read through the open descriptor until
their end; the process calls itself `filebeat` so drainhook finds its open files in /proc.
"""

import argparse
import glob
import hashlib
import json
import os
import signal
import sys
import time

FINGERPRINT_LEN = 1024


def set_comm(name):
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


class Harvester:
    def __init__(self, path, st, key):
        self.source = path
        self.inode = st.st_ino
        self.device = st.st_dev
        self.key = key
        self.fd = open(path, "rb")
        self.offset = 0
        self.eof_since = None

    def read(self, budget):
        """Reads whole lines up to budget bytes; returns the bytes acked."""
        size = os.fstat(self.fd.fileno()).st_size
        if size < self.offset:  # truncated (copytruncate): start again from 0
            self.offset = 0
        self.fd.seek(self.offset)
        chunk = self.fd.read(min(budget, max(size - self.offset, 0)))
        cut = chunk.rfind(b"\n") + 1
        self.offset += cut
        return cut


class Shipper:
    def __init__(self, a):
        self.a = a
        self.harvesters = {}
        self.last_flush = 0.0
        self.dirty = set()
        self.removed = set()
        self.states = {}  # key -> value written (memlog replay state)
        self.next_txid = 1
        self.log = None
        self.log_size = 0
        if a.format == "array5":
            self.reg_file = os.path.join(a.data_dir, "registry")
            os.makedirs(a.data_dir, exist_ok=True)
        else:
            self.home = os.path.join(a.data_dir, "registry", "filebeat")
            os.makedirs(self.home, exist_ok=True)
            version = "1" if a.format == "memlog" else "0"
            self._write_atomic(os.path.join(self.home, "meta.json"), json.dumps({"version": version}))
            self.reg_file = os.path.join(self.home, "data.json")
            if a.format == "memlog":
                self.log = open(os.path.join(self.home, "log.json"), "ab")

    # -- identity ------------------------------------------------------------
    def key_for(self, path, st):
        a = self.a
        if a.format != "memlog" or a.input == "log":
            return "filebeat::logs::native::%d-%d" % (st.st_ino, st.st_dev)
        if a.identity == "fingerprint":
            with open(path, "rb") as f:
                head = f.read(FINGERPRINT_LEN)
            if len(head) < FINGERPRINT_LEN:
                return None  # filebeat ignores files shorter than the fingerprint
            ident = "fingerprint::" + hashlib.sha256(head).hexdigest()
        elif a.identity == "path":
            ident = "path::" + path
        else:
            ident = "native::%d-%d" % (st.st_ino, st.st_dev)
        return "filestream::%s::%s" % (a.input_id, ident)

    def value_for(self, h):
        now = time.time()
        a = self.a
        if a.format != "memlog" or a.input == "log":
            v = {
                "source": h.source,
                "offset": h.offset,
                "FileStateOS": {"inode": h.inode, "device": h.device},
                "timestamp": [int(now * 1e9) % (1 << 40), int(now)],
                "ttl": -1,
                "type": "log",
            }
            if a.format == "memlog":
                v.update({"prev_id": "", "identifier_name": "native", "id": "native::%d-%d" % (h.inode, h.device)})
            else:
                v["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(now))
                v["meta"] = None
            return v
        return {
            "ttl": 1800000000000,
            "updated": [int(now * 1e9) % (1 << 40), int(now)],
            "cursor": {"offset": h.offset} if h.offset else None,
            "meta": {"source": h.source, "identifier_name": a.identity},
        }

    # -- scanning ------------------------------------------------------------
    def scan(self):
        seen = set()
        for pattern in self.a.paths:
            for path in sorted(os.path.abspath(p) for p in glob.glob(pattern)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = self.key_for(path, st)
                if key is None:
                    continue
                seen.add(key)
                h = self.harvesters.get(key)
                if h is None:
                    try:
                        self.harvesters[key] = Harvester(path, st, key)
                    except OSError:
                        continue
                    self.dirty.add(key)
                elif h.source != path and (h.inode, h.device) == (st.st_ino, st.st_dev):
                    h.source = path  # renamed: the new name is learnt at the next scan
                    self.dirty.add(key)
        # Renamed out of the globs: find the new name in the same directory.
        for h in self.harvesters.values():
            if h.key in seen or h.fd is None:
                continue
            d = os.path.dirname(h.source)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                p = os.path.join(d, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                if (st.st_ino, st.st_dev) == (h.inode, h.device) and p != h.source:
                    h.source = p
                    self.dirty.add(h.key)

    # -- harvesting ----------------------------------------------------------
    def harvest(self, budget):
        """Reads up to budget bytes of whole lines across files; returns the bytes read."""
        start = budget
        for h in self.harvesters.values():
            if h.fd is None or budget <= 0:
                continue
            n = h.read(budget)
            budget -= n
            if n:
                self.dirty.add(h.key)
                h.eof_since = None
            elif h.eof_since is None:
                h.eof_since = time.time()
            # close_removed / close_inactive: let go of a rotated-away file once read to its end
            try:
                st = os.stat(h.source)
                same = (st.st_ino, st.st_dev) == (h.inode, h.device)
            except OSError:
                same = False
            if not same and h.eof_since and time.time() - h.eof_since > self.a.close_inactive:
                h.fd.close()
                h.fd = None
        return start - budget

    # -- registry ------------------------------------------------------------

    def _write_atomic(self, path, text):
        tmp = path + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_SYNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, path)

    def flush(self, force=False):
        now = time.time()
        if not self.dirty or (not force and now - self.last_flush < self.a.flush):
            return
        self.last_flush = now
        if self.a.format == "memlog":
            for key in sorted(self.dirty):
                v = self.value_for(self.harvesters[key])
                self.states[key] = v
                self._log_op("set", {"k": key, "v": v})
            self.log.flush()
            if self.log_size >= self.a.checkpoint_bytes:
                self.checkpoint()
        else:
            arr = [self.value_for(h) for h in self.harvesters.values()]
            self._write_atomic(self.reg_file, json.dumps(arr, separators=(",", ":")))
        self.dirty.clear()
        if self.a.ack_log:
            with open(self.a.ack_log, "a") as f:
                f.write("%.6f\n" % time.time())

    def _log_op(self, op, data):
        line = json.dumps({"op": op, "id": self.next_txid}, separators=(",", ":")) + "\n"
        line += json.dumps(data, separators=(",", ":")) + "\n"
        b = line.encode()
        self.log.write(b)
        self.log_size += len(b)
        self.next_txid += 1

    def checkpoint(self):
        tmp = os.path.join(self.home, "checkpoint.new")
        parts = []
        for key, v in self.states.items():
            e = {"_key": key}
            e.update(v)
            parts.append(json.dumps(e, separators=(",", ":")))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_SYNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("[" + ",\n".join(parts) + "\n]")
        txid = self.next_txid
        path = os.path.join(self.home, "%d.json" % txid)
        os.rename(tmp, path)
        self.log.truncate(0)
        self.log.seek(0)
        self.log_size = 0
        self.next_txid += 1
        self._write_atomic(os.path.join(self.home, "active.dat"), path)
        for name in os.listdir(self.home):
            stem = name[:-5] if name.endswith(".json") else ""
            if stem.isdigit() and int(stem) != txid:
                os.remove(os.path.join(self.home, name))

    def run(self):
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        tick = 0.02
        next_scan = 0.0
        # The output's pace: a byte budget that accrues at --rate and carries over from tick to
        # tick, so whole lines ship at the average rate whatever their length. Capped, so
        # that after an idle spell the burst is at most a second's worth (or one long line).
        credit, last = 0.0, time.time()
        cap = max(self.a.rate, 65536.0)
        while not stop:
            now = time.time()
            if now >= next_scan:
                self.scan()
                next_scan = now + self.a.scan_interval
            credit = min(credit + self.a.rate * (now - last), cap)
            last = now
            credit -= self.harvest(int(credit))
            self.flush()
            time.sleep(tick)
        self.flush(force=True)


def cmd_ship(a):
    set_comm("filebeat")
    if a.pid_file:
        with open(a.pid_file, "w") as f:
            f.write(str(os.getpid()))
    Shipper(a).run()


def cmd_write(a):
    """Appends numbered lines at a rate, rotating by rename; prints the bytes written."""
    start = time.time()
    written = 0
    seq = 0
    since_rotate = 0
    f = open(a.path, "ab")
    while time.time() - start < a.duration and (not a.total or written < a.total):
        target = (time.time() - start) * a.rate
        while written < target and (not a.total or written < a.total):
            seq += 1
            payload = "x" * max(a.line_size - 40, 1)
            line = ("%.6f %08d %s\n" % (time.time(), seq, payload)).encode()
            f.write(line)
            written += len(line)
            since_rotate += len(line)
            if a.rotate_every and since_rotate >= a.rotate_every:
                f.close()
                for i in range(a.keep, 0, -1):
                    src = a.path + ("" if i == 1 else ".%d" % (i - 1))
                    if os.path.exists(src):
                        os.rename(src, "%s.%d" % (a.path, i))
                f = open(a.path, "ab")
                since_rotate = 0
        f.flush()
        time.sleep(0.01)
    f.close()
    print(json.dumps({"written": written, "lines": seq}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ship", help="tail files and write the registry")
    s.add_argument("--data-dir", required=True, help="filebeat's path.data")
    s.add_argument("--format", choices=["array5", "array7", "memlog"], default="memlog")
    s.add_argument("--input", choices=["log", "filestream"], default="filestream")
    s.add_argument("--identity", choices=["native", "path", "fingerprint"], default="native")
    s.add_argument("--input-id", default="app-logs")
    s.add_argument("--rate", type=float, default=1e6, help="bytes shipped per second")
    s.add_argument("--flush", type=float, default=0.1, help="registry.flush, seconds")
    s.add_argument("--scan-interval", type=float, default=0.5, help="check_interval, seconds")
    s.add_argument("--close-inactive", type=float, default=1.0)
    s.add_argument("--checkpoint-bytes", type=int, default=10 * 1024 * 1024)
    s.add_argument("--ack-log", help="append the time of every registry write here")
    s.add_argument("--pid-file")
    s.add_argument("paths", nargs="+", help="globs of files to tail")
    s.set_defaults(func=cmd_ship)
    w = sub.add_parser("write", help="append lines to a log file")
    w.add_argument("--path", required=True)
    w.add_argument("--rate", type=float, default=20000, help="bytes per second")
    w.add_argument("--duration", type=float, default=2.0)
    w.add_argument("--total", type=int, default=0, help="stop after this many bytes")
    w.add_argument("--line-size", type=int, default=100)
    w.add_argument("--rotate-every", type=int, default=0, help="rotate after this many bytes")
    w.add_argument("--keep", type=int, default=3)
    w.set_defaults(func=cmd_write)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    sys.exit(main())
