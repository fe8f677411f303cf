#!/usr/bin/env python3
"""A fault-injecting HTTP proxy between the agent and the AWS emulator (tests only).

  proxy.py --upstream http://127.0.0.1:5000      (prints "listening on http://127.0.0.1:PORT")

The agent's AWS_ENDPOINT_URL points here; every request is forwarded to --upstream unless a
rule says otherwise. Rules are set with POST /_faults (a JSON list; replaces the rules),
read with GET /_faults (rules with their hit counts), cleared with DELETE /_faults. A rule:

  {"service": "sqs" | "autoscaling" | "*",      # from the request's SigV4 credential scope
   "action": "RecordLifecycleActionHeartbeat" | "*",   # X-Amz-Target (SQS) or Action= (Query)
   "mode": "500" | "throttle" | "reset" | "latency" | "hang",
   "start": EPOCH_SECONDS, "end": EPOCH_SECONDS,  # optional window (absolute wall-clock time)
   "probability": 0.3,                          # optional, default 1
   "count": 5,                                  # optional: at most this many faults
   "seconds": 3}                                # latency mode: delay before forwarding;
                                                # hang mode: how long to hold the request
                                                # without an answer (default: until the
                                                # window's end), then close the connection

Faults look as AWS's own: Auto Scaling speaks the Query protocol (XML ErrorResponse, HTTP 500
InternalFailure or HTTP 400 Throttling); SQS speaks AWS JSON 1.0 in query-compatible mode, as
the SDK reads it (`__type` and the `x-amzn-query-error` header: InternalError, or
RequestThrottled for throttling). "reset" closes the connection without an answer (RST); "hang" accepts the request and says
nothing (a service that hangs), then closes the connection.
"""

import argparse
import http.client
import http.server
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
import uuid

RULES = []
LOCK = threading.Lock()


def service_of(headers):
    auth = headers.get("Authorization", "")
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    return "-"


def action_of(headers, body):
    target = headers.get("X-Amz-Target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    return urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", ["-"])[0]


def matching_rule(service, action):
    now = time.time()
    with LOCK:
        for r in RULES:
            if r.get("service", "*") not in ("*", service):
                continue
            if r.get("action", "*") not in ("*", action):
                continue
            if now < r.get("start", 0) or now >= r.get("end", float("inf")):
                continue
            if "count" in r and r["hits"] >= r["count"]:
                continue
            if random.random() >= r.get("probability", 1.0):
                continue
            r["hits"] += 1
            return dict(r)
    return None


def query_error(status, kind, code, message):
    body = ('<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            "<Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error>"
            "<RequestId>%s</RequestId></ErrorResponse>" % (kind, code, message, uuid.uuid4()))
    return status, {"Content-Type": "text/xml"}, body.encode()


def sqs_error(status, kind, typ, query_code, message):
    body = json.dumps({"__type": "com.amazonaws.sqs#%s" % typ, "message": message})
    return status, {"Content-Type": "application/x-amz-json-1.0",
                    "x-amzn-query-error": "%s;%s" % (query_code, kind),
                    "x-amzn-RequestId": str(uuid.uuid4())}, body.encode()


def fault_answer(mode, service):
    if mode == "500":
        if service == "sqs":
            return sqs_error(500, "Receiver", "InternalError", "InternalError", "We encountered an internal error.")
        return query_error(500, "Receiver", "InternalFailure", "An internal error occurred.")
    if mode == "throttle":
        if service == "sqs":
            return sqs_error(400, "Sender", "ThrottlingException", "RequestThrottled", "Rate exceeded")
        return query_error(400, "Sender", "Throttling", "Rate exceeded")
    raise ValueError(mode)


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *args):
        pass

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def control(self, body):
        global RULES
        if self.command == "POST":
            rules = json.loads(body or b"[]")
            for r in rules:
                if r.get("mode") not in ("500", "throttle", "reset", "latency", "hang"):
                    return self.reply(400, {}, b"bad mode")
                r["hits"] = 0
            with LOCK:
                RULES = rules
        elif self.command == "DELETE":
            with LOCK:
                RULES = []
        with LOCK:
            data = json.dumps(RULES).encode()
        self.reply(200, {"Content-Type": "application/json"}, data)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_faults"):
            return self.control(body)
        service = service_of(self.headers)
        action = action_of(self.headers, body)
        rule = matching_rule(service, action)
        if rule:
            mode = rule["mode"]
            if mode == "reset":
                # RST: no answer at all.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if mode == "hang":
                until = time.time() + float(rule.get("seconds", max(0.0, rule.get("end", time.time() + 30) - time.time())))
                while time.time() < until:
                    time.sleep(0.2)
                self.close_connection = True
                self.connection.close()
                return
            if mode == "latency":
                time.sleep(float(rule.get("seconds", 1)))
            else:
                return self.reply(*fault_answer(mode, service))
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return self.reply(502, {}, str(e).encode())
        finally:
            conn.close()
        out = {k: v for k, v in resp.getheaders()
               if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive")}
        self.reply(resp.status, out, data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    Proxy.upstream = urllib.parse.urlparse(a.upstream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Proxy)
    server.daemon_threads = True
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
