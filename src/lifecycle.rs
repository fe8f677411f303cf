//! The Auto Scaling calls of a lifecycle action: read the hook, heartbeat, complete, and
//! find an action already waiting for this instance (after a restart).
//!
//! The SDK retries throttling, 5xx and network errors itself (standard mode: exponential
//! backoff with jitter). "No active Lifecycle Action found" is terminal: the action was
//! completed elsewhere or expired, and retrying it is the retry storm others have shipped.

use crate::message::LifecycleAction;
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_autoscaling::Client;
use std::fmt;
use std::time::Duration;

const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// How an Auto Scaling call failed.
#[derive(Debug)]
pub enum CallError {
    /// The lifecycle action no longer exists (completed elsewhere, expired, or unknown).
    Gone(String),
    /// Anything else, after the SDK's own retries.
    Failed(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Gone(m) => write!(f, "lifecycle action no longer active: {m}"),
            CallError::Failed(m) => f.write_str(m),
        }
    }
}

fn classify<E, R>(what: &str, e: aws_sdk_autoscaling::error::SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let gone = e.code() == Some("ValidationError")
        && e.message()
            .is_some_and(|m| m.contains("No active Lifecycle Action"));
    if gone {
        CallError::Gone(e.message().unwrap_or_default().to_string())
    } else {
        CallError::Failed(format!("{what}: {}", DisplayErrorContext(&e)))
    }
}

/// A hook's timing, as `DescribeLifecycleHooks` gives it.
#[derive(Debug, Clone, Copy)]
pub struct HookTiming {
    pub heartbeat_timeout: Duration,
    pub global_timeout: Duration,
}

impl HookTiming {
    /// AWS's defaults, used when the hook cannot be read.
    pub const fn default_timing() -> Self {
        HookTiming {
            heartbeat_timeout: Duration::from_secs(3600),
            global_timeout: Duration::from_secs(48 * 3600),
        }
    }

    fn from_heartbeat(secs: u64) -> Self {
        HookTiming {
            heartbeat_timeout: Duration::from_secs(secs),
            global_timeout: Duration::from_secs((100 * secs).min(48 * 3600)),
        }
    }
}

#[derive(Clone)]
pub struct Lifecycle {
    client: Client,
}

impl Lifecycle {
    pub fn new(client: Client) -> Self {
        Lifecycle { client }
    }

    /// The hook's HeartbeatTimeout and global timeout.
    pub async fn hook_timing(&self, group: &str, hook: &str) -> Result<HookTiming, CallError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .lifecycle_hook_names(hook)
            .send()
            .await
            .map_err(|e| classify("DescribeLifecycleHooks", e))?;
        let h = out.lifecycle_hooks().first().ok_or_else(|| {
            CallError::Failed(format!("no lifecycle hook {hook} on group {group}"))
        })?;
        let hb = h.heartbeat_timeout().unwrap_or(3600).max(1) as u64;
        let mut t = HookTiming::from_heartbeat(hb);
        if let Some(g) = h.global_timeout() {
            t.global_timeout = Duration::from_secs(g.max(1) as u64);
        }
        Ok(t)
    }

    pub async fn heartbeat(&self, a: &LifecycleAction) -> Result<(), CallError> {
        let mut req = self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&a.group)
            .lifecycle_hook_name(&a.hook)
            .instance_id(&a.instance_id);
        if let Some(t) = &a.token {
            req = req.lifecycle_action_token(t);
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("RecordLifecycleActionHeartbeat", e))
    }

    pub async fn complete(&self, a: &LifecycleAction, result: &str) -> Result<(), CallError> {
        let mut req = self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&a.group)
            .lifecycle_hook_name(&a.hook)
            .instance_id(&a.instance_id)
            .lifecycle_action_result(result);
        if let Some(t) = &a.token {
            req = req.lifecycle_action_token(t);
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("CompleteLifecycleAction", e))
    }

    /// The termination action this instance already waits in, if any (`Terminating:Wait`).
    pub async fn waiting_action(
        &self,
        instance_id: &str,
    ) -> Result<Option<LifecycleAction>, CallError> {
        let out = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| classify("DescribeAutoScalingInstances", e))?;
        let Some(inst) = out.auto_scaling_instances().first() else {
            return Ok(None);
        };
        if inst.lifecycle_state() != Some("Terminating:Wait") {
            return Ok(None);
        }
        let group = inst
            .auto_scaling_group_name()
            .unwrap_or_default()
            .to_string();
        let hooks = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(&group)
            .send()
            .await
            .map_err(|e| classify("DescribeLifecycleHooks", e))?;
        let hook = hooks
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_transition() == Some(TERMINATING))
            .and_then(|h| h.lifecycle_hook_name())
            .ok_or_else(|| CallError::Failed(format!("group {group} has no terminating hook")))?;
        Ok(Some(LifecycleAction {
            instance_id: instance_id.to_string(),
            group,
            hook: hook.to_string(),
            token: None,
            destination: None,
        }))
    }
}
