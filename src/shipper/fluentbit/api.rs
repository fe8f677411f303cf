//! Fluent Bit's HTTP server (`HTTP_Server on`): what drainhook asks it, and how it reads the
//! answers.
//!
//! - `GET /api/v1/storage` (src/http_server/api/v1/storage.c): JSON built by
//!   src/flb_storage.c:86-342 every 5 s (`flb_sched_timer_cb_create(..., 5000, ...)`,
//!   flb_storage.c:381-384), only with `storage.metrics on`: `storage_layer.chunks.*` and
//!   `input_chunks.<input>.chunks.{total, up, down, busy, busy_size}`. Chunks of memory
//!   storage are listed too: this is the only outside view of them.
//! - `GET /api/v2/metrics` (src/http_server/api/v2/metrics.c:80-131): the cmetrics *text*
//!   encoding (lib/cmetrics/src/cmt_encode_text.c:466-620), rebuilt every second
//!   (src/flb_metrics_exporter.c:217), one line per sample:
//!   `2024-05-01T10:00:00.000000000Z fluentbit_output_dropped_records_total{name="es.0"} = 3`.
//!   The format has no crate; the lines' shape is taken from `format_metric` and nothing else
//!   of them is read.
//!
//! Requests go out through hyper (the AWS SDK's HTTP stack) on the async runtime, each
//! bounded by a short timeout, so a look never blocks the agent's heartbeats.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bound on one request, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a body (a metrics page is a few kB per plugin).
const MAX_BODY: usize = 8 << 20;

/// Where Fluent Bit's HTTP server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to (`0.0.0.0` is reached at 127.0.0.1, `::` at ::1).
    pub addr: String,
}

impl Endpoint {
    pub fn new(listen: &str, port: u16) -> Self {
        let host = match listen {
            "" | "0.0.0.0" => "127.0.0.1".to_string(),
            "::" | "[::]" => "[::1]".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        Endpoint {
            addr: format!("{host}:{port}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: the status and the body, or why not.
    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), String> {
        match tokio::time::timeout(TIMEOUT, self.get_unbounded(path)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
        }
    }

    async fn get_unbounded(&self, path: &str) -> Result<(u16, Bytes), String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let req = Request::get(path)
            .header(hyper::header::HOST, self.addr.as_str())
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let body = Limited::new(res.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        tokio::pin!(conn);
        tokio::pin!(exchange);
        // The connection is driven beside the exchange; it ends when the server closes.
        tokio::select! {
            r = &mut exchange => r,
            c = &mut conn => match c {
                Err(e) => Err(e.to_string()),
                // Closed after the response: let the exchange finish reading it.
                Ok(()) => exchange.await,
            },
        }
    }
}

/// Chunks per input, from `/api/v1/storage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageView {
    /// `input_chunks.<name>.chunks.total`.
    pub inputs: BTreeMap<String, u64>,
    /// `storage_layer.chunks.total_chunks`.
    pub total: u64,
}

/// Reads `/api/v1/storage`'s JSON.
pub fn parse_storage(body: &[u8]) -> Result<StorageView, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let inputs = v
        .get("input_chunks")
        .and_then(|i| i.as_object())
        .ok_or("no input_chunks object")?;
    let mut view = StorageView {
        total: v
            .pointer("/storage_layer/chunks/total_chunks")
            .and_then(|t| t.as_u64())
            .unwrap_or(0),
        ..StorageView::default()
    };
    for (name, i) in inputs {
        let total = i
            .pointer("/chunks/total")
            .and_then(|t| t.as_u64())
            .ok_or_else(|| format!("input {name:?} has no chunks.total"))?;
        view.inputs.insert(name.clone(), total);
    }
    Ok(view)
}

/// The counters drainhook follows, per output (by its `name` label), from `/api/v2/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// `fluentbit_output_dropped_records_total`: records given up on (errors, exhausted
    /// retries, no retry; src/flb_engine.c:689-850).
    pub dropped_records: BTreeMap<String, u64>,
    /// `fluentbit_output_retries_failed_total`: chunks abandoned after their last retry.
    pub retries_failed: BTreeMap<String, u64>,
    /// `fluentbit_output_proc_records_total` / `proc_bytes_total`: delivered.
    pub proc_records: BTreeMap<String, u64>,
    pub proc_bytes: BTreeMap<String, u64>,
    /// `fluentbit_routing_logs_drop_bytes_total`, summed over its (input, output) labels: the
    /// encoded bytes of dropped log records (src/flb_router.c:342-350; newer releases only).
    pub drop_bytes: Option<u64>,
}

impl Counters {
    pub fn delivered_bytes(&self) -> u64 {
        self.proc_bytes.values().sum()
    }

    /// Whether any counter went down since `base`: Fluent Bit restarted.
    pub fn restarted_since(&self, base: &Counters) -> bool {
        let down = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            then.iter().any(|(k, v)| now.get(k).is_some_and(|n| n < v))
        };
        down(&self.dropped_records, &base.dropped_records)
            || down(&self.retries_failed, &base.retries_failed)
            || down(&self.proc_records, &base.proc_records)
    }
}

