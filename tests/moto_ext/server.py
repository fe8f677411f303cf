#!/usr/bin/env python3
"""moto's real server, with the lifecycle-hook behaviour moto 5.2.5 lacks, added the way AWS behaves.

  python server.py --host 127.0.0.1 --port 5000

moto 5.2.5 stores lifecycle hooks but ignores their notification target, sends no test
notification, removes instances at once on scale-in, answers the lifecycle-action calls
with HTTP 500 and keeps no scaling activities. This module adds:

- PutLifecycleHook keeps NotificationTargetARN/RoleARN/NotificationMetadata and sends
  `autoscaling:TEST_NOTIFICATION` to the target queue (and fails if the queue is missing);
- scale-in (SetDesiredCapacity, UpdateAutoScalingGroup, TerminateInstanceInAutoScalingGroup)
  on a group with a terminating hook puts the instance in `Terminating:Wait` and sends the
  AWS-format notification to the hook's queue;
- RecordLifecycleActionHeartbeat extends the wait by the hook's HeartbeatTimeout (never past
  the global timeout, min(48 h, 100 x HeartbeatTimeout));
- CompleteLifecycleAction (CONTINUE or ABANDON) or the timeout (DefaultResult) terminates
  the instance; an unknown token, instance, hook or group gets AWS's ValidationError text;
- DescribeScalingActivities lists the terminations.

With two or more termination hooks, an instance gets one action (token, notice) per hook and
leaves its group once all have ended, as in AWS.

Test-side additions, on routes under /_drainhook/ of the same server:

- an IMDSv2 stand-in per instance (GET /_drainhook/imds/<instance-id> starts it and answers
  {"endpoint": "http://127.0.0.1:PORT/"}): token PUT, then GETs with the token (401
  without); its autoscaling/target-lifecycle-state is derived from the emulator's state of the
  instance at each request (InService, then Terminated once the instance waits in
  Terminating:Wait or has left the group). POST to the same route sets life_cycle,
  spot_action, fault (500 or timeout for N seconds) and target_lifecycle_404;
- accounting (GET /_drainhook/stats, POST /_drainhook/stats/reset): requests by agent label
  (the `app/<label>` the SDK puts in User-Agent from AWS_SDK_UA_APP_ID), service and action;
  per lifecycle action the scale-in, heartbeats, completion (result, by whom) or expiry; and
  every SQS deletion with the instance its message was about and whether that instance's
  action was alive at that moment;
- an account-wide Auto Scaling rate limit (off unless set: POST /_drainhook/ratelimit with
  {"describe": 10, "lifecycle": 20} calls a second, each a token bucket of one second's
  burst, shared by every agent): Describe* calls and the lifecycle calls
  (RecordLifecycleActionHeartbeat, CompleteLifecycleAction) over the rate are answered as AWS
  does, HTTP 400 `Throttling` "Rate exceeded"; the stats count them per agent and action
  (`throttled`). Only agents' requests (an `app/<label>`) count: the test harness's own
  calls are neither limited nor take tokens.

moto is pinned (see the Makefile): these patches reach into its models.
"""

import argparse
import datetime
import http.server
import io
import json
import queue
import sys
import threading
import time
import urllib.parse
import uuid

import moto.autoscaling.models as asm
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.sqs.models import sqs_backends

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LOCK = threading.RLock()

# Accounting, read through /_drainhook/stats.
RECORDS = {}  # instance id -> its lifecycle action's history
EVER_IN_GROUP = {}  # instance id -> (group, region), for instances that were in one
REQUESTS = {}  # label -> service -> action -> count
DELETES = []  # {"t", "by", "instance", "alive"}
STATS_LOCK = threading.Lock()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def record_key(instance_id, hook, first):
    """RECORDS key of an action: the instance id for its group's first termination hook (the
    one the tests' agents hold for), "instance/hook" for any other."""
    return instance_id if first else "%s/%s" % (instance_id, hook.name)


class Action:
    def __init__(self, backend, group, state, hook, first=True):
        self.backend = backend
        self.group = group
        self.state = state
        self.hook = hook
        self.token = str(uuid.uuid4())
        self.instance_id = state.instance.id
        self.started = time.time()
        self.deadline = self.started + hook.heartbeat_timeout
        self.global_deadline = self.started + min(172800, 100 * hook.heartbeat_timeout)
        self.heartbeats = 0
        self.key = record_key(self.instance_id, hook, first)
        RECORDS[self.key] = {
            "group": group.name,
            "hook": hook.name,
            "scale_in_at": self.started,
            "heartbeats": [],
            "completed_at": None,
            "result": None,
            "completed_by": None,
            "expired_at": None,
        }
        EVER_IN_GROUP[self.instance_id] = (group.name, backend.region_name)


