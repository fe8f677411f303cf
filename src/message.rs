//! What arrives on the queue: every form of Auto Scaling lifecycle notification.
//!
//! The cascade: JSON → SNS envelope (`Type: Notification`, `Message` a string) → EventBridge
//! (`detail-type`, `detail`) → test notification → termination → anything else is unknown.

use serde_json::Value;

/// A lifecycle action: enough to heartbeat and complete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub instance_id: String,
    pub group: String,
    pub hook: String,
    /// Absent when the action was found by asking Auto Scaling, not from a message.
    pub token: Option<String>,
    /// `EC2`, `AutoScalingGroup` or `WarmPool`, when the notification says.
    pub destination: Option<String>,
}

/// What a message body means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `autoscaling:EC2_INSTANCE_TERMINATING` for some instance.
    Terminating(LifecycleAction),
    /// Another lifecycle transition (launching): not ours to handle.
    OtherTransition {
        instance_id: String,
        transition: String,
    },
    /// `autoscaling:TEST_NOTIFICATION`, sent when a hook is created or updated.
    Test { group: String },
    /// An EC2 Spot interruption warning (two minutes; no hook can extend it).
    SpotInterruption { instance_id: String, action: String },
    /// Valid JSON we do not recognise.
    Unknown { reason: String },
    /// Not JSON, or a recognised form with a required field missing.
    Malformed { reason: String },
}

impl Notice {
    /// The instance this notice concerns, if any.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            Notice::Terminating(a) => Some(&a.instance_id),
            Notice::OtherTransition { instance_id, .. }
            | Notice::SpotInterruption { instance_id, .. } => Some(instance_id),
            _ => None,
        }
    }
}

/// Parses a message body (never panics, whatever the body).
pub fn parse(body: &str) -> Notice {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return Notice::Malformed {
                reason: format!("body is not JSON ({e})"),
            }
        }
    };
    classify(&v, 0)
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn classify(v: &Value, depth: u8) -> Notice {
    if !v.is_object() {
        return Notice::Malformed {
            reason: "body is JSON but not an object".into(),
        };
    }
    // SNS envelope (raw delivery off): the notification is a JSON string in `Message`.
    if s(v, "Type") == Some("Notification") && depth == 0 {
        return match s(v, "Message") {
            Some(inner) => match serde_json::from_str::<Value>(inner) {
                Ok(inner) => classify(&inner, depth + 1),
                Err(e) => Notice::Malformed {
                    reason: format!("SNS Message is not JSON ({e})"),
                },
            },
            None => Notice::Malformed {
                reason: "SNS notification without a string Message".into(),
            },
        };
    }
    // EventBridge: kebab-case envelope, PascalCase detail.
    if let Some(dt) = s(v, "detail-type") {
        let Some(detail) = v.get("detail").filter(|d| d.is_object()) else {
            return Notice::Malformed {
                reason: format!("EventBridge event {dt:?} without a detail object"),
            };
        };
        if dt == "EC2 Spot Instance Interruption Warning" {
            return match s(detail, "instance-id") {
                Some(id) => Notice::SpotInterruption {
                    instance_id: id.into(),
                    action: s(detail, "instance-action").unwrap_or("terminate").into(),
                },
                None => Notice::Malformed {
                    reason: "spot interruption warning without instance-id".into(),
                },
            };
        }
        if dt.contains("Lifecycle Action") {
            return lifecycle(detail);
        }
        return Notice::Unknown {
            reason: format!("EventBridge event of detail-type {dt:?}"),
        };
    }
    if s(v, "Event") == Some("autoscaling:TEST_NOTIFICATION") {
        return Notice::Test {
            group: s(v, "AutoScalingGroupName").unwrap_or("").into(),
        };
    }
    if v.get("LifecycleTransition").is_some() {
        return lifecycle(v);
    }
    Notice::Unknown {
        reason: "no LifecycleTransition, Event, detail-type or SNS envelope".into(),
    }
}

