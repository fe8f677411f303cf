//! The queue trigger: the hook's SQS queue, shared by the whole group.
//!
//! Every agent sees every message. This instance's termination goes to the coordinator
//! (which holds it, or adds it to the hold already running); the test notification is
//! deleted; a malformed message is moved to the dead-letter queue or left alone.
//!
//! Other instances' messages are never deleted while their action may be alive. A message
//! whose action is *provably over* (its instance is not in `Terminating:Wait`, asked with
//! `DescribeAutoScalingInstances` in batches of 50 and cached briefly, and the message is
//! older than [`CLEANUP_MARGIN`]) is deleted by whichever agent sees it: agents die with
//! their instances, and nobody else would ever delete an expired action's message.
//!
//! How long a foreign message stays hidden depends on whether this agent's IMDS trigger
//! works:
//! - **primary** (no IMDS trigger): the queue is how agents learn of their termination. A
//!   message is a sign that the group is scaling in, so on a notice it has not seen before
//!   the agent asks Auto Scaling about *itself* (`DescribeAutoScalingInstances`, at most once
//!   every [`SELF_CHECK_EVERY`]): an instance in `Terminating:Wait` is held at once, without
//!   first finding its own message among everyone's. Each receive takes one message
//!   ([`PRIMARY_BATCH`]), so a scale-in's notices reach many agents at once. A foreign
//!   message seen for the first time, or in its first [`FRESH`] seconds, is released at once
//!   (visibility 0), so that every agent soon sees some notice; an older one seen again after
//!   such a check said "not this instance" is left hidden for [`RECEIVE_HIDE`] (the
//!   receive's own visibility timeout: no extra request);
//! - **backup** (IMDS works): its owner most likely learns from IMDS too, so the message is
//!   left hidden for [`BACKUP_HIDE`] (the receive's own visibility timeout: no extra
//!   request). Each message is then received about once per [`BACKUP_HIDE`] by the whole
//!   fleet, not once per agent, and an owner without IMDS still finds it soon.

use super::retry::{Quiet, Say};
use super::{fmt_d, Ctx, Event, HeldMessage, Source};
use crate::lifecycle::{self, InstanceState, WaitingError};
use crate::message::{self, Notice};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How old a message must be before an agent other than its owner may delete it, even
/// when its instance is no longer waiting: Auto Scaling's answers may lag the message.
pub const CLEANUP_MARGIN: Duration = Duration::from_secs(30);

/// How long a backup-mode agent leaves a foreign message hidden: about half the cleanup
/// margin, so a message is seen about twice before it can be judged, while an owner without
/// IMDS still finds it within seconds.
pub const BACKUP_HIDE: Duration = Duration::from_secs(15);

/// What a primary-mode receive asks for: every message is released or handed to the hold
/// (whose keeper extends it) at once, so this only matters for messages nobody handles, such
/// as those a long poll took just as its agent was stopped: they return this soon.
pub const RECEIVE_HIDE: Duration = Duration::from_secs(5);

/// How often, at most, a primary-mode agent asks Auto Scaling about itself while new
/// notices of other instances arrive. A scale-in's notices come within a second or two, so
/// an agent asks about once or twice per scale-in, and a fleet's agents do not all ask again
/// for every message.
pub const SELF_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long after it was sent a notice is released at once by every primary-mode agent
/// that receives it: long enough for every agent to receive one of a scale-in's notices
/// (each receive takes one, and an agent receives again after `idle_pause`, 2 s).
const FRESH: Duration = Duration::from_secs(10);

/// How many messages a primary-mode receive takes. One notice is enough to make an agent
/// look at its own state, and a scale-in's few dozen notices then reach a few dozen agents
/// at a time, where batches of 10 would reach only a handful.
const PRIMARY_BATCH: i32 = 1;

/// How long a message id is remembered as seen: long after its action can be alive (the
/// hold lasts an hour at most by default); one seen again later only costs one more check.
const SEEN_FOR: Duration = Duration::from_secs(2 * 3600);

/// How long the listener waits at start-up for the IMDS watcher to say whether IMDS works.
const IMDS_FIRST_LOOK: Duration = Duration::from_secs(3);

/// How long an instance's state is believed.
const STATE_TTL: Duration = Duration::from_secs(5);

/// A Spot warning comes two minutes ahead: afterwards it is only history.
const SPOT_NOTICE_LIFE: Duration = Duration::from_secs(150);

