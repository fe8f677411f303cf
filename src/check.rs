//! `drainhook check`: what a drain would watch (each shipper's state, its queue, the tracked
//! files and what is pending), and whether "drained" can be exact here. The installer prints
//! it and the agent logs it at start-up, so a setup that cannot be judged exactly is known
//! before the first scale-in, not after it.

use crate::backlog::{plural, Backlog};
use crate::drain::look_all;
use crate::shipper::{self, Spec};
use std::fmt::Write as _;

/// What `check` found.
#[derive(Debug)]
pub struct Verdict {
    /// The backlog of every source found (absent when one could not be read).
    pub backlog: Option<Backlog>,
    /// Found but not waited for (a stale Elastic Agent home, ...).
    pub notes: Vec<String>,
    /// Why nothing could be judged at all (no shipper, an unreadable state or config).
    pub error: Option<String>,
}

impl Verdict {
    /// An exact drain is possible: shippers were found, read, and each one's state proves
    /// delivery.
    pub fn exact(&self) -> bool {
        self.error.is_none()
            && self
                .backlog
                .as_ref()
                .is_some_and(|b| b.inexact().is_empty())
    }

    /// 0 exact, 1 error, 2 not exact.
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() {
            crate::exit::ERROR
        } else if self.exact() {
            0
        } else {
            2
        }
    }

    /// One line: what the agent logs at start-up and the installer prints last.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("cannot judge: {e}");
        }
        let Some(b) = &self.backlog else {
            return "cannot judge: nothing read".into();
        };
        let who: Vec<&str> = b.sources.iter().map(|s| s.owner.as_str()).collect();
        let inexact = b.inexact();
        if inexact.is_empty() {
            format!(
                "an exact drain is possible: {} found ({}), each judged from its own proof of delivery",
                plural(who.len(), "source"),
                who.join(", ")
            )
        } else {
            format!("\"drained\" CANNOT BE EXACT here: {}", inexact.join("; "))
        }
    }

    /// The whole report a person reads.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(b) = &self.backlog {
            for (i, s) in b.sources.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let _ = writeln!(out, "{}", s.title());
                if !s.proof.is_empty() {
                    let _ = writeln!(out, "delivery proven by: {}", s.proof);
                }
                out += &s.to_table();
                for r in &s.inexact {
                    let _ = writeln!(out, "not exact: {r}");
                }
            }
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "{n}");
        }
        let _ = writeln!(out, "verdict: {}", self.summary());
        out
    }
}

/// Finds the shippers as a drain would, reads each once, and judges.
pub async fn check(spec: &Spec) -> Verdict {
    let d = match shipper::detect(spec) {
        Ok(d) => d,
        Err(e) => {
            return Verdict {
                backlog: None,
                notes: Vec::new(),
                error: Some(e.to_string()),
            }
        }
    };
    let notes = d.notes;
    let mut sources = d.sources;
    match look_all(&mut sources).await {
        Ok(b) => Verdict {
            backlog: Some(b),
            notes,
            error: None,
        },
        Err(e) => Verdict {
            backlog: None,
            notes,
            error: Some(e.to_string()),
        },
    }
}
