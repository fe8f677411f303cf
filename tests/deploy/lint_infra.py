#!/usr/bin/env python3
"""Checks the deployment files: cfn-lint on the CloudFormation template and on the
.ebextensions resources (wrapped as a template with AWSEBAutoScalingGroup supplied), and
the same least-privilege actions in every instance policy as in infra/iam/drainhook-policy.json.

  python lint_infra.py   (from the venv that has cfn-lint; exit 1 on any finding)
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml
from cfnlint.decode import cfn_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INFRA = os.path.join(ROOT, "infra")


def actions(policy_doc):
    out = set()
    for st in policy_doc["Statement"]:
        a = st["Action"]
        out.update([a] if isinstance(a, str) else a)
    return out


def main():
    failed = False
    cfn = os.path.join(INFRA, "cloudformation", "drainhook.yaml")
    with open(os.path.join(INFRA, "ebextensions", "00-drainhook-resources.config")) as f:
        eb = yaml.safe_load(f)
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": dict(eb["Resources"]),
    }
    # What Elastic Beanstalk supplies to .ebextensions resources.
    template["Resources"]["AWSEBAutoScalingGroup"] = {
        "Type": "AWS::AutoScaling::AutoScalingGroup",
        "Properties": {"MinSize": "1", "MaxSize": "2", "LaunchConfigurationName": "eb-launch-config",
                       "AvailabilityZones": {"Fn::GetAZs": ""}},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as t:
        json.dump(template, t)
    for path, label in [(cfn, "cloudformation/drainhook.yaml"), (t.name, "ebextensions resources")]:
        cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
        r = subprocess.run([cfn_lint, path], capture_output=True, text=True)
        print("cfn-lint %s: %s" % (label, "ok" if r.returncode == 0 else "FAILED"))
        if r.returncode != 0:
            print(r.stdout + r.stderr)
            failed = True
    os.unlink(t.name)

    with open(os.path.join(INFRA, "iam", "drainhook-policy.json")) as f:
        want = actions(json.load(f))
    cfn_t = cfn_yaml.load(cfn)
    for label, res in [("cloudformation", cfn_t["Resources"]["InstancePolicy"]),
                       ("ebextensions", eb["Resources"]["DrainhookInstancePolicy"])]:
        got = actions(res["Properties"]["PolicyDocument"])
        if got != want:
            print("%s instance policy differs from iam/drainhook-policy.json: extra %s, missing %s"
                  % (label, sorted(got - want), sorted(want - got)))
            failed = True
        else:
            print("%s instance policy: same actions as iam/drainhook-policy.json" % label)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