/// The SQS calls the agent makes on the hook's queue.
pub(crate) struct QueueClient {
    client: aws_sdk_sqs::Client,
    pub url: String,
}

impl QueueClient {
    pub fn new(sdk: &aws_config::SdkConfig, url: String) -> Self {
        let conf = aws_sdk_sqs::config::Builder::from(sdk)
            // Long polls are silent for 20 s by design; the stalled-stream monitor would
            // wake the idle agent dozens of times a second to watch them.
            .stalled_stream_protection(
                aws_sdk_sqs::config::StalledStreamProtectionConfig::disabled(),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        QueueClient {
            client: aws_sdk_sqs::Client::from_conf(conf),
            url,
        }
    }

    /// ChangeMessageVisibility: 0 releases a message, more extends the hold on it.
    pub async fn change_visibility(&self, receipt: &str, secs: i32) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DisplayErrorContext(&e).to_string())
    }

    /// Deletes one message; a failure is logged (the message comes back and is cleaned up
    /// by whoever sees it once its action is over).
    pub async fn delete(&self, receipt: &str) {
        if let Err(e) = self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            tracing::warn!("DeleteMessage failed: {}", DisplayErrorContext(&e));
        }
    }

    /// Deletes up to 10 messages in one request.
    async fn delete_batch(&self, ms: &[&Message]) {
        let entries: Vec<_> = ms
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        match self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) if !out.failed().is_empty() => tracing::warn!(
                "DeleteMessageBatch: {} of {} failed",
                out.failed().len(),
                ms.len()
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("DeleteMessageBatch failed: {}", DisplayErrorContext(&e)),
        }
    }

    /// Releases up to 10 messages at once (visibility 0), in one request.
    async fn release_batch(&self, ms: &[&Message]) {
        let entries: Vec<_> = ms
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if let Err(e) = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(
                "releasing other instances' messages failed (they return when their visibility ends): {}",
                DisplayErrorContext(&e)
            );
        }
    }
}

