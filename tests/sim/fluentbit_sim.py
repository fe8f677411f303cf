#!/usr/bin/env python3
"""A stand-in for Fluent Bit in tests: tails real files, keeps its state as Fluent Bit does.

Only the Python standard library is used (sqlite3 included), so it runs on any test machine.

  fluentbit_sim.py ship --config fb.conf --db tail.db --storage-path storage \\
      --storage-type filesystem --rate 40000 --output delivered.log '/var/log/app/*.log'

What lands on disk and on the HTTP server follows Fluent Bit's source (fluent/fluent-bit):
- the tail DB: the real schema (plugins/in_tail/tail_sql.h), journal_mode=WAL (the default
  `DB.journal_mode`), one row per file keyed by inode; `offset` is updated right after the
  lines read are appended to a chunk (tail_file.c:2099-2126), i.e. on READ, not delivery; a
  rotated file keeps its row with its new name and rotated=1, and the row is deleted when the
  file is let go after --rotate-wait;
- chunks: records are msgpack `[[EventTime, {}], {"log": line}]` appended to the input's
  open chunk; every --flush seconds the open chunks become tasks for the output (busy: no
  more appends), a chunk is at most 2048000 bytes (FLB_INPUT_CHUNK_FS_MAX_SIZE). With
  `--storage-type filesystem` each chunk is a file `<storage.path>/tail.0/<pid>-<sec>.<nsec>.flb`
  in chunkio's layout (cio_file_st.h: 0xC1 0x00, CRC32s, the content length at bytes 10-13,
  the metadata length at 22-23, metadata `F1 77 00 00 <tag>`), preallocated to 262144
  bytes (its size says nothing), deleted once delivered or dropped;
- the output delivers a task's lines at --rate bytes a second, appending them byte for byte
  to --output (the log store) when the task succeeds. `--drop-chunks N` makes the first N
  tasks fail every attempt: after --retry-limit retries they are dropped
  (retries_failed_total +1, dropped_records_total + their records, flb_engine.c:731-760);
- the HTTP server (loopback, an ephemeral port unless --http-port): `/api/v1/storage`, the
  JSON of src/flb_storage.c, rebuilt every --storage-refresh seconds (Fluent Bit: 5),
  `/api/v2/metrics`, the cmetrics text encoding, rebuilt every second.

The config file Fluent Bit would run with (`--config`, classic, or YAML with
--config-format yaml) is written once the port is known, so drainhook finds everything from
it as it would on an instance. The process calls itself `fluent-bit`.
"""

import argparse
import glob
import http.server
import json
import os
import signal
import sqlite3
import struct
import sys
import threading
import time
import zlib

CHUNK_PREALLOC = 262144  # FLB_INPUT_CHUNK_SIZE
CHUNK_MAX = 2048000  # FLB_INPUT_CHUNK_FS_MAX_SIZE

SCHEMA = ("CREATE TABLE IF NOT EXISTS in_tail_files ("
          "  id      INTEGER PRIMARY KEY,"
          "  name    TEXT NOT NULL,"
          "  offset  INTEGER,"
          "  inode   INTEGER,"
          "  created INTEGER,"
          "  rotated INTEGER DEFAULT 0,"
          "  offset_marker INTEGER DEFAULT 0,"
          "  offset_marker_size INTEGER DEFAULT 0"
          ");")


def set_comm(name):
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


# -- msgpack, just what a log record needs -----------------------------------------------

def mp_str(b):
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def record(line, now):
    """[[EventTime, {}], {"log": line}] (Fluent Bit 2.x+ log event)."""
    sec = int(now)
    nsec = int((now - sec) * 1e9)
    ts = b"\xd7\x00" + struct.pack(">II", sec, nsec)
    return b"\x92\x92" + ts + b"\x80" + b"\x81" + mp_str(b"log") + mp_str(line.rstrip(b"\n"))


# -- chunks -------------------------------------------------------------------------------