fn lifecycle(v: &Value) -> Notice {
    let transition = s(v, "LifecycleTransition").unwrap_or("");
    let field = |k: &str| s(v, k).filter(|x| !x.is_empty()).map(str::to_string);
    let Some(instance_id) = field("EC2InstanceId") else {
        return Notice::Malformed {
            reason: format!("lifecycle notification {transition:?} without EC2InstanceId"),
        };
    };
    if transition != "autoscaling:EC2_INSTANCE_TERMINATING" {
        return Notice::OtherTransition {
            instance_id,
            transition: transition.into(),
        };
    }
    let (Some(group), Some(hook)) = (field("AutoScalingGroupName"), field("LifecycleHookName"))
    else {
        return Notice::Malformed {
            reason: "termination notification without AutoScalingGroupName or LifecycleHookName"
                .into(),
        };
    };
    Notice::Terminating(LifecycleAction {
        instance_id,
        group,
        hook,
        token: field("LifecycleActionToken"),
        destination: field("Destination"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECT: &str = r#"{
  "Origin": "AutoScalingGroup",
  "LifecycleHookName": "dev-asg-service-discovery-drain-lch",
  "Destination": "EC2",
  "AccountId": "123456789123",
  "RequestId": "a696378f-0ac5-68d3-d6a4-688f99ecd5b4",
  "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
  "AutoScalingGroupName": "v2-adsbx-dev-vpc-a-vrs-global-asg",
  "Service": "AWS Auto Scaling",
  "Time": "2024-02-26T04:53:24.631Z",
  "EC2InstanceId": "i-03a2b505b266b2eaa",
  "NotificationMetadata": "",
  "LifecycleActionToken": "451ac51f-6fdc-486f-9027-745b0c254a31"
}"#;

    #[test]
    fn direct_hook_notification() {
        let Notice::Terminating(a) = parse(DIRECT) else {
            panic!()
        };
        assert_eq!(a.instance_id, "i-03a2b505b266b2eaa");
        assert_eq!(a.group, "v2-adsbx-dev-vpc-a-vrs-global-asg");
        assert_eq!(a.hook, "dev-asg-service-discovery-drain-lch");
        assert_eq!(
            a.token.as_deref(),
            Some("451ac51f-6fdc-486f-9027-745b0c254a31")
        );
    }

    #[test]
    fn sns_wrapped_notification() {
        let body = r#"{"Type":"Notification","MessageId":"c87337ab","TopicArn":"arn:aws:sns:us-east-1:341288657826:t","Subject":"Auto Scaling:  Lifecycle action 'TERMINATING' for instance i-4c87e963 in progress.","Message":"{\"AutoScalingGroupName\":\"org-staging-docker-asg\",\"Service\":\"AWS Auto Scaling\",\"Time\":\"2014-12-23T19:17:03.843Z\",\"AccountId\":\"341288657826\",\"LifecycleTransition\":\"autoscaling:EC2_INSTANCE_TERMINATING\",\"RequestId\":\"8fb86310\",\"LifecycleActionToken\":\"2f346e45-4866-4bf1-a752-f6eea23011c7\",\"EC2InstanceId\":\"i-4c87e963\",\"LifecycleHookName\":\"org-staging-docker-lch-terminating\"}","Timestamp":"2014-12-23T19:17:03.874Z","SignatureVersion":"1"}"#;
        let Notice::Terminating(a) = parse(body) else {
            panic!()
        };
        assert_eq!(
            (a.instance_id.as_str(), a.destination),
            ("i-4c87e963", None)
        );
    }

    #[test]
    fn eventbridge_notification_and_spot_warning() {
        let body = r#"{"version":"0","id":"66f9eb1a","detail-type":"EC2 Instance-terminate Lifecycle Action","source":"aws.autoscaling","account":"111122223333","time":"2022-02-08T09:12:05Z","region":"eu-west-3","resources":[],"detail":{"LifecycleActionToken":"be2184df","AutoScalingGroupName":"dok-asg","LifecycleHookName":"drain-hook","EC2InstanceId":"i-0abc1234def567890","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","Origin":"AutoScalingGroup","Destination":"EC2"}}"#;
        assert!(matches!(parse(body), Notice::Terminating(a) if a.group == "dok-asg"));
        let spot = r#"{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{"instance-id":"i-1","instance-action":"terminate"}}"#;
        assert_eq!(
            parse(spot),
            Notice::SpotInterruption {
                instance_id: "i-1".into(),
                action: "terminate".into()
            }
        );
    }

    #[test]
    fn test_notification() {
        let body = r#"{"AutoScalingGroupName":"org-staging-docker-asg","Service":"AWS Auto Scaling","Time":"2014-12-22T20:58:56.930Z","AccountId":"341288657826","Event":"autoscaling:TEST_NOTIFICATION","RequestId":"585ad5cd","AutoScalingGroupARN":"arn:aws:autoscaling:us-east-1:341288657826:autoScalingGroup:6b16:autoScalingGroupName/org-staging-docker-asg"}"#;
        assert!(matches!(parse(body), Notice::Test { .. }));
    }

    #[test]
    fn bad_bodies_are_named_not_panicked_on() {
        for body in [
            "",
            "not json",
            "[1,2]",
            "null",
            "{\"Type\":\"Notification\",\"Message\":\"{oops\"}",
        ] {
            assert!(matches!(parse(body), Notice::Malformed { .. }), "{body}");
        }
        assert!(matches!(parse("{\"hello\":1}"), Notice::Unknown { .. }));
        let no_instance = DIRECT.replace("\"EC2InstanceId\": \"i-03a2b505b266b2eaa\",", "");
        assert!(matches!(parse(&no_instance), Notice::Malformed { .. }));
        let launching = DIRECT.replace("TERMINATING", "LAUNCHING");
        assert!(matches!(parse(&launching), Notice::OtherTransition { .. }));
    }
}