def backend_actions(backend):
    if not hasattr(backend, "_lifecycle_actions"):
        backend._lifecycle_actions = []
        backend._activities = []
    return backend._lifecycle_actions


def send_to_target(backend, hook, body, now=False):
    """Queues the notification for the dispatcher (`now`: sends it at once): AWS sends them asynchronously, and a
    scale-in of many instances must not hold the extension's lock while SQS wakes every
    waiting long poll for each message."""
    arn = getattr(hook, "_target", None)
    if not arn or ":sqs:" not in arn:
        return
    parts = arn.split(":")
    if now:
        sqs_backends[parts[4]][parts[3]].send_message(parts[5], json.dumps(body))
    else:
        OUTBOX.put((parts[4], parts[3], parts[5], json.dumps(body)))


OUTBOX = queue.Queue()


def dispatch_notifications():
    while True:
        account, region, name, body = OUTBOX.get()
        try:
            sqs_backends[account][region].send_message(name, body)
        except Exception as e:  # a queue deleted meanwhile: AWS drops it too
            print("notification to %s not sent: %s" % (name, e), file=sys.stderr)


def terminating_hooks(backend, group_name):
    return [
        h
        for h in backend.lifecycle_hooks.values()
        if h.auto_scaling_group_name == group_name and h.lifecycle_transition == TERMINATING
    ]


def begin_termination(backend, group, state):
    """The instance waits in Terminating:Wait for every terminating hook of its group, as in
    AWS: one lifecycle action (token, notice) per hook; it leaves once all have ended."""
    hooks = terminating_hooks(backend, group.name)
    if not hooks:
        return False
    state.lifecycle_state = "Terminating:Wait"
    for i, hook in enumerate(hooks):
        notify(backend, group, state, hook, i == 0)
    return True


def notify(backend, group, state, hook, first):
    action = Action(backend, group, state, hook, first)
    backend_actions(backend).append(action)
    body = {
        "Origin": "AutoScalingGroup",
        "LifecycleHookName": hook.name,
        "Destination": "EC2",
        "AccountId": backend.account_id,
        "RequestId": str(uuid.uuid4()),
        "LifecycleTransition": TERMINATING,
        "AutoScalingGroupName": group.name,
        "Service": "AWS Auto Scaling",
        "Time": now_iso(),
        "EC2InstanceId": action.instance_id,
        "LifecycleActionToken": action.token,
    }
    if getattr(hook, "_metadata", None):
        body["NotificationMetadata"] = hook._metadata
    send_to_target(backend, hook, body)


def finish(action, result, cause, by=None):
    """Terminates the instance once its action ends (both results terminate)."""
    backend, group = action.backend, action.group
    rec = RECORDS.get(action.key)
    if rec is not None:
        if by is None:
            rec["expired_at"] = time.time()
            rec["result"] = "%s (heartbeat timeout)" % result
        else:
            rec["completed_at"] = time.time()
            rec["result"] = result
            rec["completed_by"] = by
    backend_actions(backend).remove(action)
    if any(a.instance_id == action.instance_id for a in backend_actions(backend)):
        return  # another hook's action still holds the instance
    group.instance_states = [s for s in group.instance_states if s.instance.id != action.instance_id]
    backend.ec2_backend.terminate_instances([action.instance_id])
    backend._activities.append(
        {
            "ActivityId": str(uuid.uuid4()),
            "AutoScalingGroupName": group.name,
            "Description": "Terminating EC2 instance: %s" % action.instance_id,
            "Cause": "At %s %s (lifecycle action result %s)." % (now_iso(), cause, result),
            "StartTime": datetime.datetime.fromtimestamp(action.started, datetime.timezone.utc),
            "EndTime": datetime.datetime.now(datetime.timezone.utc),
            "StatusCode": "Successful",
            "Progress": 100,
            "Details": json.dumps({"InstanceId": action.instance_id, "LifecycleActionResult": result}),
        }
    )


def find_action(backend, group_name, hook_name, token, instance_id):
    for a in backend_actions(backend):
        if (
            a.group.name == group_name
            and a.hook.name == hook_name
            and (not token or a.token == token)
            and (not instance_id or a.instance_id == instance_id)
        ):
            return a
    if token:
        raise ValidationError("No active Lifecycle Action found with token %s" % token)
    raise ValidationError("No active Lifecycle Action found with instance ID %s" % instance_id)