class Chunk:
    seq = 0

    def __init__(self, sim, stream):
        now = time.time()
        Chunk.seq += 1
        # flb_input_chunk.c generate_chunk_name: "%i-%lu.%4lu.flb" (pid, sec, nsec)
        self.name = "%d-%d.%4d.flb" % (os.getpid(), int(now), (int((now % 1) * 1e9) + Chunk.seq) % 10**9)
        self.lines = []
        self.content = bytearray()
        self.busy = False
        self.attempts = 0
        self.next_try = 0.0
        self.path = None
        self.fd = None
        if sim.a.storage_type == "filesystem":
            d = os.path.join(sim.a.storage_path, stream)
            os.makedirs(d, exist_ok=True)
            self.path = os.path.join(d, self.name)
            tag = b"tail.0"
            meta = b"\xf1\x77\x00\x00" + tag
            self.meta_len = len(meta)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(self.fd, CHUNK_PREALLOC)
            head = b"\xc1\x00" + b"\x00" * 8 + struct.pack(">I", 0) + b"\x00" * 8 + struct.pack(">H", len(meta))
            os.pwrite(self.fd, head + meta, 0)

    def append(self, lines, now):
        data = b"".join(record(l, now) for l in lines)
        self.lines.extend(lines)
        self.content += data
        if self.fd is not None:
            start = 24 + self.meta_len
            need = start + len(self.content)
            size = os.fstat(self.fd).st_size
            if need > size:
                while size < need:
                    size *= 2
                os.ftruncate(self.fd, size)
            os.pwrite(self.fd, data, start + len(self.content) - len(data))
            # the content length, then its CRC32 (cio_file_st.h: bytes 10-13, 2-5)
            os.pwrite(self.fd, struct.pack(">I", len(self.content)), 10)
            os.pwrite(self.fd, struct.pack(">I", zlib.crc32(bytes(self.content))), 2)

    def line_bytes(self):
        return sum(len(l) for l in self.lines)

    def destroy(self):
        if self.fd is not None:
            os.close(self.fd)
            os.unlink(self.path)
            self.fd = None


# -- the tail input -----------------------------------------------------------------------

class TailFile:
    def __init__(self, path, st, db_id):
        self.name = path
        self.inode = st.st_ino
        self.fd = open(path, "rb")
        self.offset = 0
        self.db_id = db_id
        self.rotated = 0.0


