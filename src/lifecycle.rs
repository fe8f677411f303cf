//! The Auto Scaling calls of a lifecycle action: find the hook, heartbeat, complete, and ask
//! which instances still wait in `Terminating:Wait`.
//!
//! The SDK retries throttling, 5xx and network errors itself (standard mode: exponential
//! backoff with jitter). What is still failing after that is classified here, so that the
//! agent's own loops know whether to try again: "No active Lifecycle Action found" is
//! terminal (the action was completed elsewhere or expired, and retrying it is the retry
//! storm others have shipped); throttling, `ResourceContention`, 5xx and network errors are
//! transient.

use crate::message::LifecycleAction;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_autoscaling::Client;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// `DescribeAutoScalingInstances` takes at most 50 instance ids a call.
const DESCRIBE_BATCH: usize = 50;

/// How an Auto Scaling call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The lifecycle action no longer exists (completed elsewhere, expired, or unknown).
    Gone(String),
    /// Throttling, contention, 5xx, timeouts and network errors: worth another try.
    Transient(String),
    /// Anything else (permissions, a missing hook, bad arguments).
    Failed(String),
}

impl CallError {
    pub const fn is_gone(&self) -> bool {
        matches!(self, CallError::Gone(_))
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Gone(m) => write!(f, "lifecycle action no longer active: {m}"),
            CallError::Transient(m) => write!(f, "{m} (transient)"),
            CallError::Failed(m) => f.write_str(m),
        }
    }
}

/// Error codes that say "try again later", whatever the protocol.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "ResourceContention",
    "ResourceContentionFault",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "RequestTimeout",
];

/// Whether an SDK error (after the SDK's own retries) is worth another try later. The same
/// rule serves the SQS client (both clients share the smithy response type).
pub fn is_transient<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            se.raw().status().as_u16() >= 500
                || e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    }
}

fn classify<E>(what: &str, e: SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let gone = e.code() == Some("ValidationError")
        && e.message()
            .is_some_and(|m| m.contains("No active Lifecycle Action"));
    if gone {
        CallError::Gone(e.message().unwrap_or_default().to_string())
    } else if is_transient(&e) {
        CallError::Transient(format!("{what}: {}", DisplayErrorContext(&e)))
    } else {
        CallError::Failed(format!("{what}: {}", DisplayErrorContext(&e)))
    }
}

/// A hook's timing, as `DescribeLifecycleHooks` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookTiming {
    pub heartbeat_timeout: Duration,
    pub global_timeout: Duration,
}