# -- model patches ---------------------------------------------------------------------

_orig_set_desired = asm.FakeAutoScalingGroup.set_desired_capacity


def set_desired_capacity(self, new_capacity):
    backend = self.autoscaling_backend
    with LOCK:
        desired = self.min_size if new_capacity is None else new_capacity
        active = self.active_instances()
        if terminating_hooks(backend, self.name) and desired < len(active):
            self.desired_capacity = desired
            victims = [s for s in active if not s.protected_from_scale_in][: len(active) - desired]
            for s in victims:
                begin_termination(backend, self, s)
            return None
        return _orig_set_desired(self, new_capacity)


asm.FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity

_orig_terminate = asm.AutoScalingBackend.terminate_instance


def terminate_instance(self, instance_id, should_decrement):
    with LOCK:
        for group in self.autoscaling_groups.values():
            for s in group.instance_states:
                if s.instance.id == instance_id and terminating_hooks(self, group.name):
                    if s.lifecycle_state != "InService":
                        raise ValidationError("The instance %s is not in InService." % instance_id)
                    original = group.desired_capacity
                    if should_decrement:
                        group.desired_capacity -= 1
                    begin_termination(self, group, s)
                    return asm.TerminateInstanceActivity(s.instance, original)
        return _orig_terminate(self, instance_id, should_decrement)


asm.AutoScalingBackend.terminate_instance = terminate_instance


# -- API additions -----------------------------------------------------------------------

_orig_put_hook = AutoScalingResponse.put_lifecycle_hook


def put_lifecycle_hook(self):
    target = self._get_param("NotificationTargetARN")
    if target and ":sqs:" in target:
        parts = target.split(":")
        try:
            sqs_backends[parts[4]][parts[3]].get_queue(parts[5])
        except Exception:
            raise ValidationError(
                "Unable to publish test message to notification target %s using IAM role %s. "
                "Please check your target and role configuration and try to put lifecycle hook again."
                % (target, self._get_param("RoleARN"))
            )
    result = _orig_put_hook(self)
    backend = self.autoscaling_backend
    group_name = self._get_param("AutoScalingGroupName")
    hook = backend.lifecycle_hooks["%s_%s" % (group_name, self._get_param("LifecycleHookName"))]
    hook._target = target
    hook._metadata = self._get_param("NotificationMetadata")
    if target:
        hook.notification_target_arn = target
    if self._get_param("RoleARN"):
        hook.role_arn = self._get_param("RoleARN")
    group = backend.autoscaling_groups.get(group_name)
    send_to_target(
        backend,
        hook,
        {
            "AccountId": backend.account_id,
            "RequestId": str(uuid.uuid4()),
            "AutoScalingGroupARN": group.arn if group else "",
            "AutoScalingGroupName": group_name,
            "Service": "AWS Auto Scaling",
            "Event": "autoscaling:TEST_NOTIFICATION",
            "Time": now_iso(),
        },
        now=True,
    )
    return result


def requested_action(resp):
    """The action a heartbeat or complete request names (token or instance id). One whose
    deadline has passed has expired, whether or not the sweep has run yet (it runs every
    0.2 s): a request that comes late gets AWS's answer for it, never a reprieve."""
    a = find_action(
        resp.autoscaling_backend,
        resp._get_param("AutoScalingGroupName"),
        resp._get_param("LifecycleHookName"),
        resp._get_param("LifecycleActionToken"),
        resp._get_param("InstanceId"),
    )
    if time.time() >= min(a.deadline, a.global_deadline):
        finish(a, a.hook.default_result, "the lifecycle action timed out")
        token = resp._get_param("LifecycleActionToken")
        if token:
            raise ValidationError("No active Lifecycle Action found with token %s" % token)
        raise ValidationError("No active Lifecycle Action found with instance ID %s" % a.instance_id)
    return a


def record_lifecycle_action_heartbeat(self):
    with LOCK:
        a = requested_action(self)
        a.deadline = min(time.time() + a.hook.heartbeat_timeout, a.global_deadline)
        a.heartbeats += 1
        rec = RECORDS.get(a.key)
        if rec is not None:
            rec["heartbeats"].append([time.time(), agent_label(self.headers)])
    return EmptyResult()


def complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError("Valid values for LifecycleActionResult are CONTINUE and ABANDON")
    with LOCK:
        a = requested_action(self)
        finish(a, result, "a user completed the lifecycle action", by=agent_label(self.headers))
    return EmptyResult()


