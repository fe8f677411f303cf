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

moto is pinned (see the Makefile): these patches reach into its models.
"""

import argparse
import datetime
import json
import threading
import time
import uuid

import moto.autoscaling.models as asm
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.sqs.models import sqs_backends

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
LOCK = threading.RLock()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Action:
    def __init__(self, backend, group, state, hook):
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


def backend_actions(backend):
    if not hasattr(backend, "_lifecycle_actions"):
        backend._lifecycle_actions = []
        backend._activities = []
    return backend._lifecycle_actions


def send_to_target(backend, hook, body):
    arn = getattr(hook, "_target", None)
    if not arn or ":sqs:" not in arn:
        return
    parts = arn.split(":")
    region, account, name = parts[3], parts[4], parts[5]
    sqs_backends[account][region].send_message(name, json.dumps(body))


def terminating_hooks(backend, group_name):
    return [
        h
        for h in backend.lifecycle_hooks.values()
        if h.auto_scaling_group_name == group_name and h.lifecycle_transition == TERMINATING
    ]


def begin_termination(backend, group, state):
    """The instance waits in Terminating:Wait for the first terminating hook."""
    hooks = terminating_hooks(backend, group.name)
    if not hooks:
        return False
    hook = hooks[0]
    state.lifecycle_state = "Terminating:Wait"
    action = Action(backend, group, state, hook)
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
    return True


def finish(action, result, cause):
    """Terminates the instance once its action ends (both results terminate)."""
    backend, group = action.backend, action.group
    backend_actions(backend).remove(action)
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
    )
    return result


def requested_action(resp):
    """The action a heartbeat or complete request names (token or instance id)."""
    return find_action(
        resp.autoscaling_backend,
        resp._get_param("AutoScalingGroupName"),
        resp._get_param("LifecycleHookName"),
        resp._get_param("LifecycleActionToken"),
        resp._get_param("InstanceId"),
    )


def record_lifecycle_action_heartbeat(self):
    with LOCK:
        a = requested_action(self)
        a.deadline = min(time.time() + a.hook.heartbeat_timeout, a.global_deadline)
        a.heartbeats += 1
    return EmptyResult()


def complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError("Valid values for LifecycleActionResult are CONTINUE and ABANDON")
    with LOCK:
        a = requested_action(self)
        finish(a, result, "a user completed the lifecycle action")
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    a = p.parse_args()
    threading.Thread(target=expire_actions, daemon=True).start()
    from moto.server import main as moto_main

    moto_main(["-H", a.host, "-p", str(a.port)])


if __name__ == "__main__":
    main()