impl HookTiming {
    /// What a hold assumes while the hook cannot be read: the shortest HeartbeatTimeout AWS
    /// allows (30 s), so heartbeats come often enough whatever the real one is; never the
    /// longest, which would let a short real timeout expire mid-drain. The global timeout
    /// is left to `--max-hold` (AWS's own cap, 48 h).
    pub const fn assumed() -> Self {
        HookTiming {
            heartbeat_timeout: Duration::from_secs(30),
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

/// Where an instance stands in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    pub group: String,
    /// `InService`, `Terminating:Wait`, `Warmed:Terminating:Wait`, …
    pub state: String,
}

impl InstanceState {
    /// A termination hook is holding this instance: its lifecycle action is alive.
    pub fn waits_to_terminate(&self) -> bool {
        self.state == "Terminating:Wait" || self.state == "Warmed:Terminating:Wait"
    }
}

#[derive(Clone)]
pub struct Lifecycle {
    client: Client,
    /// The hook to hold for, when the operator named one (`--hook-name`).
    hook_name: Option<String>,
    /// Hook name and timing per group: hooks change rarely, and the IMDS trigger must send
    /// its first heartbeat within about a second of the state change.
    hooks: Arc<Mutex<HashMap<String, (String, HookTiming)>>>,
}

impl Lifecycle {
    pub fn new(client: Client, hook_name: Option<String>) -> Self {
        Lifecycle {
            client,
            hook_name,
            hooks: Arc::default(),
        }
    }

    fn cached_hook(&self, group: &str) -> Option<(String, HookTiming)> {
        self.hooks.lock().ok()?.get(group).cloned()
    }

    /// The group's termination hook this agent holds for: the one named by `--hook-name`,
    /// else the group's only `autoscaling:EC2_INSTANCE_TERMINATING` hook. Several and none
    /// named is an error that names them.
    pub async fn terminating_hook(&self, group: &str) -> Result<(String, HookTiming), CallError> {
        if let Some(h) = self.cached_hook(group) {
            return Ok(h);
        }
        self.read_terminating_hook(group).await
    }

    /// [`Lifecycle::terminating_hook`] read from Auto Scaling now (and cached).
    pub async fn read_terminating_hook(
        &self,
        group: &str,
    ) -> Result<(String, HookTiming), CallError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .map_err(|e| classify("DescribeLifecycleHooks", e))?;
        let hooks: Vec<_> = out
            .lifecycle_hooks()
            .iter()
            .filter(|h| h.lifecycle_transition() == Some(TERMINATING))
            .collect();
        let names: Vec<&str> = hooks
            .iter()
            .filter_map(|h| h.lifecycle_hook_name())
            .collect();
        let chosen = match &self.hook_name {
            Some(want) => hooks
                .iter()
                .find(|h| h.lifecycle_hook_name() == Some(want))
                .ok_or_else(|| {
                    CallError::Failed(format!(
                        "group {group} has no termination hook named {want:?} (it has: {})",
                        list_or_none(&names)
                    ))
                })?,
            None => match hooks.as_slice() {
                [one] => one,
                [] => {
                    return Err(CallError::Failed(format!(
                        "group {group} has no autoscaling:EC2_INSTANCE_TERMINATING lifecycle hook"
                    )))
                }
                _ => {
                    return Err(CallError::Failed(format!(
                        "group {group} has several termination hooks ({}): name the one to hold for with --hook-name",
                        names.join(", ")
                    )))
                }
            },
        };
        let name = chosen.lifecycle_hook_name().unwrap_or_default().to_string();
        let timing = timing_of(chosen);
        if let Ok(mut m) = self.hooks.lock() {
            m.insert(group.to_string(), (name.clone(), timing));
        }
        Ok((name, timing))
    }

    /// The hook's timing, read from Auto Scaling now (never from the cache, which it
    /// updates). `Ok(None)`: the group has no termination hook of that name any more (removed
    /// or renamed); the `String` then names those it has.
    pub async fn read_hook(
        &self,
        group: &str,
        hook: &str,
    ) -> Result<Result<HookTiming, String>, CallError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
            .await
            .map_err(|e| classify("DescribeLifecycleHooks", e))?;
        let hooks: Vec<_> = out
            .lifecycle_hooks()
            .iter()
            .filter(|h| h.lifecycle_transition() == Some(TERMINATING))
            .collect();
        let Some(h) = hooks.iter().find(|h| h.lifecycle_hook_name() == Some(hook)) else {
            let names: Vec<&str> = hooks
                .iter()
                .filter_map(|h| h.lifecycle_hook_name())
                .collect();
            return Ok(Err(list_or_none(&names)));
        };
        let timing = timing_of(h);
        if let Ok(mut m) = self.hooks.lock() {
            // The cache only serves the first heartbeat of the next hold: keep it current.
            if m.get(group).is_some_and(|(name, _)| name == hook) || hooks.len() == 1 {
                m.insert(group.to_string(), (hook.to_string(), timing));
            }
        }
        Ok(Ok(timing))
    }

    /// The timing of the hook last read for any group (an agent's instance is in one).
    pub fn any_cached_timing(&self) -> Option<HookTiming> {
        self.hooks.lock().ok()?.values().next().map(|(_, t)| *t)
    }

    /// The hook's timing as last read (the cache), if it is that hook.
    pub fn cached_timing(&self, group: &str, hook: &str) -> Option<HookTiming> {
        self.cached_hook(group)
            .filter(|(name, _)| name == hook)
            .map(|(_, t)| t)
    }