/// Reads the cmetrics text lines drainhook needs; every other line is skipped. A line of
/// one of these counters that does not read is an error (never a silent 0).
pub fn parse_metrics(text: &str) -> Result<Counters, String> {
    let mut c = Counters::default();
    for line in text.lines() {
        // `<timestamp> <name>[{labels}] = <value>`
        let Some((_, rest)) = line.split_once(' ') else {
            continue;
        };
        let name_end = rest.find(['{', ' ']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        let slot = match name {
            "fluentbit_output_dropped_records_total" => Some(&mut c.dropped_records),
            "fluentbit_output_retries_failed_total" => Some(&mut c.retries_failed),
            "fluentbit_output_proc_records_total" => Some(&mut c.proc_records),
            "fluentbit_output_proc_bytes_total" => Some(&mut c.proc_bytes),
            "fluentbit_routing_logs_drop_bytes_total" => None,
            _ => continue,
        };
        let Some((labels_part, value)) = rest.rsplit_once(" = ") else {
            return Err(format!("{name}: no value in {line:?}"));
        };
        let value = value.trim();
        let v: f64 = value
            .parse()
            .map_err(|_| format!("{name}: value {value:?} is not a number"))?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("{name}: value {value:?} is not a count"));
        }
        let v = v as u64;
        match slot {
            Some(map) => {
                let output = label(&labels_part[name_end..], "name")
                    .ok_or_else(|| format!("{name}: no name label in {line:?}"))?;
                *map.entry(output.to_string()).or_default() += v;
            }
            None => *c.drop_bytes.get_or_insert(0) += v,
        }
    }
    Ok(c)
}

/// The value of `key` in `{a="x",key="y"}` (cmetrics writes values unescaped).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let inner = labels.strip_prefix('{')?.strip_suffix('}')?;
    let pat = format!("{key}=\"");
    let mut at = 0;
    while let Some(i) = inner[at..].find(&pat) {
        let start = at + i;
        if start == 0 || inner[..start].ends_with(',') {
            let v = &inner[start + pat.len()..];
            let end = v
                .find("\",")
                .unwrap_or_else(|| v.rfind('"').unwrap_or(v.len()));
            return Some(&v[..end]);
        }
        at = start + pat.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As cmt_encode_text writes them (fluent-bit 4.x, two outputs, one with drops).
    const METRICS: &str = "2026-01-02T10:00:00.123456789Z fluentbit_uptime{hostname=\"ip-10-0-0-1\"} = 3600
2026-01-02T10:00:00.123456789Z fluentbit_input_records_total{name=\"tail.0\"} = 5000
2026-01-02T10:00:00.123456789Z fluentbit_output_proc_records_total{name=\"http.0\"} = 4900
2026-01-02T10:00:00.123456789Z fluentbit_output_proc_records_total{name=\"stdout.1\"} = 5000
2026-01-02T10:00:00.123456789Z fluentbit_output_proc_bytes_total{name=\"http.0\"} = 490000
2026-01-02T10:00:00.123456789Z fluentbit_output_dropped_records_total{name=\"http.0\"} = 100
2026-01-02T10:00:00.123456789Z fluentbit_output_dropped_records_total{name=\"stdout.1\"} = 0
2026-01-02T10:00:00.123456789Z fluentbit_output_retries_failed_total{name=\"http.0\"} = 2
2026-01-02T10:00:00.123456789Z fluentbit_routing_logs_drop_bytes_total{input=\"tail.0\",output=\"http.0\"} = 10240
2026-01-02T10:00:00.123456789Z fluentbit_output_latency_seconds{input=\"tail.0\",output=\"http.0\"} = { buckets = { 0.5=1, +Inf=2 }, sum=1, count=2 }
";

    #[test]
    fn cmetrics_text_counters() {
        let c = parse_metrics(METRICS).unwrap();
        assert_eq!(c.dropped_records["http.0"], 100);
        assert_eq!(c.dropped_records["stdout.1"], 0);
        assert_eq!(c.retries_failed["http.0"], 2);
        assert_eq!(c.proc_bytes["http.0"], 490000);
        assert_eq!(c.drop_bytes, Some(10240));
        assert_eq!(c.delivered_bytes(), 490000);
    }

    #[test]
    fn static_labels_before_the_name_label() {
        let c = parse_metrics(
            "2026-01-02T10:00:00.000000000Z fluentbit_output_dropped_records_total{env=\"prod\",name=\"s3.0\"} = 1.2e+01\n",
        )
        .unwrap();
        assert_eq!(c.dropped_records["s3.0"], 12);
    }

    #[test]
    fn a_bad_counter_line_is_an_error() {
        let e = parse_metrics(
            "2026-01-02T10:00:00.000000000Z fluentbit_output_dropped_records_total{name=\"s3.0\"} = lots\n",
        )
        .unwrap_err();
        assert!(e.contains("lots"), "{e}");
        assert!(parse_metrics("x fluentbit_output_retries_failed_total = 1\n").is_err());
    }

    #[test]
    fn storage_json() {
        let v = parse_storage(br#"{"storage_layer":{"chunks":{"total_chunks":3,"mem_chunks":1,"fs_chunks":2,"fs_chunks_up":2,"fs_chunks_down":0}},"input_chunks":{"tail.0":{"status":{"overlimit":false,"mem_size":"1.2M","mem_limit":"0b"},"chunks":{"total":2,"up":2,"down":0,"busy":1,"busy_size":"1.0M"}},"cpu.1":{"status":{"overlimit":false,"mem_size":"0b","mem_limit":"0b"},"chunks":{"total":1,"up":1,"down":0,"busy":0,"busy_size":"0b"}}}}"#).unwrap();
        assert_eq!(v.total, 3);
        assert_eq!(v.inputs["tail.0"], 2);
        assert_eq!(v.inputs["cpu.1"], 1);
        assert!(parse_storage(b"{}").is_err());
        assert!(parse_storage(b"<html>").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(Endpoint::new("0.0.0.0", 2020).addr, "127.0.0.1:2020");
        assert_eq!(Endpoint::new("::", 2020).addr, "[::1]:2020");
        assert_eq!(Endpoint::new("10.1.2.3", 80).addr, "10.1.2.3:80");
        assert_eq!(Endpoint::new("fe80::1", 80).addr, "[fe80::1]:80");
    }
}