def describe_scaling_activities(self):
    backend = self.autoscaling_backend
    backend_actions(backend)
    group = self._get_param("AutoScalingGroupName")
    acts = [a for a in reversed(backend._activities) if not group or a["AutoScalingGroupName"] == group]
    return ActionResult({"Activities": acts})


AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook
AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat
AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
AutoScalingResponse.describe_scaling_activities = describe_scaling_activities


def expire_actions():
    """A hook that is neither completed nor heartbeated ends with its DefaultResult."""
    while True:
        time.sleep(0.2)
        with LOCK:
            for account in asm.autoscaling_backends.values():
                for backend in account.values():
                    for a in list(getattr(backend, "_lifecycle_actions", [])):
                        if time.time() >= min(a.deadline, a.global_deadline):
                            finish(a, a.hook.default_result, "the lifecycle action timed out")



# -- account-wide rate limit -----------------------------------------------------------------


class Bucket:
    """A token bucket: `rate` tokens a second, at most `rate` (one second's burst) banked."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.tokens = self.rate
        self.at = time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


LIMITS = {}  # "describe" | "lifecycle" -> Bucket
LIMITS_LOCK = threading.Lock()
THROTTLED = {}  # label -> action -> count
LIFECYCLE_CALLS = ("RecordLifecycleActionHeartbeat", "CompleteLifecycleAction")


def rate_class(action):
    if action.startswith("Describe"):
        return "describe"
    if action in LIFECYCLE_CALLS:
        return "lifecycle"
    return None


def throttled(label, action):
    """Whether this agent request is over the account's rate (and counts it if so)."""
    kind = rate_class(action)
    with LIMITS_LOCK:
        bucket = LIMITS.get(kind) if kind else None
        if bucket is None or bucket.take():
            return False
        per = THROTTLED.setdefault(label, {})
        per[action] = per.get(action, 0) + 1
        return True


def limits_snapshot():
    with LIMITS_LOCK:
        return {k: dict(v) for k, v in THROTTLED.items()}, {k: b.rate for k, b in LIMITS.items()}