    /// Whether a notice for `hook` of `group` is for the hook this agent holds for: the one
    /// `--hook-name` names, else the group's only termination hook (read again when the
    /// cache names another: the hook may have been renamed).
    pub async fn is_our_hook(&self, group: &str, hook: &str) -> Result<bool, CallError> {
        if let Some(want) = &self.hook_name {
            return Ok(want == hook);
        }
        if self
            .cached_hook(group)
            .is_some_and(|(name, _)| name == hook)
        {
            return Ok(true);
        }
        match self.read_terminating_hook(group).await {
            Ok((name, _)) => Ok(name == hook),
            // No termination hook, or several and none named: not one this agent can hold.
            Err(CallError::Failed(_)) => Ok(false),
            // Auto Scaling cannot be asked, and no hook was ever read (the cache names none):
            // the notice's own hook is the best evidence there is. Refusing it could lose this
            // instance's drain; a group with several hooks needs --hook-name anyway.
            Err(e) if self.cached_hook(group).is_none() => {
                tracing::warn!(
                    "cannot read group {group}'s termination hooks ({e}); taking the notice's hook {hook} for this agent's"
                );
                Ok(true)
            }
            Err(e) => Err(e),
        }
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

    /// Group and lifecycle state of each instance that belongs to a group, asked in batches
    /// of 50. An instance missing from the answer is in no group (or already terminated).
    pub async fn instance_states(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, InstanceState>, CallError> {
        let mut states = HashMap::new();
        for chunk in ids.chunks(DESCRIBE_BATCH) {
            let out = self
                .client
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .max_records(DESCRIBE_BATCH as i32)
                .send()
                .await
                .map_err(|e| classify("DescribeAutoScalingInstances", e))?;
            for i in out.auto_scaling_instances() {
                if let Some(id) = i.instance_id() {
                    states.insert(
                        id.to_string(),
                        InstanceState {
                            group: i.auto_scaling_group_name().unwrap_or_default().to_string(),
                            state: i.lifecycle_state().unwrap_or_default().to_string(),
                        },
                    );
                }
            }
        }
        Ok(states)
    }

    /// This instance's group and state (`None`: in no group).
    pub async fn instance_state(&self, id: &str) -> Result<Option<InstanceState>, CallError> {
        Ok(self.instance_states(&[id.to_string()]).await?.remove(id))
    }

    /// The termination action this instance waits in (`Terminating:Wait`), with the
    /// group from `DescribeAutoScalingInstances` and the hook from `DescribeLifecycleHooks`.
    /// IMDS gives neither, nor a token: the action is completed by instance id.
    pub async fn waiting_action(&self, instance_id: &str) -> Result<LifecycleAction, WaitingError> {
        let Some(inst) = self
            .instance_state(instance_id)
            .await
            .map_err(WaitingError::Call)?
        else {
            return Err(WaitingError::NotWaiting("in no Auto Scaling group".into()));
        };
        if !inst.waits_to_terminate() {
            return Err(WaitingError::NotWaiting(format!(
                "{} in group {}",
                inst.state, inst.group
            )));
        }
        let (hook, _) = self
            .terminating_hook(&inst.group)
            .await
            .map_err(WaitingError::Call)?;
        Ok(LifecycleAction {
            instance_id: instance_id.to_string(),
            group: inst.group,
            hook,
            token: None,
            destination: None,
        })
    }
}

/// Why [`Lifecycle::waiting_action`] found no action to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitingError {
    /// The instance is not in `Terminating:Wait`; the text says where it is.
    NotWaiting(String),
    Call(CallError),
}

impl fmt::Display for WaitingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitingError::NotWaiting(s) => write!(f, "not in Terminating:Wait ({s})"),
            WaitingError::Call(e) => e.fmt(f),
        }
    }
}

fn timing_of(h: &aws_sdk_autoscaling::types::LifecycleHook) -> HookTiming {
    let hb = h.heartbeat_timeout().unwrap_or(3600).max(1) as u64;
    let mut t = HookTiming::from_heartbeat(hb);
    if let Some(g) = h.global_timeout() {
        t.global_timeout = Duration::from_secs(g.max(1) as u64);
    }
    t
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
