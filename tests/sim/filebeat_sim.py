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

`ship --queue disk` stands in for `queue.disk` (beats' libbeat/publisher/queue/diskqueue):
harvested lines (at --rate) are written as frames to `<data>/diskqueue/<id>.seg` and the
segment is synced; only then are their registry offsets acknowledged, as filebeat's queue
acknowledges on the write to disk. Segments have a version-2 header (`u32 2 | u32 count |
u32 options=0`, count 0 while written, filled in place when the writer moves to the next
segment or stops); frames are `u32 size | payload | u32 crc32 | u32 size` with size =
payload + 12 and the CRC (zlib's, IEEE) over the size (u32 LE) then the payload. The payload
is a small JSON object (`message`, `log.file.path`, `log.offset`), where filebeat writes
CBOR: drainhook never reads payloads. A separate output reads the frames back from the
files at --output-rate (frame bytes a second), appends each delivered line to
--delivered-log, and moves `state.dat` as beats does: rewritten in place (seek 0, four
writes, 28 bytes, version 1, no truncate), created empty at start; it moves into a segment
when that segment's first frame is delivered, and only then are the earlier segments
deleted. The newest segment is never deleted.
"""

import argparse
import glob
import hashlib
import json
import os
import signal
import struct
import sys
import time
import zlib

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

    def read(self, budget, sink=None):
        """Reads whole lines up to budget bytes; returns the bytes acked. With a sink (the
        disk queue), appends (source, offset, lines) to it."""
        size = os.fstat(self.fd.fileno()).st_size
        if size < self.offset:  # truncated (copytruncate): start again from 0
            self.offset = 0
        self.fd.seek(self.offset)
        chunk = self.fd.read(min(budget, max(size - self.offset, 0)))
        cut = chunk.rfind(b"\n") + 1
        if sink is not None and cut:
            sink.append((self.source, self.offset, chunk[:cut]))
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
    def harvest(self, budget, sink=None):
        """Reads up to budget bytes of whole lines across files; returns the bytes read."""
        start = budget
        for h in self.harvesters.values():
            if h.fd is None or budget <= 0:
                continue
            n = h.read(budget, sink)
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
        # The ack log records when this write began: a watcher can see the new registry
        # as soon as the rename lands, before a time taken after it (the tests assert
        # that a drain ends at least a settle period after this instant).
        began = time.time()
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
                f.write("%.6f\n" % began)

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
        disk = self.a.queue == "disk"
        delivered = open(self.a.delivered_log, "ab") if self.a.delivered_log and not disk else None
        if disk:
            # queue.disk: the harvest pace is --rate; the output's is --output-rate.
            qdir = os.path.join(self.a.data_dir, "diskqueue")
            writer = DiskQueueWriter(qdir, self.a.segment_size)
            output = DiskQueueOutput(qdir, self.a.delivered_log)
            out_rate = self.a.output_rate or self.a.rate
            out_credit, out_cap = 0.0, max(out_rate, 65536.0)
        while not stop:
            now = time.time()
            if now >= next_scan:
                self.scan()
                next_scan = now + self.a.scan_interval
            credit = min(credit + self.a.rate * (now - last), cap)
            if disk:
                out_credit = min(out_credit + out_rate * (now - last), out_cap)
            last = now
            if disk:
                batch = []
                credit -= self.harvest(int(credit), batch)
                writer.write(batch)  # synced before the registry may move
                out_credit -= output.deliver(int(out_credit))
            elif delivered:
                # The memory queue: the output has the lines (appended to the log store)
                # before the registry may say so.
                batch = []
                credit -= self.harvest(int(credit), batch)
                for _, _, lines in batch:
                    delivered.write(lines)
                delivered.flush()
            else:
                credit -= self.harvest(int(credit))
            self.flush()
            time.sleep(tick)
        if disk:
            writer.close()
            output.close()
        if delivered:
            delivered.close()
        self.flush(force=True)


SEG_HEADER = struct.Struct("<III")  # version 2, frame count, options
SEG_HEADER_SIZE = 12
STATE_VERSION = 1


def frame_bytes(payload):
    """A disk queue frame as beats' writer_loop writes it."""
    size = len(payload) + 12
    head = struct.pack("<I", size)
    crc = zlib.crc32(head + payload) & 0xFFFFFFFF
    return head + payload + struct.pack("<II", crc, size)


def segment_ids(qdir):
    out = []
    for name in os.listdir(qdir):
        stem, dot, ext = name.partition(".")
        if dot and ext.lower() == "seg" and stem.isdigit():
            out.append(int(stem))
    return sorted(out)


class DiskQueueWriter:
    """beats' writer loop: frames appended to the newest segment, synced per batch; a new
    segment (next id) when the next frame would pass --segment-size, after writing the
    finished segment's frame count into its header."""

    def __init__(self, qdir, segment_size):
        os.makedirs(qdir, exist_ok=True)
        ids = segment_ids(qdir)
        self.qdir = qdir
        self.segment_size = segment_size
        self.next_id = ids[-1] + 1 if ids else 0
        self.f = None
        self.frames = 0
        self.size = 0

    def _open(self):
        path = os.path.join(self.qdir, "%d.seg" % self.next_id)
        self.next_id += 1
        self.f = open(path, "wb")  # O_CREAT|O_TRUNC, as getWriter
        self.f.write(SEG_HEADER.pack(2, 0, 0))
        self.frames, self.size = 0, SEG_HEADER_SIZE

    def _finish(self):
        self.f.flush()
        os.pwrite(self.f.fileno(), struct.pack("<I", self.frames), 4)  # UpdateCount
        os.fsync(self.f.fileno())
        self.f.close()
        self.f = None

    def write(self, batch):
        """batch: [(source, offset, whole lines)]."""
        wrote = False
        for source, offset, chunk in batch:
            for line in chunk.splitlines(keepends=True):
                payload = json.dumps(
                    {
                        "message": line[:-1].decode("utf-8", "surrogateescape"),
                        "log.file.path": source,
                        "log.offset": offset,
                    },
                    separators=(",", ":"),
                ).encode()
                offset += len(line)
                frame = frame_bytes(payload)
                if self.f is None:
                    self._open()
                elif self.frames and self.size + len(frame) > self.segment_size:
                    self._finish()
                    self._open()
                self.f.write(frame)
                self.frames += 1
                self.size += len(frame)
                wrote = True
        if wrote:
            self.f.flush()
            os.fsync(self.f.fileno())

    def close(self):
        if self.f is not None:
            self._finish()


class DiskQueueOutput:
    """The output side: reads frames from the segments in order, at the pace it is given,
    and acknowledges them in state.dat as beats' acks.go does."""

    def __init__(self, qdir, delivered_log):
        self.qdir = qdir
        self.state_path = os.path.join(qdir, "state.dat")
        # Opened once, O_WRONLY|O_CREATE, never truncated: empty until the first ack.
        self.state_fd = os.open(self.state_path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.pos = [0, 0, 0]  # segmentID, byteIndex, frameIndex
        self.rf = None  # the segment being read, its id, and the next frame's offset in it
        self.reading, self.offset = None, 0
        self.delivered = open(delivered_log, "ab") if delivered_log else None
        with open(self.state_path, "rb") as f:
            saved = f.read(28)
        if len(saved) == 28 and struct.unpack("<I", saved[:4])[0] == STATE_VERSION:
            self.pos = list(struct.unpack("<QQQ", saved[4:]))
            if self.pos[1] and os.path.exists(os.path.join(qdir, "%d.seg" % self.pos[0])):
                self._read_segment(self.pos[0], self.pos[1])  # resume where the output was

    def _next_frame(self):
        """The next whole frame (segment id, offset, bytes), or None when caught up."""
        while True:
            if self.rf is None:
                later = [i for i in segment_ids(self.qdir) if i >= self.pos[0]]
                if not later:
                    return None
                self._read_segment(later[0], SEG_HEADER_SIZE)
                continue
            self.rf.seek(self.offset)
            head = self.rf.read(4)
            if len(head) == 4:
                (size,) = struct.unpack("<I", head)
                rest = self.rf.read(size - 4)
                if len(rest) == size - 4:
                    return self.reading, self.offset, head + rest
            # No whole frame here: move on if a later segment exists (this one is finished).
            later = [i for i in segment_ids(self.qdir) if i > self.reading]
            if not later:
                return None
            self._read_segment(later[0], SEG_HEADER_SIZE)

    def _read_segment(self, seg, offset):
        if self.rf is not None:
            self.rf.close()
        self.reading, self.offset = seg, offset
        self.rf = open(os.path.join(self.qdir, "%d.seg" % seg), "rb")

    def deliver(self, budget):
        """Delivers whole frames within budget bytes; returns the frame bytes delivered."""
        spent = 0
        while True:
            nxt = self._next_frame()
            if nxt is None:
                break
            seg, off, frame = nxt
            if spent + len(frame) > budget:
                break
            msg = json.loads(frame[4:-8])["message"]
            if self.delivered:
                self.delivered.write(msg.encode("utf-8", "surrogateescape") + b"\n")
            spent += len(frame)
            self.offset = off + len(frame)
            # acks.go addFrames: a frame of a new segment moves the position there.
            if seg != self.pos[0] or self.pos[1] == 0:
                self.pos = [seg, SEG_HEADER_SIZE, 0]
            self.pos[1] += len(frame)
            self.pos[2] += 1
        if spent:
            if self.delivered:
                self.delivered.flush()
            self._write_state()
            # The deleter: segments before the position's, once the position is past them.
            for i in segment_ids(self.qdir):
                if i < self.pos[0]:
                    try:
                        os.remove(os.path.join(self.qdir, "%d.seg" % i))
                    except FileNotFoundError:
                        pass
        return spent

    def _write_state(self):
        # writeQueuePositionToHandle: seek to 0, then four writes; no truncate, no fsync.
        os.lseek(self.state_fd, 0, os.SEEK_SET)
        os.write(self.state_fd, struct.pack("<I", STATE_VERSION))
        os.write(self.state_fd, struct.pack("<Q", self.pos[0]))
        os.write(self.state_fd, struct.pack("<Q", self.pos[1]))
        os.write(self.state_fd, struct.pack("<Q", self.pos[2]))

    def close(self):
        os.close(self.state_fd)
        if self.rf is not None:
            self.rf.close()
        if self.delivered:
            self.delivered.close()


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
    s.add_argument(
        "--queue",
        choices=["memory", "disk"],
        default="memory",
        help="memory: the registry moves when the output acks (at --rate); disk: when lines "
        "are written to <data-dir>/diskqueue, which an output empties at --output-rate",
    )
    s.add_argument("--output-rate", type=float, default=0, help="disk queue: frame bytes delivered per second (default --rate)")
    s.add_argument("--segment-size", type=int, default=1000000, help="disk queue: segment_size, bytes")
    s.add_argument("--delivered-log", "--output", dest="delivered_log",
                   help="append every line the output delivers here, in delivery order (the log store)")
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