/// When SQS received the message (`SentTimestamp`, milliseconds since the epoch).
fn sent_at(m: &Message) -> Option<SystemTime> {
    let ms: u64 = m
        .attributes()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

fn age(m: &Message) -> Duration {
    sent_at(m)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// Instances' states, asked in batches and believed for [`STATE_TTL`].
#[derive(Default)]
struct StateCache {
    entries: HashMap<String, (Option<InstanceState>, Instant)>,
}

impl StateCache {
    /// What is known (and still fresh) of these ids (`None` inside: in no group any more).
    fn cached(&mut self, ids: &[String]) -> HashMap<String, Option<InstanceState>> {
        let now = Instant::now();
        self.entries
            .retain(|_, (_, at)| now.duration_since(*at) < STATE_TTL);
        ids.iter()
            .filter_map(|id| Some((id.clone(), self.entries.get(id)?.0.clone())))
            .collect()
    }

    /// Asks Auto Scaling about the ids not cached. `Err` when it cannot be asked: then
    /// nothing is provably over.
    async fn refresh(&mut self, ctx: &Ctx, ids: &[String]) -> Result<(), lifecycle::CallError> {
        let known = self.cached(ids);
        let mut missing: Vec<String> = ids
            .iter()
            .filter(|id| !known.contains_key(*id))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut found = ctx.lifecycle.instance_states(&missing).await?;
        for id in missing {
            let st = found.remove(&id);
            self.entries.insert(id, (st, now));
        }
        Ok(())
    }
}

pub(crate) async fn listen(
    ctx: Arc<Ctx>,
    events: mpsc::Sender<Event>,
    imds_ok: watch::Receiver<bool>,
) {
    let Some(queue) = ctx.queue.as_ref() else {
        return;
    };
    if ctx.cfg.imds_trigger {
        // The IMDS watcher's first look takes a moment: waiting for it starts the first long
        // poll in the right mode (and the log does not announce one mode, then the other).
        let mut first = imds_ok.clone();
        let _ = tokio::time::timeout(IMDS_FIRST_LOOK, first.changed()).await;
    }
    let mut l = Listener {
        ctx: &ctx,
        queue,
        events,
        imds_ok,
        states: StateCache::default(),
        backup: None,
        seen: HashMap::new(),
        check_due: false,
        last_check: None,
        last_ok_check: None,
        check_failing: false,
        check_not_before: None,
        check_delays: Box::new(check_delays()),
        other_hook: HashMap::new(),
        last_ok_wall: None,
        cleanup_not_before: None,
        cleanup_delays: Box::new(cleanup_delays()),
        cleanup_quiet: Quiet::default(),
    };
    l.run().await;
}

struct Listener<'a> {
    ctx: &'a Ctx,
    queue: &'a QueueClient,
    events: mpsc::Sender<Event>,
    imds_ok: watch::Receiver<bool>,
    states: StateCache,
    /// The mode last logged.
    backup: Option<bool>,
    /// Other instances' messages released or left hidden in primary mode, by message id,
    /// with when first seen.
    seen: HashMap<String, Instant>,
    /// A new notice of another instance was seen since this instance's state was last asked.
    check_due: bool,
    /// When this instance's state was last asked, and last answered.
    last_check: Option<Instant>,
    last_ok_check: Option<Instant>,
    /// The last check failed (logged once until one succeeds).
    check_failing: bool,
    /// After a failed check, the next waits (jittered, growing): Auto Scaling's rate is
    /// account-wide, and a throttled fleet must ask less, not as often.
    check_not_before: Option<Instant>,
    check_delays: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    /// This instance's notices of another termination hook, by message id (said once).
    other_hook: HashMap<String, Instant>,
    /// When the last answered self-check was asked, by the wall clock (notices carry SQS's).
    last_ok_wall: Option<SystemTime>,
    /// After a failed ask about other instances (cleanup), the next waits.
    cleanup_not_before: Option<Instant>,
    cleanup_delays: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    cleanup_quiet: Quiet,
}

impl Listener<'_> {
    async fn run(&mut self) {
        let mut errors = retry_delays();
        while !self.ctx.stopping() {
            if self.ctx.message_held.load(Ordering::Relaxed) {
                self.ctx.pause(Duration::from_secs(1)).await;
                continue;
            }
            let backup = *self.imds_ok.borrow();
            if !backup {
                self.check_self().await;
            }
            if self.backup != Some(backup) {
                tracing::info!(
                    "queue: {}",
                    if backup {
                        "IMDS trigger works: the queue is a backup; other instances' messages are left to the IMDS of their own agents"
                    } else {
                        "the queue is this agent's trigger: on other instances' termination notices it asks Auto Scaling whether this instance is terminating too, and releases their messages"
                    }
                );
                self.backup = Some(backup);
            }
            let hide = if backup {
                BACKUP_HIDE
            } else {
                RECEIVE_HIDE.min(self.ctx.cfg.visibility_timeout)
            };
            let recv = self
                .queue
                .client
                .receive_message()
                .queue_url(&self.queue.url)
                .wait_time_seconds(20)
                .max_number_of_messages(if backup { 10 } else { PRIMARY_BATCH })
                .visibility_timeout(hide.as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp);
            let out = tokio::select! {
                _ = self.ctx.until_shutdown() => break,
                r = recv.send() => r,
            };
            let messages = match out {
                Ok(o) => {
                    errors = retry_delays();
                    o.messages.unwrap_or_default()
                }
                Err(e) => {
                    let wait = errors.next().unwrap_or(Duration::from_secs(20));
                    tracing::warn!(
                        "ReceiveMessage failed, retrying in {}: {}",
                        fmt_d(wait),
                        DisplayErrorContext(&e)
                    );
                    self.ctx.pause(wait).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            if self.ctx.stopping() {
                // Not looked at: give them back at once.
                self.queue
                    .release_batch(&messages.iter().collect::<Vec<_>>())
                    .await;
                break;
            }
            if self.batch(messages, backup).await {
                // The queue is shared: don't spin on other instances' messages, and leave
                // the next one that shows up to another agent.
                self.ctx.pause(self.ctx.cfg.idle_pause).await;
            }
        }
    }

    /// Handles one received batch; returns whether it held only other instances' messages.
    async fn batch(&mut self, messages: Vec<Message>, backup: bool) -> bool {
        let me = self.ctx.instance_id.as_str();
        let mut foreign: Vec<(Message, Notice)> = Vec::new();
        let mut own = false;
        for m in messages {
            let notice = message::parse(m.body().unwrap_or(""));
            let id = m.message_id().unwrap_or("?").to_string();
            match notice {
                Notice::Terminating(action) if action.instance_id == me => {
                    if !self.for_our_hook(&action, &id).await {
                        // Another hook's notice (or one that cannot be told yet): left alone,
                        // hidden for the receive's own visibility timeout; never deleted.
                        continue;
                    }
                    own = true;
                    tracing::info!(
                        message_id = %id, instance = %action.instance_id, hook = %action.hook,
                        group = %action.group,
                        "termination notice received for this instance"
                    );
                    let held = HeldMessage {
                        id,
                        receipt: m.receipt_handle().unwrap_or_default().to_string(),
                        sent_at: sent_at(&m),
                    };
                    let _ = self
                        .events
                        .send(Event::Terminating {
                            action,
                            source: Source::Queue,
                            message: Some(held),
                        })
                        .await;
                }
                Notice::SpotInterruption {
                    instance_id,
                    action,
                } if instance_id == me => {
                    own = true;
                    let at = sent_at(&m).map(|t| t + Duration::from_secs(120));
                    tracing::warn!(message_id = %id, "spot interruption ({action}) for this instance, from the queue");
                    self.queue
                        .delete(m.receipt_handle().unwrap_or_default())
                        .await;
                    let _ = self
                        .events
                        .send(Event::Spot {
                            action,
                            at,
                            source: Source::Queue,
                        })
                        .await;
                }
                Notice::Test { group } => {
                    own = true;
                    tracing::info!(message_id = %id, group = %group, "test notification: deleted");
                    self.queue
                        .delete(m.receipt_handle().unwrap_or_default())
                        .await;
                }
                Notice::Malformed { reason } | Notice::Unknown { reason } => {
                    own = true;
                    self.reject(&m, &id, &reason).await;
                }
                other => foreign.push((m, other)),
            }
        }
        self.foreign(foreign, backup).await;
        !own
    }

    /// Whether a check of this instance that Auto Scaling answered began after the notice
    /// was sent (with 2 s for clocks): Auto Scaling puts an instance in `Terminating:Wait`
    /// before it sends its notice, so that answer already covered the notice's scale-in. A
    /// fleet then asks about once per agent per scale-in, not once per notice seen: the
    /// Describe rate is the account's.
    fn answered_after(&self, m: &Message) -> bool {
        match (sent_at(m), self.last_ok_wall) {
            (Some(sent), Some(asked)) => sent + Duration::from_secs(2) <= asked,
            _ => false,
        }
    }

    /// Whether this instance's termination notice is for the hook this agent holds for. A
    /// notice for another termination hook (another tool's) is left alone: not held, not
    /// deleted; its owner completes that action. When Auto Scaling cannot be asked which hook
    /// is ours, the notice waits for the next receive.
    async fn for_our_hook(&mut self, action: &crate::message::LifecycleAction, id: &str) -> bool {
        let answer = super::retry::bounded(
            "DescribeLifecycleHooks",
            Duration::from_secs(20),
            self.ctx.lifecycle.is_our_hook(&action.group, &action.hook),
        )
        .await;
        let first = self
            .other_hook
            .insert(id.to_string(), Instant::now())
            .is_none();
        match answer {
            Ok(true) => {
                self.other_hook.remove(id);
                true
            }
            Ok(false) => {
                if first {
                    tracing::info!(
                        message_id = %id, hook = %action.hook, group = %action.group,
                        "a termination notice for this instance from another hook ({}), not the one this agent holds for: left alone (not held, not deleted)",
                        action.hook
                    );
                }
                false
            }
            Err(e) => {
                self.other_hook.remove(id);
                tracing::warn!(
                    message_id = %id,
                    "termination notice for this instance from hook {}: cannot tell yet whether it is the hook this agent holds for ({e}); looked at again when it is received next",
                    action.hook
                );
                false
            }
        }
    }

    /// Other instances' messages: delete those whose action is provably over, release
    /// (primary) or leave hidden (backup) the others.
    async fn foreign(&mut self, batch: Vec<(Message, Notice)>, backup: bool) {
        if batch.is_empty() {
            return;
        }
        // Only messages past the margin can be deleted: Auto Scaling is asked about their
        // instances alone (one request for the batch), and the answer is used at once. Their
        // owners need not wait for it: an owner learns of its termination from any notice.
        let old_terminations: Vec<String> = batch
            .iter()
            .filter(|(m, _)| age(m) >= CLEANUP_MARGIN)
            .filter_map(|(_, n)| match n {
                Notice::Terminating(a) => Some(a.instance_id.clone()),
                _ => None,
            })
            .collect();
        // Cleaning up is never urgent: after a failure (throttling, above all: the rate is
        // the account's) it waits, 5 s growing to 60 s, leaving the calls to the self-checks.
        let cleanup_due = self.cleanup_not_before.is_none_or(|t| Instant::now() >= t);
        if !old_terminations.is_empty() && cleanup_due {
            match self.states.refresh(self.ctx, &old_terminations).await {
                Ok(()) => {
                    self.cleanup_not_before = None;
                    self.cleanup_delays = Box::new(cleanup_delays());
                    self.cleanup_quiet.succeeded(Instant::now());
                }
                Err(e) => {
                    let wait = self
                        .cleanup_delays
                        .next()
                        .unwrap_or(Duration::from_secs(60));
                    self.cleanup_not_before = Some(Instant::now() + wait);
                    if !matches!(self.cleanup_quiet.failed(Instant::now()), Say::Nothing) {
                        tracing::warn!("cannot ask Auto Scaling whether other instances' actions are over (their messages are kept; asked again in {} at the soonest): {e}", fmt_d(wait));
                    }
                }
            }
        }
        let states = self.states.cached(&old_terminations);
        let now = Instant::now();
        let mut over = Vec::new();
        let mut keep = Vec::new();
        let mut judged = 0;
        for (m, notice) in &batch {
            let id = m.message_id().unwrap_or("?");
            let age = age(m);
            let verdict = match notice {
                Notice::Terminating(a) if age >= CLEANUP_MARGIN => match states.get(&a.instance_id)
                {
                    Some(None) => Some(format!(
                        "instance {} is in no group any more",
                        a.instance_id
                    )),
                    Some(Some(s)) if !s.waits_to_terminate() => {
                        Some(format!("instance {} is {}", a.instance_id, s.state))
                    }
                    _ => None,
                },
                Notice::SpotInterruption { instance_id, .. } if age >= SPOT_NOTICE_LIFE => Some(
                    format!("spot notice for {instance_id} is {} old", fmt_d(age)),
                ),
                _ => None,
            };
            match verdict {
                Some(why) => {
                    tracing::info!(
                        message_id = %id,
                        "another instance's message whose action is over ({why}; sent {} ago): deleted",
                        fmt_d(age)
                    );
                    over.push(m);
                }
                None if backup => {
                    tracing::debug!(
                        message_id = %id, instance = %notice.instance_id().unwrap_or("?"),
                        "another instance's message: left hidden for its own agent's IMDS"
                    );
                }
                None => {
                    // A fresh notice is released at once, so that every agent of the fleet
                    // sees one of the scale-in's notices within seconds. Later, one seen
                    // before (and this instance asked about since) stays hidden.
                    let (first_seen, new) = match self.seen.entry(id.to_string()) {
                        Entry::Occupied(e) => (*e.get(), false),
                        Entry::Vacant(e) => (*e.insert(now), true),
                    };
                    let asked_since = self.last_ok_check.is_some_and(|c| c > first_seen);
                    if asked_since && age >= FRESH {
                        judged += 1;
                    } else {
                        if new
                            && matches!(notice, Notice::Terminating(_))
                            && !self.answered_after(m)
                        {
                            self.check_due = true;
                        }
                        keep.push(m);
                    }
                }
            }
        }
        if !backup {
            tracing::debug!(
                "other instances' messages: {} released, {} seen before left hidden for {}",
                keep.len(),
                judged,
                fmt_d(RECEIVE_HIDE.min(self.ctx.cfg.visibility_timeout))
            );
            for chunk in keep.chunks(10) {
                self.queue.release_batch(chunk).await;
            }
            self.check_self().await;
        }
        for chunk in over.chunks(10) {
            self.queue.delete_batch(chunk).await;
        }
    }

    /// After a new notice of another instance, asks Auto Scaling whether this instance is
    /// terminating too (at most once every [`SELF_CHECK_EVERY`]; a check that is due waits
    /// for the next turn of the receive loop). A scale-in usually takes several instances at
    /// once, and an agent that learns of its termination this way need not find its own
    /// message among everyone's before the hook's heartbeat timeout.
    async fn check_self(&mut self) {
        if !self.check_due {
            return;
        }
        if self.ctx.holding.load(Ordering::Relaxed) {
            self.check_due = false;
            return;
        }
        if self
            .last_check
            .is_some_and(|at| at.elapsed() < SELF_CHECK_EVERY)
            || self.check_not_before.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        self.check_due = false;
        let asked = Instant::now();
        let asked_wall = SystemTime::now();
        self.last_check = Some(asked);
        let me = self.ctx.instance_id.as_str();
        let answer = self.ctx.lifecycle.waiting_action(me).await;
        if !matches!(answer, Err(WaitingError::Call(_))) {
            self.check_not_before = None;
            self.check_delays = Box::new(check_delays());
            if self.check_failing {
                self.check_failing = false;
                tracing::info!("Auto Scaling answers again");
            }
        }
        match answer {
            Ok(action) => {
                self.last_ok_check = Some(asked);
                tracing::info!(
                    instance = %me, group = %action.group, hook = %action.hook,
                    "another instance's termination notice arrived, and Auto Scaling says this instance waits in Terminating:Wait too"
                );
                let _ = self
                    .events
                    .send(Event::Terminating {
                        action,
                        source: Source::QueueSelfCheck,
                        message: None,
                    })
                    .await;
            }
            Err(WaitingError::NotWaiting(where_)) => {
                self.last_ok_check = Some(asked);
                self.last_ok_wall = Some(asked_wall);
                tracing::debug!("another instance's termination notice: this instance is {where_}");
            }
            Err(WaitingError::Call(e)) => {
                // Its own message still finds it; the check is tried again after a backoff.
                self.check_due = true;
                self.check_not_before =
                    Some(Instant::now() + self.check_delays.next().unwrap_or(SELF_CHECK_MAX));
                if !self.check_failing {
                    tracing::warn!(
                        "cannot ask Auto Scaling whether this instance is terminating too (its own message is still looked for; asking again): {e}"
                    );
                }
                self.check_failing = true;
                return;
            }
        }
        self.seen.retain(|_, first| first.elapsed() < SEEN_FOR);
        self.other_hook
            .retain(|_, first| first.elapsed() < SEEN_FOR);
    }

    /// A message we cannot handle is never just deleted: moved to the dead-letter queue
    /// when one is configured, else left for the queue's retention.
    async fn reject(&self, m: &Message, id: &str, reason: &str) {
        let Some(dlq) = &self.ctx.cfg.dead_letter_queue_url else {
            tracing::warn!(message_id = %id, "cannot handle message ({reason}); left in the queue (no dead-letter queue configured)");
            // Out of the way for a while, not for ever: it stays for the queue's retention.
            let secs = self.ctx.cfg.visibility_timeout.as_secs() as i32;
            if let Err(e) = self
                .queue
                .change_visibility(m.receipt_handle().unwrap_or_default(), secs)
                .await
            {
                tracing::debug!("ChangeMessageVisibility of a rejected message failed: {e}");
            }
            return;
        };
        let sent = self
            .queue
            .client
            .send_message()
            .queue_url(dlq)
            .message_body(m.body().unwrap_or(""))
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::warn!(message_id = %id, "cannot handle message ({reason}); moved to the dead-letter queue");
                self.queue
                    .delete(m.receipt_handle().unwrap_or_default())
                    .await;
            }
            Err(e) => tracing::warn!(
                message_id = %id,
                "cannot handle message ({reason}); moving it to the dead-letter queue failed, left in the queue: {}",
                DisplayErrorContext(&e)
            ),
        }
    }
}

/// The longest wait between failed self-checks.
const SELF_CHECK_MAX: Duration = Duration::from_secs(10);

/// Waits between failed self-checks: 1 s growing to [`SELF_CHECK_MAX`], jittered.
fn check_delays() -> impl Iterator<Item = Duration> + Send + Sync {
    super::retry::backoff(Duration::from_secs(1), SELF_CHECK_MAX)
}

/// Waits between failed cleanup asks: 5 s growing to 60 s, jittered.
fn cleanup_delays() -> impl Iterator<Item = Duration> + Send + Sync {
    super::retry::backoff(Duration::from_secs(5), Duration::from_secs(60))
}

/// Delays for the receive loop after the SDK gave up: 1 s doubling to 20 s (one long poll),
/// jittered; no longer, or an outage that has ended would still delay the next scale-in.
fn retry_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(20))
        .with_jitter()
        .without_max_times()
        .build()
}
