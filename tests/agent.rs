//! `drainhook agent` end to end: a real local AWS emulator (moto with our lifecycle
//! extension, reached through AWS_ENDPOINT_URL), the extension's IMDSv2 stand-in (one per
//! instance, its target-lifecycle-state following the emulator's state) and the filebeat
//! simulator. Run through `make test`, which starts the emulator.

#[path = "common/aws.rs"]
mod aws;
mod common;

use aws::*;
use common::*;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- scenarios

#[tokio::test]
async fn scale_in_is_held_until_the_last_byte_is_acked_then_completed() {
    let g = group("scalein", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 150_000, &["--rate", "50000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    g.scale_in(&me).await;
    assert_eq!(g.state(&me).await.as_deref(), Some("Terminating:Wait"));
    agent
        .wait_log("termination notice received", Duration::from_secs(30))
        .await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    let gone_at = now_epoch();
    assert!(
        gone_at >= sim.last_ack() + 1.0,
        "completed {:.2}s after the last ack, before the settle period",
        gone_at - sim.last_ack()
    );
    assert_eq!(
        acked_bytes(&data),
        written,
        "every byte was shipped before the instance went"
    );
    let logs = agent.logs();
    assert!(logs.contains("heartbeat"), "{logs}");
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    // the shutdown fallback that follows returns at once
    assert!(
        data.with_extension("drained").exists(),
        "the agent leaves its drained marker"
    );
    let t0 = Instant::now();
    let out = drainhook()
        .args(["drain", "--settle", "30s", "--registry"])
        .arg(&data)
        .env("DRAINHOOK_DRAINED_MARKER", data.with_extension("drained"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the fallback waited {:?}",
        t0.elapsed()
    );
    assert!(stderr(&out).contains("already drained"), "{}", stderr(&out));
    // the other instance is untouched and the message is gone
    assert_eq!(g.state(&g.instances[1]).await.as_deref(), Some("InService"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(g.messages_in_queue().await, 0);
}

#[tokio::test]
async fn a_drain_longer_than_several_heartbeat_timeouts_keeps_the_instance() {
    let g = group("longdrain", 1, 2).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    // The 8 s backlog starts once the agent runs, so that it outlasts the checks below
    // however slowly the agent starts (under qemu-user it took seconds).
    let agent = Agent::start(&g, &me, &t.path().join("data"), &[]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    let (data, _sim, written) = shipping(t.path(), 80_000, &["--rate", "10000"]);
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(30))
        .await;
    // 3 heartbeat timeouts later the instance is still held
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "{}",
        agent.logs()
    );
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    let logs = agent.logs();
    assert!(logs.matches("heartbeat sent").count() >= 3, "{logs}");
    assert!(logs.contains("with CONTINUE"), "{logs}");
}

#[tokio::test]
async fn other_instances_messages_stay_visible_to_others() {
    let g = group("foreign", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    // a drain of several seconds, so the agent is busy holding its own instance
    let (data, _sim, _) = shipping(t.path(), 100_000, &["--rate", "20000"]);
    let foreign = r#"{"LifecycleHookName":"drain","AccountId":"123456789012","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","AutoScalingGroupName":"other","Service":"AWS Auto Scaling","EC2InstanceId":"i-0someoneelse","LifecycleActionToken":"t-1"}"#;
    // The queue as the only trigger: foreign messages are released at once for their owner.
    let agent = Agent::start(&g, &me, &data, &["--imds-trigger", "false"]);
    agent
        .wait_log("drainhook agent started", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Our own notice, then another instance's, while the agent long-polls.
    g.scale_in(&me).await;
    g.send(foreign).await;
    agent.wait_log("draining:", Duration::from_secs(30)).await;
    // While the agent holds its own instance, the other message is visible to others.
    let mut seen = false;
    for _ in 0..2 {
        if g.peek().await.iter().any(|b| b.contains("i-0someoneelse")) {
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "the foreign message disappeared or stayed invisible; agent log:\n{}",
        agent.logs()
    );
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "still draining"
    );
    g.wait_gone(&me, Duration::from_secs(60)).await;
    // ... and after the agent finished its own, it is still in the queue.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(g.messages_in_queue().await >= 1, "{}", agent.logs());
    assert!(
        !agent.logs().contains("i-0someoneelse"),
        "never handled as ours"
    );
}

#[tokio::test]
async fn an_agent_without_imds_learns_of_its_termination_from_another_instance_s_notice() {
    // Its own message never reaches the queue it reads (its hook notifies another queue),
    // as if it were lost among everyone's: another instance's notice must be enough.
    let mine = group("selfcheck", 1, 60).await;
    let theirs = group("selfcheck-other", 1, 60).await;
    let me = mine.instances[0].clone();
    let other = theirs.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 40_000, &["--rate", "20000"]);
    let agent = Agent::launch(
        &me,
        &data,
        &["--queue-url", &theirs.queue_url, "--imds-trigger", "false"],
    );
    // Scaled in after the start-up check, which would otherwise find it waiting.
    agent
        .wait_log("start-up check: instance", Duration::from_secs(15))
        .await;
    mine.scale_in(&me).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !agent.logs().contains("holding instance"),
        "nothing on its queue yet: {}",
        agent.logs()
    );
    theirs.scale_in(&other).await;
    let scaled = Instant::now();
    agent
        .wait_log("holding instance", Duration::from_secs(10))
        .await;
    let noticed = scaled.elapsed();
    mine.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written, "every byte shipped first");
    let logs = agent.logs();
    assert!(
        logs.contains("noticed by Auto Scaling, asked on another instance's queue notice"),
        "{logs}"
    );
    assert!(noticed < Duration::from_secs(5), "held {noticed:?} after");
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["result"], "CONTINUE", "{action}");
    assert_eq!(action["completed_by"], me.as_str(), "{action}");
    // The other instance's action is alive: its message stays for its own agent.
    assert_eq!(
        theirs.state(&other).await.as_deref(),
        Some("Terminating:Wait")
    );
    assert_eq!(theirs.messages_in_queue().await, 1, "{logs}");
}

#[tokio::test]
async fn the_test_notification_is_deleted() {
    let g = group("testnote", 1, 60).await;
    let me = g.instances[0].clone();
    assert_eq!(
        g.messages_in_queue().await,
        1,
        "PutLifecycleHook sent a test notification"
    );
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("test notification: deleted", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(g.messages_in_queue().await, 0);

    // A Spot warning for this instance cannot be held: it is said and deleted.
    g.send(&format!(
        r#"{{"version":"0","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{{"instance-id":"{me}","instance-action":"terminate"}}}}"#
    ))
    .await;
    agent
        .wait_log("spot interruption (terminate)", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(g.messages_in_queue().await, 0);
}

#[tokio::test]
async fn a_malformed_body_is_kept_and_the_agent_keeps_serving() {
    let g = group("malformed", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let dlq = g
        .sqs
        .create_queue()
        .queue_name(format!("{}-dlq", g.name))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("test notification: deleted", Duration::from_secs(30))
        .await;
    g.send("this is { not json").await;
    agent
        .wait_log("left in the queue", Duration::from_secs(30))
        .await;
    assert_eq!(
        g.messages_in_queue().await,
        1,
        "the malformed message is kept"
    );
    // still serving: a termination for this instance is handled
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    drop(agent);

    // with a dead-letter queue the agent moves it there
    let agent = Agent::start(&g, &me, &data, &["--dead-letter-queue-url", &dlq]);
    agent
        .wait_log("moved to the dead-letter queue", Duration::from_secs(30))
        .await;
    let moved = g
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.messages()[0].body(), Some("this is { not json"));
}

#[tokio::test]
async fn an_action_completed_elsewhere_is_handled_without_a_retry_storm() {
    let g = group("elsewhere", 1, 60).await;
    let me = g.instances[0].clone();
    g.scale_in(&me).await;
    g.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name(&g.hook)
        .instance_id(&me)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("already completed or expired", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logs = agent.logs();
    assert_eq!(
        logs.matches("already completed or expired").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("retrying"), "{logs}");
    assert_eq!(g.messages_in_queue().await, 0, "{logs}");
}

#[tokio::test]
async fn an_agent_killed_mid_drain_resumes_after_restart() {
    let g = group("restart", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 120_000, &["--rate", "15000"]);
    let mut agent = Agent::start(&g, &me, &data, &[]);
    g.scale_in(&me).await;
    agent.wait_log("draining:", Duration::from_secs(30)).await;
    // The hold has the action's message too (it may start before the message comes by).
    agent
        .wait_log("termination notice received", Duration::from_secs(30))
        .await;
    let status = agent.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(agent.logs().contains("released"), "{}", agent.logs());
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "not completed"
    );
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log("resuming the hold", Duration::from_secs(30))
        .await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert!(now_epoch() >= sim.last_ack() + 1.0);
    assert_eq!(acked_bytes(&data), written);
    // The message is deleted once it shows: at once, or, when the first agent's long poll
    // took it again just as that agent released it and stopped (a race that a slow agent,
    // under qemu-user, loses), when its hide ends (BACKUP_HIDE, 15 s).
    let t0 = Instant::now();
    while g.messages_in_queue().await > 0 && t0.elapsed() < Duration::from_secs(25) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(g.messages_in_queue().await, 0, "{}", agent.logs());
}

#[tokio::test]
async fn a_drain_timeout_completes_with_the_configured_result() {
    let g = group("timeout", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 500_000, &["--rate", "1000"]);
    let agent = Agent::start(
        &g,
        &me,
        &data,
        &["--drain-timeout", "2s", "--on-timeout", "abandon"],
    );
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(30)).await;
    let logs = agent.logs();
    assert!(logs.contains("did not finish in time"), "{logs}");
    assert!(logs.contains("completing with ABANDON"), "{logs}");
    assert!(
        logs.contains("completed lifecycle action with ABANDON"),
        "{logs}"
    );
}

/// Seconds since the epoch of a log line's RFC 3339 UTC stamp (`2026-11-24T01:08:25.548950Z`).
fn log_time(line: &str) -> Option<f64> {
    let t = drainhook::utc::parse_rfc3339(line.split_whitespace().next()?)?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

#[tokio::test]
#[ignore = "measurement: run with `make agent-latency`"]
async fn completion_latency_after_the_last_ack() {
    let mut samples = Vec::new();
    for run in 0..20 {
        let g = group("latency", 1, 60).await;
        let me = g.instances[0].clone();
        let t = tempfile::tempdir().unwrap();
        let (data, sim, _) = shipping(t.path(), 30_000, &["--rate", "60000"]);
        let agent = Agent::start(&g, &me, &data, &[]);
        agent
            .wait_log("drainhook agent started", Duration::from_secs(15))
            .await;
        g.scale_in(&me).await;
        g.wait_gone(&me, Duration::from_secs(60)).await;
        let logs = agent.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("completed lifecycle action"))
            .expect("completed");
        let latency = log_time(line).unwrap() - sim.last_ack() - 1.0;
        println!(
            "run {run:2}: CompleteLifecycleAction {:.0} ms after last ack + settle",
            latency * 1000.0
        );
        samples.push(latency);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "median over 20 runs: {:.0} ms (min {:.0}, max {:.0}) after last ack + settle",
        (samples[9] + samples[10]) / 2.0 * 1000.0,
        samples[0] * 1000.0,
        samples[19] * 1000.0
    );
}

#[tokio::test]
async fn an_unreadable_registry_holds_the_instance_until_it_can_be_read() {
    let g = group("noregistry", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data"); // filebeat has not written it yet
    let agent = start_and_scale_in(&g, &me, &data, "cannot read the shippers' state").await;
    assert_eq!(
        g.state(&me).await.as_deref(),
        Some("Terminating:Wait"),
        "an unreadable registry is never \"drained\""
    );
    // filebeat starts and ships: the agent drains and completes
    let (data2, _sim, written) = shipping(t.path(), 20_000, &["--rate", "100000"]);
    assert_eq!(data2, data);
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    let logs = agent.logs();
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    assert_eq!(
        logs.matches("cannot read the shippers' state").count(),
        1,
        "logged once: {logs}"
    );
}

// ---------------------------------------------------------------- triggers

/// The lines of the agent's log that contain `needle`.
fn count(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn imds_alone_holds_drains_and_completes_without_any_sqs_call() {
    let g = group("imdsonly", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 60_000, &["--rate", "30000"]);
    let agent = Agent::launch(&me, &data, &[]);
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    let scaled = Instant::now();
    agent
        .wait_log("holding instance", Duration::from_secs(10))
        .await;
    let noticed = scaled.elapsed();
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert!(now_epoch() >= sim.last_ack() + 1.0);
    assert_eq!(acked_bytes(&data), written, "every byte shipped first");
    let logs = agent.logs();
    assert!(
        logs.contains("noticed by IMDS target-lifecycle-state"),
        "{logs}"
    );
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    assert!(
        noticed < Duration::from_secs(5),
        "held {noticed:?} after the scale-in"
    );
    assert_eq!(requests_by(&me, "sqs"), 0, "no SQS call without a queue");
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["result"], "CONTINUE", "{action}");
    assert_eq!(action["completed_by"], me.as_str(), "{action}");
}

#[tokio::test]
async fn both_triggers_make_one_hold_one_complete_and_the_message_is_deleted() {
    let g = group("bothtrig", 2, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 60_000, &["--rate", "30000"]);
    let agent = start_and_scale_in(&g, &me, &data, "holding instance").await;
    // the queue's notice reaches the agent too, and joins the hold
    agent
        .wait_log("termination notice received", Duration::from_secs(30))
        .await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = agent.logs();
    assert_eq!(
        count(&logs, "this instance is terminating (noticed by"),
        1,
        "{logs}"
    );
    assert_eq!(
        count(&logs, "completed lifecycle action with CONTINUE"),
        1,
        "{logs}"
    );
    assert_eq!(
        g.messages_in_queue().await,
        0,
        "deleted once finished: {logs}"
    );
    let action = &emulator_stats()["actions"][&me];
    assert_eq!(action["completed_by"], me.as_str(), "{action}");
}

#[tokio::test]
async fn a_message_delivered_twice_leads_to_one_hold_and_one_complete() {
    let g = group("duplicate", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 60_000, &["--rate", "30000"]);
    g.scale_in(&me).await;
    // SQS delivers at least once: put two more copies of the hook's notice beside it.
    let body = loop {
        let bodies = g.peek().await;
        if let Some(b) = bodies.into_iter().find(|b| b.contains(&me)) {
            break b;
        }
    };
    g.send(&body).await;
    let agent = Agent::start(&g, &me, &data, &["--imds-trigger", "false"]);
    agent.wait_log("draining:", Duration::from_secs(30)).await;
    g.send(&body).await; // a third copy arrives while the first is held
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    g.send(&body).await; // and a fourth after the action is finished
    agent
        .wait_log(
            "belongs to the lifecycle action this agent already finished",
            Duration::from_secs(30),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = agent.logs();
    assert_eq!(
        count(&logs, "this instance is terminating (noticed by"),
        1,
        "{logs}"
    );
    assert_eq!(count(&logs, "completed lifecycle action with"), 1, "{logs}");
    assert!(!logs.contains("lost its drain"), "{logs}");
    assert_eq!(g.messages_in_queue().await, 0, "every copy deleted: {logs}");
}

#[tokio::test]
async fn a_shared_queue_cleans_itself_but_never_deletes_a_live_action_s_message() {
    let g = group("cleanup", 3, 60).await;
    let (me, alive, over) = (
        g.instances[0].clone(),
        g.instances[1].clone(),
        g.instances[2].clone(),
    );
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    // Two other instances terminate; neither has an agent (as if theirs had died). One
    // action stays alive (heartbeated by hand), the other is completed.
    for victim in [&alive, &over] {
        g.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(victim.as_str())
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .unwrap();
    }
    g.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name(&g.hook)
        .instance_id(&over)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    let agent = Agent::start(&g, &me, &data, &[]);
    // Past the 30 s safety margin the over action's message goes; the live one stays.
    agent
        .wait_log("whose action is over", Duration::from_secs(70))
        .await;
    for _ in 0..3 {
        g.asg
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&g.name)
            .lifecycle_hook_name(&g.hook)
            .instance_id(&alive)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    assert_eq!(g.state(&alive).await.as_deref(), Some("Terminating:Wait"));
    assert_eq!(g.messages_in_queue().await, 1, "{}", agent.logs());
    let stats = emulator_stats();
    let deletes = stats["deletes"].as_array().unwrap();
    let mine: Vec<_> = deletes.iter().filter(|d| d["by"] == me.as_str()).collect();
    assert!(
        mine.iter()
            .any(|d| d["instance"] == over.as_str() && d["alive"] == false),
        "{deletes:?}"
    );
    assert!(
        !mine.iter().any(|d| d["alive"] == true),
        "a live action's message was deleted: {deletes:?}"
    );
    // The agent's own instance was never held.
    assert!(
        !agent.logs().contains("holding instance"),
        "{}",
        agent.logs()
    );
}

#[tokio::test]
async fn an_imds_without_the_lifecycle_state_is_said_once_and_the_queue_still_works() {
    let g = group("imds404", 1, 60).await;
    let me = g.instances[0].clone();
    imds_control(&me, serde_json::json!({"target_lifecycle_404": true}));
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, written) = shipping(t.path(), 20_000, &["--rate", "100000"]);
    let agent = Agent::start(&g, &me, &data, &[]);
    agent
        .wait_log(
            "IMDS has no autoscaling/target-lifecycle-state",
            Duration::from_secs(15),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    g.scale_in(&me).await;
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert_eq!(acked_bytes(&data), written);
    let logs = agent.logs();
    assert_eq!(
        count(&logs, "IMDS has no autoscaling/target-lifecycle-state"),
        1,
        "{logs}"
    );
    assert!(logs.contains("noticed by queue message"), "{logs}");
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
}

#[tokio::test]
async fn several_termination_hooks_and_none_named_is_an_error_that_names_them() {
    let g = group("twohooks", 1, 60).await;
    let me = g.instances[0].clone();
    g.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name("audit")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(60)
        .send()
        .await
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let (data, _sim, _) = shipping(t.path(), 1000, &["--rate", "1000000"]);
    let agent = Agent::launch(&me, &data, &[]);
    agent
        .wait_log("several termination hooks", Duration::from_secs(15))
        .await;
    let logs = agent.logs();
    assert!(
        logs.contains("drain, audit") || logs.contains("audit, drain"),
        "{logs}"
    );
    assert!(logs.contains("--hook-name"), "{logs}");
    drop(agent);
    // Named, it holds and completes that hook's action.
    let agent = Agent::launch(&me, &data, &["--hook-name", "drain"]);
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    agent
        .wait_log(
            "completed lifecycle action with CONTINUE",
            Duration::from_secs(60),
        )
        .await;
    // Each hook has its own action (as in AWS): the instance leaves once the other tool
    // completes the audit hook's, which the agent left alone.
    g.asg
        .complete_lifecycle_action()
        .auto_scaling_group_name(&g.name)
        .lifecycle_hook_name("audit")
        .instance_id(&me)
        .lifecycle_action_result("CONTINUE")
        .send()
        .await
        .unwrap();
    g.wait_gone(&me, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_spot_notice_from_imds_drains_for_what_is_left_and_says_what_stayed_unshipped() {
    let g = group("spot", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    // far more than can ship before the interruption
    let (data, _sim, _) = shipping(t.path(), 2_000_000, &["--rate", "20000"]);
    imds_control(&me, serde_json::json!({"life_cycle": "spot"}));
    let agent = Agent::launch(&me, &data, &[]);
    agent.wait_in_service().await;
    let at = std::time::SystemTime::now() + Duration::from_secs(16);
    let stamp = format_utc(at);
    imds_control(
        &me,
        serde_json::json!({"spot_action": {"action": "terminate", "time": stamp}}),
    );
    let noticed = Instant::now();
    agent
        .wait_log("spot interruption (terminate)", Duration::from_secs(10))
        .await;
    agent
        .wait_log("the warning ran out with", Duration::from_secs(30))
        .await;
    // It used what was left of the warning, minus the 10 s margin: about 6 s, not 2 min.
    let took = noticed.elapsed();
    assert!(took < Duration::from_secs(14), "{took:?}");
    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("the warning ran out with"))
        .unwrap();
    assert!(line.contains("app.log"), "names the file left: {line}");
    assert!(
        !logs.contains("completed lifecycle action"),
        "nothing to complete: {logs}"
    );
}

/// `2026-11-24T06:53:04Z`
fn format_utc(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test]
async fn an_imds_outage_during_an_imds_triggered_hold_does_not_end_it() {
    let g = group("imdsfault", 1, 60).await;
    let me = g.instances[0].clone();
    let t = tempfile::tempdir().unwrap();
    let (data, sim, written) = shipping(t.path(), 150_000, &["--rate", "15000"]);
    let agent = Agent::launch(&me, &data, &[]);
    agent.wait_in_service().await;
    g.scale_in(&me).await;
    agent
        .wait_log("holding instance", Duration::from_secs(10))
        .await;
    // IMDS answers 500 for 3 s, then not at all for 4 s, while the drain runs.
    imds_control(
        &me,
        serde_json::json!({"fault": {"mode": "500", "seconds": 3}}),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    imds_control(
        &me,
        serde_json::json!({"fault": {"mode": "timeout", "seconds": 4}}),
    );
    g.wait_gone(&me, Duration::from_secs(60)).await;
    assert!(now_epoch() >= sim.last_ack() + 1.0);
    assert_eq!(acked_bytes(&data), written);
    let logs = agent.logs();
    assert!(logs.contains("IMDS answered HTTP 500"), "{logs}");
    assert!(
        logs.contains("completed lifecycle action with CONTINUE"),
        "{logs}"
    );
    assert_eq!(
        count(&logs, "this instance is terminating (noticed by"),
        1,
        "{logs}"
    );
}

#[tokio::test]
async fn the_imds_stand_in_speaks_imdsv2() {
    let g = group("imdsv2", 1, 60).await;
    let me = g.instances[0].clone();
    let base = imds_endpoint(&me);
    let state = format!("{base}latest/meta-data/autoscaling/target-lifecycle-state");
    assert_eq!(http("GET", &state, None).0, 401, "no token, no answer");
    assert_eq!(
        http("PUT", &format!("{base}latest/api/token"), None).0,
        400,
        "a token needs its TTL header"
    );
    assert_eq!(
        http(
            "GET",
            &format!("{}/_drainhook/imds/i-0nosuchinstance", endpoint()),
            None
        )
        .0,
        404,
        "unknown instances are refused"
    );
    // Its target state follows the emulator's: InService, then Terminated at the scale-in.
    let out = drainhook_imds_state(&base).await;
    assert_eq!(out.as_deref(), Some("InService"));
    g.scale_in(&me).await;
    assert_eq!(
        drainhook_imds_state(&base).await.as_deref(),
        Some("Terminated")
    );
}

/// The state as the agent's own IMDS client reads it (token PUT, then GET).
async fn drainhook_imds_state(base: &str) -> Option<String> {
    let c = drainhook::imds::ImdsClient::with_endpoint(base).unwrap();
    c.fetch_target_lifecycle_state().await.unwrap()
}
