//! The CloudWatch agent's own log, followed from where a drain began: the only place where
//! a dropped batch shows.
//!
//! Since v1.300059.0 (#1789) a batch the agent gives up on advances the state files as a
//! delivered one does (`batch.updateState()`), so the state proves "done", not "delivered".
//! The agent says so only in its log, in these lines
//! (`plugins/outputs/cloudwatchlogs/internal/pusher/sender.go:93,106,124,133`, and for single
//! events `queue.go:80,90`):
//! - `All %v retries to %v/%v failed for PutLogEvents, request dropped.`
//! - `Stop requested after %v retries to %v/%v failed for PutLogEvents, request dropped.`
//! - `Non aws error received when sending logs to %v/%v: %v. CloudWatch agent will not retry
//!   and logs will be missing!`
//! - `%v, will not retry the request` (InvalidParameterException; a DataAlreadyAccepted one
//!   means CloudWatch has the events already, so it is not a loss)
//! - `The log entry in (%v/%v) with timestamp (%v) ... is out of accepted time range.
//!   Discard the log entry.` (one event)
//!
//! None of them says how many bytes the batch held. The file is kept open between reads, so
//! when the agent rotates its log (lumberjack renames it, then may compress and delete the
//! old one) the rest of the old file is still read before the new one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// At most this much of the log is read per look (the rest at the next one), so a look stays
/// short even after a flood of agent messages.
const READ_PER_LOOK: u64 = 4 << 20;

/// What the agent gave up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// `All N retries to G/S failed for PutLogEvents, request dropped.`
    RetriesExhausted,
    /// `Stop requested after N retries ... request dropped.`
    StopRequested,
    /// `Non aws error received ... logs will be missing!`
    NonAwsError,
    /// `..., will not retry the request` (InvalidParameterException).
    Rejected,
    /// One event whose timestamp CloudWatch would not accept, discarded before batching.
    EventDiscarded,
}

impl DropKind {
    /// A whole batch (as opposed to one event).
    pub const fn is_batch(self) -> bool {
        !matches!(self, DropKind::EventDiscarded)
    }
}

/// One drop found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drop {
    pub kind: DropKind,
    /// `group/stream` as the line names it (both may contain `/`), when it does.
    pub target: Option<String>,
    /// The line itself, cut at 300 characters.
    pub line: String,
}

/// Classifies one line of the agent's log (`prev`: the line before, for messages the AWS
/// SDK spreads over two lines).
pub fn parse_line(line: &str, prev: &str) -> Option<Drop> {
    let between = |a: &str, b: &str| -> Option<String> {
        let i = line.find(a)? + a.len();
        let j = line[i..].find(b)? + i;
        Some(line[i..j].to_string())
    };
    let (kind, target) = if line.contains("failed for PutLogEvents, request dropped.") {
        let kind = if line.contains("Stop requested after ") {
            DropKind::StopRequested
        } else if line.contains("All ") {
            DropKind::RetriesExhausted
        } else {
            return None;
        };
        (kind, between(" retries to ", " failed for PutLogEvents"))
    } else if line.contains("Non aws error received when sending logs to ")
        && line.contains("will not retry and logs will be missing")
    {
        (
            DropKind::NonAwsError,
            between("Non aws error received when sending logs to ", ": "),
        )
    } else if line.contains("will not retry the request") {
        if line.contains("DataAlreadyAcceptedException")
            || prev.contains("DataAlreadyAcceptedException")
        {
            return None; // CloudWatch has these events already
        }
        (DropKind::Rejected, None)
    } else if line.contains("is out of accepted time range. Discard the log entry.") {
        (
            DropKind::EventDiscarded,
            between("The log entry in (", ") with timestamp"),
        )
    } else {
        return None;
    };
    Some(Drop {
        kind,
        target,
        line: line.trim_end().chars().take(300).collect(),
    })
}

/// The agent's log, read from a position on.
pub struct AgentLog {
    path: PathBuf,
    /// The file being read (kept open: a rotated log is read to its end through it).
    file: Option<File>,
    ino: u64,
    pos: u64,
    /// An unfinished last line, kept for the next read.
    carry: Vec<u8>,
    prev: String,
}