class Sim:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.files = {}  # inode -> TailFile
        self.chunks = []  # every live chunk, oldest first
        self.open_chunk = None
        self.last_flush = time.time()
        self.counters = {"proc_records": 0, "proc_bytes": 0, "dropped_records": 0, "retries": 0,
                         "retries_failed": 0, "retried_records": 0, "errors": 0, "drop_bytes": 0,
                         "input_records": 0, "input_bytes": 0}
        self.to_drop = a.drop_chunks
        self.credit = 0.0
        self.started = time.time()
        self.db = None
        if a.db:
            os.makedirs(os.path.dirname(os.path.abspath(a.db)), exist_ok=True)
            self.db = sqlite3.connect(a.db, isolation_level=None, check_same_thread=False)
            self.db.execute(SCHEMA)
            self.db.execute("PRAGMA journal_mode=%s" % a.journal_mode)
            if a.db_locking:
                self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
                self.db.execute("SELECT count(*) FROM in_tail_files").fetchall()
                self.db.execute("BEGIN EXCLUSIVE")
                self.db.execute("COMMIT")
        self.out = open(a.output, "ab") if a.output else None
        self.storage_json = "{}"
        self.metrics_text = ""
        self.refresh_storage()
        self.refresh_metrics()

    # -- DB (tail_db.c) --
    def db_file_set(self, f, st):
        """tail_db.c flb_tail_db_file_set: the row of this inode if there is one (its offset
        is where reading resumes), else a new row."""
        if not self.db:
            return 0
        row = self.db.execute("SELECT id, offset FROM in_tail_files WHERE inode=? ORDER BY id DESC",
                              (st.st_ino,)).fetchone()
        if row:
            f.offset = row[1] or 0
            return row[0]
        cur = self.db.execute("INSERT INTO in_tail_files (name, offset, inode, created) VALUES (?, 0, ?, ?)",
                              (f.name, st.st_ino, int(time.time())))
        return cur.lastrowid

    def db_offset(self, f):
        if self.db:
            self.db.execute("UPDATE in_tail_files SET offset=? WHERE id=?", (f.offset, f.db_id))

    def db_rotate(self, f):
        if self.db:
            self.db.execute("UPDATE in_tail_files SET name=?, rotated=1 WHERE id=?", (f.name, f.db_id))

    def db_delete(self, f):
        if self.db:
            self.db.execute("DELETE FROM in_tail_files WHERE id=?", (f.db_id,))

    # -- scanning and reading --
    def scan(self):
        for pattern in self.a.paths:
            for path in sorted(os.path.abspath(p) for p in glob.glob(pattern)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if st.st_ino in self.files:
                    continue
                try:
                    f = TailFile(path, st, 0)
                except OSError:
                    continue
                f.db_id = self.db_file_set(f, st)
                self.files[st.st_ino] = f
        for f in list(self.files.values()):
            try:
                real = os.readlink("/proc/self/fd/%d" % f.fd.fileno())
            except OSError:
                continue
            if real.endswith(" (deleted)"):
                continue
            if real != f.name:
                f.name = real
                if not f.rotated:
                    f.rotated = time.time()
                self.db_rotate(f)

    def read(self, budget):
        now = time.time()
        for f in list(self.files.values()):
            if budget <= 0:
                break
            size = os.fstat(f.fd.fileno()).st_size
            if size < f.offset:
                f.offset = 0  # truncated
            f.fd.seek(f.offset)
            data = f.fd.read(min(budget, max(size - f.offset, 0)))
            cut = data.rfind(b"\n") + 1
            if cut:
                lines = data[:cut].splitlines(keepends=True)
                self.append(lines, now)
                f.offset += cut
                budget -= cut
                self.db_offset(f)  # on read: the lines are in a chunk now
            elif f.rotated and now - f.rotated > self.a.rotate_wait and f.offset >= size:
                f.fd.close()
                self.db_delete(f)
                del self.files[f.inode]

    def append(self, lines, now):
        with self.lock:
            self.counters["input_records"] += len(lines)
            self.counters["input_bytes"] += sum(len(l) for l in lines)
            for l in lines:
                c = self.open_chunk
                if c is None or c.busy or len(c.content) >= CHUNK_MAX:
                    c = self.open_chunk = Chunk(self, "tail.0")
                    self.chunks.append(c)
                c.append([l], now)

    # -- engine and output --
    def flush(self, now):
        if now - self.last_flush < self.a.flush:
            return
        self.last_flush = now
        with self.lock:
            for c in self.chunks:
                if c.lines and not c.busy:
                    c.busy = True
            self.open_chunk = None

    def deliver(self, dt):
        now = time.time()
        # The output's pace: credit accrues at --rate; a task goes out whole once the credit
        # covers its lines (so a big chunk takes its size / rate), and an idle output does
        # not save up more than a moment's worth.
        self.credit += self.a.rate * dt
        while True:
            with self.lock:
                tasks = [c for c in self.chunks if c.busy and c.next_try <= now]
            if not tasks:
                self.credit = min(self.credit, self.a.rate * 0.1)
                return
            c = tasks[0]
            if self.to_drop > 0:
                # The output fails this chunk every time: retried, then given up.
                c.attempts += 1
                with self.lock:
                    if c.attempts > self.a.retry_limit:
                        self.to_drop -= 1
                        self.counters["retries_failed"] += 1
                        self.counters["dropped_records"] += len(c.lines)
                        self.counters["drop_bytes"] += len(c.content)
                        self.chunks.remove(c)
                        c.destroy()
                    else:
                        self.counters["retries"] += 1
                        self.counters["retried_records"] += len(c.lines)
                        c.next_try = now + self.a.retry_wait
                continue
            need = c.line_bytes()
            if self.credit < need:
                self.credit = min(self.credit, need)
                return
            self.credit -= need
            if self.out:
                self.out.write(b"".join(c.lines))
                self.out.flush()
            with self.lock:
                self.counters["proc_records"] += len(c.lines)
                self.counters["proc_bytes"] += len(c.content)
                self.chunks.remove(c)
                c.destroy()

    # -- what the HTTP server shows --
    def refresh_storage(self):
        with self.lock:
            n = len(self.chunks)
            busy = [c for c in self.chunks if c.busy]
            fs = n if self.a.storage_type == "filesystem" else 0
            mem_size = sum(len(c.content) for c in self.chunks)
            self.storage_json = json.dumps({
                "storage_layer": {"chunks": {"total_chunks": n, "mem_chunks": n - fs, "fs_chunks": fs,
                                             "fs_chunks_up": fs, "fs_chunks_down": 0}},
                "input_chunks": {"tail.0": {
                    "status": {"overlimit": False, "mem_size": human(mem_size), "mem_limit": "0b"},
                    "chunks": {"total": n, "up": n, "down": 0, "busy": len(busy),
                               "busy_size": human(sum(len(c.content) for c in busy))}}},
            }, separators=(",", ":"))

    def refresh_metrics(self):
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%09dZ" % int((now % 1) * 1e9)
        with self.lock:
            c = dict(self.counters)
        out = "http.0"
        lines = [
            ("fluentbit_uptime", 'hostname="sim"', int(now - self.started)),
            ("fluentbit_input_bytes_total", 'name="tail.0"', c["input_bytes"]),
            ("fluentbit_input_records_total", 'name="tail.0"', c["input_records"]),
            ("fluentbit_output_proc_records_total", 'name="%s"' % out, c["proc_records"]),
            ("fluentbit_output_proc_bytes_total", 'name="%s"' % out, c["proc_bytes"]),
            ("fluentbit_output_errors_total", 'name="%s"' % out, c["errors"]),
            ("fluentbit_output_retries_total", 'name="%s"' % out, c["retries"]),
            ("fluentbit_output_retries_failed_total", 'name="%s"' % out, c["retries_failed"]),
            ("fluentbit_output_dropped_records_total", 'name="%s"' % out, c["dropped_records"]),
            ("fluentbit_output_retried_records_total", 'name="%s"' % out, c["retried_records"]),
            ("fluentbit_routing_logs_drop_bytes_total", 'input="tail.0",output="%s"' % out, c["drop_bytes"]),
        ]
        text = "".join("%s %s{%s} = %d\n" % (ts, n, l, v) for n, l, v in lines)
        with self.lock:
            self.metrics_text = text

    def pending(self):
        with self.lock:
            return len(self.chunks)

    def close(self):
        if self.db:
            self.db.close()
        if self.out:
            self.out.close()


def human(n):
    for unit in ("b", "K", "M", "G"):
        if n < 1024:
            return ("%d%s" if unit == "b" else "%.1f%s") % (n, unit)
        n /= 1024.0
    return "%.1fT" % n


class Handler(http.server.BaseHTTPRequestHandler):
    sim = None

    def do_GET(self):
        s = Handler.sim
        if self.path == "/api/v1/storage" and s.a.storage_metrics:
            body, ctype = s.storage_json.encode(), "application/json"
        elif self.path == "/api/v2/metrics":
            body, ctype = s.metrics_text.encode(), "text/plain"
        elif self.path == "/api/v1/health":
            body, ctype = b"ok\n", "text/plain"
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def write_config(a, port):
    """The config Fluent Bit would run with, in the chosen format, written atomically."""
    paths = ",".join(a.paths)
    http_on = port is not None
    if a.config_format == "yaml":
        svc = ["service:", "  flush: %s" % a.flush, "  http_server: %s" % ("on" if http_on else "off")]
        if http_on:
            svc += ["  http_listen: 127.0.0.1", "  http_port: %d" % port]
        if a.storage_path:
            svc.append("  storage.path: %s" % a.storage_path)
        svc.append("  storage.metrics: %s" % ("on" if a.storage_metrics else "off"))
        inp = ["pipeline:", "  inputs:", "    - name: tail", "      path: %s" % paths]
        if a.db:
            inp.append("      db: %s" % a.db)
        if a.db_locking:
            inp.append("      db.locking: true")
        inp.append("      storage.type: %s" % a.storage_type)
        inp += ["  outputs:", "    - name: http", "      match: '*'"]
        text = "\n".join(svc + inp) + "\n"
    else:
        svc = ["[SERVICE]", "    Flush        %s" % a.flush, "    HTTP_Server  %s" % ("On" if http_on else "Off")]
        if http_on:
            svc += ["    HTTP_Listen  127.0.0.1", "    HTTP_Port    %d" % port]
        if a.storage_path:
            svc.append("    storage.path %s" % a.storage_path)
        svc.append("    storage.metrics %s" % ("on" if a.storage_metrics else "off"))
        inp = ["", "[INPUT]", "    Name         tail", "    Path         %s" % paths]
        if a.db:
            inp.append("    DB           %s" % a.db)
        if a.db_locking:
            inp.append("    DB.locking   true")
        inp.append("    storage.type %s" % a.storage_type)
        inp += ["", "[OUTPUT]", "    Name  http", "    Match *"]
        text = "\n".join(svc + inp) + "\n"
    tmp = a.config + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, a.config)


