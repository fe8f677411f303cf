#!/usr/bin/env python3
"""Checks the deployment files: cfn-lint on the CloudFormation template and on both
.ebextensions variants' resources (wrapped as a template with AWSEBAutoScalingGroup supplied),
and the same least-privilege actions in every instance policy of a variant as in its IAM
policy file: IMDS alone (the default) as infra/iam/drainhook-policy.json, the queue variant as
infra/iam/drainhook-policy-queue.json. Each action is allowed on its own resource only: the
lifecycle actions on the group's ARN, the queue actions on the queue's, SendMessage on the
dead-letter queue's, and "*" only for the Describe calls, for which Auto Scaling has no
resource-level scope (Service Authorization Reference for Amazon EC2 Auto Scaling).

  python lint_infra.py   (from the venv that has cfn-lint; exit 1 on any finding)
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml
from cfnlint.decode import cfn_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INFRA = os.path.join(ROOT, "infra")


def resolve(node, use_queue):
    """Takes the UseQueue branch of every Fn::If (both spellings) and drops AWS::NoValue."""
    if isinstance(node, dict):
        cond = node.get("Fn::If")
        if cond is not None and len(node) == 1:
            name, yes, no = cond
            assert name == "UseQueue", name
            return resolve(yes if use_queue else no, use_queue)
        if node == {"Ref": "AWS::NoValue"}:
            return None
        return {k: resolve(v, use_queue) for k, v in node.items()}
    if isinstance(node, list):
        return [x for x in (resolve(v, use_queue) for v in node) if x is not None]
    return node


def actions(policy_doc):
    out = set()
    for st in policy_doc["Statement"]:
        a = st["Action"]
        out.update([a] if isinstance(a, str) else a)
    return out


# Auto Scaling authorizes these on every resource only: the Service Authorization Reference
# for Amazon EC2 Auto Scaling lists no resource type for them
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2autoscaling.html).
NO_RESOURCE_LEVEL = {"autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeLifecycleHooks"}
LIFECYCLE = {"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"}
# The group's ARN, with the group's name as the template or Elastic Beanstalk names it.
GROUP_ARN = re.compile(r"^arn:(aws|\$\{AWS::Partition\}):autoscaling:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                       r"autoScalingGroup:\*:autoScalingGroupName/\$\{(AutoScalingGroupName|AWSEBAutoScalingGroup)\}$")
QUEUE_ARN = {"${Queue.Arn}", "${DrainhookQueue.Arn}"}
DLQ_ARN = {"${DeadLetterQueue.Arn}", "${DrainhookDeadLetterQueue.Arn}"}


def rendered(node):
    """A Resource as one string: Ref X -> ${X}, GetAtt X.Arn -> ${X.Arn}, Sub and Join spelled out."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            return "${%s}" % arg
        if fn == "Fn::GetAtt":
            return "${%s}" % ".".join(arg if isinstance(arg, list) else arg.split("."))
        if fn == "Fn::Sub" and isinstance(arg, str):
            return arg
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(rendered(p) for p in parts)
    return json.dumps(node)


def scope_problems(policy_doc):
    """Each action on its own resource: the group, the queue, the dead-letter queue, or "*"."""
    problems = []
    for st in policy_doc["Statement"]:
        acts = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        res = st["Resource"]
        for r in (res if isinstance(res, list) else [res]):
            r = rendered(r)
            for a in acts:
                if a in NO_RESOURCE_LEVEL:
                    ok = r == "*"
                elif a in LIFECYCLE:
                    ok = bool(GROUP_ARN.match(r))
                elif a == "sqs:SendMessage":
                    ok = r in DLQ_ARN
                elif a.startswith("sqs:"):
                    ok = r in QUEUE_ARN
                else:
                    ok = False
                if not ok:
                    problems.append("%s on %s" % (a, r))
    return problems


def wrapped(eb):
    """The .ebextensions resources as a template, with what Elastic Beanstalk supplies."""
    template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": dict(eb["Resources"])}
    template["Resources"]["AWSEBAutoScalingGroup"] = {
        "Type": "AWS::AutoScaling::AutoScalingGroup",
        "Properties": {"MinSize": "1", "MaxSize": "2", "LaunchConfigurationName": "eb-launch-config",
                       "AvailabilityZones": {"Fn::GetAZs": ""}},
    }
    return template


def main():
    failed = False
    cfn = os.path.join(INFRA, "cloudformation", "drainhook.yaml")
    variants = {}
    for folder in ("ebextensions", "ebextensions-queue"):
        with open(os.path.join(INFRA, folder, "00-drainhook-resources.config")) as f:
            variants[folder] = yaml.safe_load(f)
    to_lint = [(cfn, "cloudformation/drainhook.yaml")]
    temps = []
    for folder, eb in variants.items():
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as t:
            json.dump(wrapped(eb), t)
        temps.append(t.name)
        to_lint.append((t.name, "%s resources" % folder))
    cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    for path, label in to_lint:
        r = subprocess.run([cfn_lint, path], capture_output=True, text=True)
        print("cfn-lint %s: %s" % (label, "ok" if r.returncode == 0 else "FAILED"))
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            failed = True
    for t in temps:
        os.unlink(t)

    cfn_t = json.loads(json.dumps(cfn_yaml.load(cfn)))
    for use_queue, policy_file, folder in [(False, "drainhook-policy.json", "ebextensions"),
                                           (True, "drainhook-policy-queue.json", "ebextensions-queue")]:
        with open(os.path.join(INFRA, "iam", policy_file)) as f:
            want = actions(json.load(f))
        cfn_policy = resolve(cfn_t["Resources"]["InstancePolicy"]["Properties"]["PolicyDocument"], use_queue)
        for label, doc in [("cloudformation (Trigger=%s)" % ("queue" if use_queue else "imds"), cfn_policy),
                           (folder, variants[folder]["Resources"]["DrainhookInstancePolicy"]["Properties"]["PolicyDocument"])]:
            got = actions(doc)
            bad = scope_problems(doc)
            if bad:
                print("%s instance policy allows an action beyond its resource: %s" % (label, "; ".join(bad)))
                failed = True
            else:
                print("%s instance policy: every action on its own resource" % label)
            if got != want:
                print("%s instance policy differs from iam/%s: extra %s, missing %s"
                      % (label, policy_file, sorted(got - want), sorted(want - got)))
                failed = True
            else:
                print("%s instance policy: same actions as iam/%s" % (label, policy_file))
        if use_queue:
            # The hook's role may send to the queue it notifies, and nothing else.
            for label, role in [("cloudformation", cfn_t["Resources"]["HookRole"]),
                                (folder, variants[folder]["Resources"]["DrainhookHookRole"])]:
                for pol in role["Properties"]["Policies"]:
                    for st in pol["PolicyDocument"]["Statement"]:
                        if rendered(st["Resource"]) not in QUEUE_ARN:
                            print("%s hook role: %s on %s" % (label, st["Action"], rendered(st["Resource"])))
                            failed = True
        if not use_queue and any(a.startswith("sqs:") for a in want):
            print("the IMDS-alone policy allows SQS calls")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