impl AgentLog {
    /// Follows `path` from its current end (a log that does not exist yet: from its start
    /// when it appears).
    pub fn at_end(path: &Path) -> io::Result<AgentLog> {
        let mut log = AgentLog {
            path: path.to_path_buf(),
            file: None,
            ino: 0,
            pos: 0,
            carry: Vec::new(),
            prev: String::new(),
        };
        match File::open(path) {
            Ok(f) => {
                let m = f.metadata()?;
                log.ino = m.ino();
                log.pos = m.len();
                log.file = Some(f);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The drops written since the last read.
    pub fn read_new(&mut self) -> io::Result<Vec<Drop>> {
        let mut out = Vec::new();
        let mut budget = READ_PER_LOOK;
        loop {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => {
                        self.ino = f.metadata()?.ino();
                        self.pos = 0;
                        self.carry.clear();
                        self.file = Some(f);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e),
                }
            }
            let Some(f) = self.file.as_mut() else {
                return Ok(out);
            };
            let len = f.metadata()?.len();
            if len < self.pos {
                // Truncated in place: read it again from its start.
                self.pos = 0;
                self.carry.clear();
            }
            let n = (len - self.pos).min(budget);
            if n > 0 {
                f.seek(SeekFrom::Start(self.pos))?;
                let mut buf = Vec::with_capacity(n as usize);
                f.take(n).read_to_end(&mut buf)?;
                self.pos += buf.len() as u64;
                budget -= buf.len() as u64;
                self.scan(&buf, &mut out);
            }
            if budget == 0 {
                return Ok(out);
            }
            // At the end of this file: has the path moved on to a new one (rotation)?
            let moved = match std::fs::metadata(&self.path) {
                Ok(m) => m.ino() != self.ino,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            if !moved {
                return Ok(out);
            }
            self.flush_carry(&mut out);
            self.file = None;
        }
    }

    fn scan(&mut self, buf: &[u8], out: &mut Vec<Drop>) {
        self.carry.extend_from_slice(buf);
        let Some(last_nl) = self.carry.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = self.carry.split_off(last_nl + 1);
        let done = std::mem::replace(&mut self.carry, rest);
        for line in done.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.line(line, out);
        }
    }

    fn flush_carry(&mut self, out: &mut Vec<Drop>) {
        let carry = std::mem::take(&mut self.carry);
        if !carry.is_empty() {
            self.line(&carry, out);
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Drop>) {
        let line = String::from_utf8_lossy(line);
        if let Some(d) = parse_line(&line, &self.prev) {
            out.push(d);
        }
        self.prev = line.chars().take(400).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_agent_s_drop_lines() {
        let d = parse_line("2026-08-07T10:00:00Z E! [outputs.cloudwatchlogs] All 5 retries to /aws/app/i-0abc failed for PutLogEvents, request dropped.", "").unwrap();
        assert_eq!(d.kind, DropKind::RetriesExhausted);
        assert_eq!(d.target.as_deref(), Some("/aws/app/i-0abc"));
        let d = parse_line("2026-08-07T10:00:00Z E! [outputs.cloudwatchlogs] Stop requested after 2 retries to app/s failed for PutLogEvents, request dropped.", "").unwrap();
        assert_eq!(
            (d.kind, d.target.as_deref()),
            (DropKind::StopRequested, Some("app/s"))
        );
        let d = parse_line("E! [outputs.cloudwatchlogs] Non aws error received when sending logs to app/s: boom. CloudWatch agent will not retry and logs will be missing!", "").unwrap();
        assert_eq!(
            (d.kind, d.target.as_deref()),
            (DropKind::NonAwsError, Some("app/s"))
        );
        let d = parse_line(
            "\tstatus code: 400, request id: 1, will not retry the request",
            "E! InvalidParameterException: Log event too large",
        )
        .unwrap();
        assert_eq!(d.kind, DropKind::Rejected);
        assert!(parse_line(
            "\tstatus code: 400, request id: 1, will not retry the request",
            "E! DataAlreadyAcceptedException: x"
        )
        .is_none());
        let d = parse_line("E! [outputs.cloudwatchlogs] The log entry in (app/s) with timestamp (2020-01-01) comparing to the current time (2026-01-01) is out of accepted time range. Discard the log entry.", "").unwrap();
        assert_eq!(
            (d.kind, d.target.as_deref()),
            (DropKind::EventDiscarded, Some("app/s"))
        );
        assert!(parse_line(
            "W! [outputs.cloudwatchlogs] Retried 3 time, going to sleep 2s before retrying.",
            ""
        )
        .is_none());
    }

    #[test]
    fn follows_from_the_end_across_a_rotation() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("amazon-cloudwatch-agent.log");
        let drop_line = "E! All 1 retries to g/s failed for PutLogEvents, request dropped.\n";
        std::fs::write(&p, drop_line).unwrap();
        let mut log = AgentLog::at_end(&p).unwrap();
        assert!(
            log.read_new().unwrap().is_empty(),
            "what was there before is not counted"
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(drop_line.as_bytes()).unwrap();
        f.write_all(b"E! All 2 retries to g/s failed for PutLogEvents, req")
            .unwrap();
        assert_eq!(log.read_new().unwrap().len(), 1);
        f.write_all(b"uest dropped.\n").unwrap();
        drop(f);
        // rotated: renamed away and a new file started; the old one's rest is still read
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(drop_line.as_bytes()).unwrap();
        std::fs::rename(&p, t.path().join("amazon-cloudwatch-agent-1.log")).unwrap();
        std::fs::write(&p, drop_line).unwrap();
        assert_eq!(log.read_new().unwrap().len(), 3);
        assert!(log.read_new().unwrap().is_empty());
    }
}