def cmd_ship(a):
    set_comm("fluent-bit")
    if a.storage_type == "filesystem" and not a.storage_path:
        sys.exit("--storage-type filesystem needs --storage-path")
    sim = Sim(a)
    port = None
    if a.http:
        Handler.sim = sim
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.http_port), Handler)
        srv.daemon_threads = True
        port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    if a.config:
        write_config(a, port)
    if a.pid_file:
        with open(a.pid_file, "w") as f:
            f.write(str(os.getpid()))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    tick = 0.02
    next_scan = 0.0
    next_storage = time.time() + a.storage_refresh
    next_metrics = time.time() + 1.0
    last = time.time()
    while not stop:
        now = time.time()
        if now >= next_scan:
            sim.scan()
            next_scan = now + a.scan_interval
        sim.read(int(a.read_rate * tick) + 1)
        sim.flush(now)
        sim.deliver(now - last)
        last = now
        if now >= next_storage:
            sim.refresh_storage()
            next_storage = now + a.storage_refresh
        if now >= next_metrics:
            sim.refresh_metrics()
            next_metrics = now + 1.0
        time.sleep(tick)
    sim.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ship", help="tail files into chunks and deliver them")
    s.add_argument("--config", help="write the Fluent Bit config describing this stand-in here")
    s.add_argument("--config-format", choices=["classic", "yaml"], default="classic")
    s.add_argument("--db", help="the tail input's DB (none: offsets in memory only)")
    s.add_argument("--journal-mode", default="WAL", help="DB.journal_mode")
    s.add_argument("--db-locking", action="store_true", help="DB.locking true")
    s.add_argument("--storage-path", help="[SERVICE] storage.path")
    s.add_argument("--storage-type", choices=["memory", "filesystem"], default="memory")
    s.add_argument("--no-storage-metrics", dest="storage_metrics", action="store_false")
    s.add_argument("--no-http", dest="http", action="store_false", help="HTTP_Server Off")
    s.add_argument("--http-port", type=int, default=0, help="0: an ephemeral port")
    s.add_argument("--storage-refresh", type=float, default=5.0,
                   help="seconds between rebuilds of /api/v1/storage (Fluent Bit: 5)")
    s.add_argument("--rate", type=float, default=1e6, help="bytes of lines the output delivers per second")
    s.add_argument("--read-rate", type=float, default=4e6, help="bytes the tail input reads per second")
    s.add_argument("--flush", type=float, default=1.0, help="[SERVICE] Flush, seconds")
    s.add_argument("--scan-interval", type=float, default=0.25, help="Refresh_Interval, seconds")
    s.add_argument("--rotate-wait", type=float, default=1.0, help="Rotate_Wait, seconds")
    s.add_argument("--drop-chunks", type=int, default=0, help="the first N chunks fail until dropped")
    s.add_argument("--retry-limit", type=int, default=1, help="Retry_Limit")
    s.add_argument("--retry-wait", type=float, default=0.2, help="seconds between retries")
    s.add_argument("--output", help="append every delivered line here (the log store)")
    s.add_argument("--pid-file")
    s.add_argument("paths", nargs="+", help="globs of files to tail")
    s.set_defaults(func=cmd_ship)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    sys.exit(main())