def throttle_answer(start_response):
    body = ('<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
            "<RequestId>%s</RequestId></ErrorResponse>" % uuid.uuid4()).encode()
    start_response("400 Bad Request", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


# -- accounting ---------------------------------------------------------------------------


def agent_label(headers):
    """The `app/<label>` the SDK adds to User-Agent from AWS_SDK_UA_APP_ID ('-' without)."""
    ua = headers.get("User-Agent", "") or ""
    amz = headers.get("X-Amz-User-Agent", "") or ""
    for part in (ua + " " + amz).split():
        if part.startswith("app/"):
            return part[4:]
    return "-"


def instance_of_body(body):
    """The EC2InstanceId a lifecycle message is about (direct, SNS-wrapped, EventBridge)."""
    try:
        v = json.loads(body)
        if isinstance(v, dict) and v.get("Type") == "Notification" and isinstance(v.get("Message"), str):
            v = json.loads(v["Message"])
        if isinstance(v, dict) and isinstance(v.get("detail"), dict):
            v = v["detail"]
        if isinstance(v, dict):
            return v.get("EC2InstanceId") or v.get("instance-id")
    except (ValueError, TypeError):
        pass
    return None


def action_alive(instance_id):
    with LOCK:
        for account in asm.autoscaling_backends.values():
            for backend in account.values():
                for a in getattr(backend, "_lifecycle_actions", []):
                    if a.instance_id == instance_id:
                        return True
    return False


def message_for_receipt(queue_url, receipt):
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    for account in sqs_backends.values():
        for backend in account.values():
            q = backend.queues.get(name)
            if q is None:
                continue
            for m in list(q._messages):
                if m.had_receipt_handle(receipt):
                    return m
    return None


def note_deletes(label, target, body):
    """Before moto deletes: which instance each deleted message was about, and whether its
    lifecycle action was alive at that moment."""
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        return
    url = req.get("QueueUrl", "")
    if target.endswith(".DeleteMessage"):
        receipts = [req.get("ReceiptHandle")]
    else:
        receipts = [e.get("ReceiptHandle") for e in req.get("Entries", []) if isinstance(e, dict)]
    now = time.time()
    for r in receipts:
        m = message_for_receipt(url, r) if r else None
        inst = instance_of_body(m.body) if m is not None else None
        with STATS_LOCK:
            DELETES.append(
                {"t": now, "by": label, "instance": inst, "alive": bool(inst) and action_alive(inst)}
            )


def service_of(environ):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    return "-"


def accounting(app):
    """WSGI middleware: counts requests by agent label, service and action, notes deletions,
    and serves the /_drainhook/ routes."""

    def wrapped(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_drainhook/"):
            return control(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service = service_of(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            action = target.rsplit(".", 1)[-1]
        else:
            action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", ["-"])[0]
        label = agent_label({"User-Agent": environ.get("HTTP_USER_AGENT", ""),
                             "X-Amz-User-Agent": environ.get("HTTP_X_AMZ_USER_AGENT", "")})
        with STATS_LOCK:
            per = REQUESTS.setdefault(label, {}).setdefault(service, {})
            per[action] = per.get(action, 0) + 1
        if service == "autoscaling" and label != "-" and throttled(label, action):
            return throttle_answer(start_response)
        if target.endswith(".DeleteMessage") or target.endswith(".DeleteMessageBatch"):
            note_deletes(label, target, body)
        return app(environ, start_response)

    return wrapped


def respond(start_response, status, obj):
    data = json.dumps(obj, default=str).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def control(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    parts = [p for p in path.split("/") if p][1:]  # after "_drainhook"
    if parts == ["stats"] and method == "GET":
        with STATS_LOCK:
            return respond(start_response, "200 OK", {
                "requests": REQUESTS, "actions": RECORDS, "deletes": DELETES,
                "imds": {i: s.stats() for i, s in IMDS.items()},
                "throttled": limits_snapshot()[0],
                "ratelimit": limits_snapshot()[1],
            })
    if parts == ["stats", "reset"] and method == "POST":
        with STATS_LOCK:
            REQUESTS.clear()
            DELETES.clear()
        with LIMITS_LOCK:
            THROTTLED.clear()
        return respond(start_response, "200 OK", {"reset": True})
    if parts == ["ratelimit"] and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            rates = json.loads(environ["wsgi.input"].read(length) or b"{}")
            new = {k: Bucket(v) for k, v in rates.items() if v and k in ("describe", "lifecycle")}
        except (ValueError, TypeError, AttributeError) as e:
            return respond(start_response, "400 Bad Request", {"error": str(e)})
        with LIMITS_LOCK:
            LIMITS.clear()
            LIMITS.update(new)
        return respond(start_response, "200 OK", {k: b.rate for k, b in new.items()})
    if len(parts) >= 2 and parts[0] == "imds":
        instance = parts[1]
        stand_in = imds_for(instance)
        if stand_in is None:
            return respond(start_response, "404 Not Found",
                           {"error": "instance %s is in no Auto Scaling group of the emulator" % instance})
        if len(parts) == 3 and parts[2] == "stats":
            return respond(start_response, "200 OK", stand_in.stats())
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                settings = json.loads(environ["wsgi.input"].read(length) or b"{}")
                stand_in.configure(settings)
            except (ValueError, TypeError, KeyError) as e:
                return respond(start_response, "400 Bad Request", {"error": str(e)})
        return respond(start_response, "200 OK", stand_in.describe())
    return respond(start_response, "404 Not Found", {"error": "no route %s %s" % (method, path)})


# -- IMDSv2 stand-in -----------------------------------------------------------------------

IMDS = {}  # instance id -> ImdsStandIn
IMDS_LOCK = threading.Lock()


def find_instance(instance_id):
    """(group, lifecycle state, region) of an instance in a group, else None. Read without
    the lock (lists are copied; the state is one attribute): a metadata service answers
    while Auto Scaling works."""
    for account in list(asm.autoscaling_backends.values()):
        for region, backend in list(account.items()):
            for g in list(backend.autoscaling_groups.values()):
                for st in list(g.instance_states):
                    if st.instance.id == instance_id:
                        return g.name, st.lifecycle_state, region
    return None


def target_lifecycle_state(instance_id):
    """What AWS publishes as the instance's *target* state."""
    found = find_instance(instance_id)
    if found is None:
        # It left its group: terminated (or detached, which the tests never do).
        return "Terminated" if instance_id in EVER_IN_GROUP else None
    state = found[1]
    if state.startswith("Terminating"):
        return "Terminated"
    if state.startswith("Warmed:Terminating"):
        return "Warmed:Terminated"
    if state in ("Standby", "Detached"):
        return state
    return "InService"  # InService, Pending, Pending:Wait, Pending:Proceed


class ImdsStandIn:
    """One instance's metadata service on its own loopback port."""

    def __init__(self, instance_id, region):
        self.instance_id = instance_id
        self.region = region
        self.life_cycle = "on-demand"
        self.spot_action = None
        self.fault = None  # (mode, until)
        self.lifecycle_404 = False
        self.tokens = set()
        self.requests = 0
        self.by_path = {}
        self.lock = threading.Lock()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_PUT(self):
                stand_in.serve(self, "PUT")

            def do_GET(self):
                stand_in.serve(self, "GET")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = "http://127.0.0.1:%d/" % self.server.server_address[1]

    def describe(self):
        with self.lock:
            fault = None
            if self.fault and time.time() < self.fault[1]:
                fault = {"mode": self.fault[0], "seconds_left": round(self.fault[1] - time.time(), 1)}
            return {"endpoint": self.endpoint, "instance_id": self.instance_id, "life_cycle": self.life_cycle,
                    "spot_action": self.spot_action, "fault": fault, "target_lifecycle_404": self.lifecycle_404}

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "by_path": dict(self.by_path)}

    def configure(self, settings):
        with self.lock:
            if "life_cycle" in settings:
                self.life_cycle = str(settings["life_cycle"])
            if "spot_action" in settings:
                self.spot_action = settings["spot_action"]
            if "target_lifecycle_404" in settings:
                self.lifecycle_404 = bool(settings["target_lifecycle_404"])
            if "fault" in settings:
                f = settings["fault"]
                if not f or f.get("mode") in (None, "none"):
                    self.fault = None
                else:
                    if f["mode"] not in ("500", "timeout"):
                        raise ValueError("fault mode must be 500, timeout or none")
                    self.fault = (f["mode"], time.time() + float(f.get("seconds", 10)))

    def serve(self, h, method):
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1
            fault = self.fault if self.fault and time.time() < self.fault[1] else None
        if fault and fault[0] == "timeout":
            # Accept, never answer: the client's own timeout must end the wait.
            time.sleep(max(0.0, min(fault[1] - time.time(), 30.0)))
            h.close_connection = True
            return
        if fault:
            return self.answer(h, 500, "")
        if method == "PUT":
            if path != "/latest/api/token":
                return self.answer(h, 403, "")
            ttl = h.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.answer(h, 400, "")
            token = uuid.uuid4().hex
            with self.lock:
                self.tokens.add(token)
            return self.answer(h, 200, token, {"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if h.headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            return self.answer(h, 401, "")
        meta = "/latest/meta-data/"
        item = path[len(meta):] if path.startswith(meta) else None
        if item == "instance-id":
            return self.answer(h, 200, self.instance_id)
        if item == "placement/region":
            return self.answer(h, 200, self.region)
        if item == "placement/availability-zone":
            return self.answer(h, 200, self.region + "a")
        if item == "instance-life-cycle":
            return self.answer(h, 200, self.life_cycle)
        if item == "autoscaling/target-lifecycle-state":
            state = None if self.lifecycle_404 else target_lifecycle_state(self.instance_id)
            return self.answer(h, 200, state) if state else self.answer(h, 404, "")
        if item == "spot/instance-action":
            with self.lock:
                spot = self.spot_action
            return self.answer(h, 200, json.dumps(spot)) if spot else self.answer(h, 404, "")
        return self.answer(h, 404, "")

    @staticmethod
    def answer(h, status, body, headers=None):
        data = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


def imds_for(instance_id):
    with IMDS_LOCK:
        if instance_id in IMDS:
            return IMDS[instance_id]
        found = find_instance(instance_id)
        if found is not None:
            region = found[2]
        elif instance_id in EVER_IN_GROUP:
            region = EVER_IN_GROUP[instance_id][1]
        else:
            return None
        IMDS[instance_id] = ImdsStandIn(instance_id, region)
        return IMDS[instance_id]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    a = p.parse_args()
    threading.Thread(target=expire_actions, daemon=True).start()
    threading.Thread(target=dispatch_notifications, daemon=True).start()
    from moto.moto_server import werkzeug_app
    from moto.server import main as moto_main

    # Count and route every request before moto sees it.
    dispatch = werkzeug_app.DomainDispatcherApplication.__call__

    def call(self, environ, start_response):
        return accounting(lambda e, s: dispatch(self, e, s))(environ, start_response)

    werkzeug_app.DomainDispatcherApplication.__call__ = call

    moto_main(["-H", a.host, "-p", str(a.port)])


if __name__ == "__main__":
    main()
