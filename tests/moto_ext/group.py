"""An Auto Scaling group with a termination hook, as `make demo`, `make idle`, `make fleet`
and the systemd-agent boot all start from. It speaks to whatever endpoint boto3 is given
(AWS_ENDPOINT_URL: the emulator under with_moto.sh), through the public API only.
"""

import boto3

HOOK = "drainhook"


def create_group(name, size, heartbeat_timeout, default_result="CONTINUE", queue=False):
    """A group `name` of `size` instances whose hook `drainhook` waits `heartbeat_timeout`
    seconds, then goes on with `default_result`. With `queue`, the hook notifies a new SQS
    queue of the same name. Returns (the instance ids, the queue URL or None)."""
    asg = boto3.client("autoscaling")
    hook = dict(AutoScalingGroupName=name, LifecycleHookName=HOOK,
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                HeartbeatTimeout=heartbeat_timeout, DefaultResult=default_result)
    queue_url = None
    if queue:
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        hook.update(NotificationTargetARN=arn, RoleARN="arn:aws:iam::123456789012:role/hook")
    asg.create_launch_configuration(LaunchConfigurationName=name, ImageId="ami-12c6146b", InstanceType="t3.micro")
    asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=0,
                                  MaxSize=size, DesiredCapacity=size, AvailabilityZones=["us-east-1a"])
    asg.put_lifecycle_hook(**hook)
    ids = []
    for page in asg.get_paginator("describe_auto_scaling_groups").paginate(AutoScalingGroupNames=[name]):
        for g in page["AutoScalingGroups"]:
            ids += [i["InstanceId"] for i in g["Instances"]]
    assert len(ids) == size, "the group %s has %d instances, not %d" % (name, len(ids), size)
    return ids, queue_url
