//! The CloudWatch agent's state files: one per tailed file, in `file_state_folder`.
//!
//! The format, from aws/amazon-cloudwatch-agent (snapshot ab55b8da, v1.300071.0+9):
//! - The name is the tailed file's full path with `/`, space and `:` replaced by `_`
//!   (`internal/state/state.go:61-75`): `/var/log/app.log` → `_var_log_app.log`.
//! - Range format (v1.300057.0+, `internal/state/range.go:264-285,432-472`): line 1 the
//!   largest end offset, line 2 the tailed file's path, line 3 the comma-separated
//!   `start-end` ranges whose events are done (`0-5,10-15`). By default the agent keeps one
//!   range, `0-max` (`singleRangeTracker`, `max_persist_state` ≤ 1); with `logs.concurrency`
//!   above 1 it keeps up to `max_persist_state` = 2 × concurrency ranges and merges the two oldest
//!   when there are more (`collapseOldest`, range.go:384-410), so a gap can disappear.
//! - Old format (before v1.300057.0, `plugins/inputs/logfile/tailersrc.go:351-357` at
//!   v1.300050.0): `offset\npath`, never written while the offset is 0.
//! - No trailing newline; written with `os.WriteFile` (truncate, then write:
//!   `internal/state/manager.go:89-98`), so a reader can catch an empty or cut file. A
//!   complete file always has its path line equal to what its name escapes, and (range
//!   format) line 1 equal to the largest range end: a cut one fails one of these, and is read
//!   again, never taken for a smaller state.

use std::fmt;

/// Which of the two layouts a state file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `offset\npath` (agents before v1.300057.0, and a range tracker with no valid range).
    Offset,
    /// `max\npath\nstart-end,...` (v1.300057.0+).
    Ranges,
}

impl Format {
    pub const fn name(self) -> &'static str {
        match self {
            Format::Offset => "offset",
            Format::Ranges => "ranges",
        }
    }
}

/// One state file, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    /// Line 1: the largest end offset.
    pub max: u64,
    /// Line 2: the tailed file's path, as the agent named it.
    pub path: String,
    /// The done ranges `[start, end)`, sorted and merged (the old format: `[0, max)`).
    pub ranges: Vec<(u64, u64)>,
    pub format: Format,
}

/// Why a state file's text is not a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Cut by a write in progress (empty, no path line yet, a range cut short): read again.
    Torn(String),
    /// Not a state file of either format.
    Invalid(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Torn(r) => write!(f, "being written ({r})"),
            StateError::Invalid(r) => f.write_str(r),
        }
    }
}

/// The file name the agent gives the state of `path` (`state.go:69-75`).
pub fn escape(path: &str) -> String {
    path.chars()
        .map(|c| if matches!(c, '/' | ' ' | ':') { '_' } else { c })
        .collect()
}

/// Parses the text of the state file named `name` (its file name, to check the path line).
pub fn parse(name: &str, text: &[u8]) -> Result<StateFile, StateError> {
    if text.is_empty() {
        return Err(StateError::Torn("empty".into()));
    }
    let text =
        std::str::from_utf8(text).map_err(|_| StateError::Invalid("not UTF-8 text".into()))?;
    let lines: Vec<&str> = text.split('\n').collect();
    let max: u64 = lines[0].parse().map_err(|_| {
        StateError::Invalid(format!("line 1 is not an offset: {:?}", cut(lines[0])))
    })?;
    let Some(path) = lines.get(1).copied().filter(|p| !p.is_empty()) else {
        return Err(StateError::Torn("no path line yet".into()));
    };
    if escape(path) != name {
        // The name is the escaped path: a path line that is not is cut short.
        return Err(StateError::Torn(format!(
            "path line {:?} does not match the file name",
            cut(path)
        )));
    }
    match lines.len() {
        2 => Ok(StateFile {
            max,
            path: path.to_string(),
            ranges: if max > 0 { vec![(0, max)] } else { Vec::new() },
            format: Format::Offset,
        }),
        3 => {
            let ranges = parse_ranges(lines[2])?;
            let end = ranges.iter().map(|r| r.1).max().unwrap_or(0);
            if end != max {
                // The agent writes line 1 as the largest range end (range.go:443-464).
                return Err(StateError::Torn(format!(
                    "ranges end at {end}, line 1 says {max}"
                )));
            }
            Ok(StateFile {
                max,
                path: path.to_string(),
                ranges: merge(ranges),
                format: Format::Ranges,
            })
        }
        n => Err(StateError::Invalid(format!(
            "{n} lines; a state file has 2 or 3"
        ))),
    }
}

/// `0-5,10-15` (range.go:134-159). An open end (`5-`) is what the agent writes only for an
/// unbounded range, never in a state file: here it is a range cut short.
fn parse_ranges(line: &str) -> Result<Vec<(u64, u64)>, StateError> {
    if line.is_empty() {
        return Err(StateError::Torn("empty range line".into()));
    }
    let mut out = Vec::new();
    let parts: Vec<&str> = line.split(',').collect();
    for (i, part) in parts.iter().copied().enumerate() {
        let last = i + 1 == parts.len();
        let Some((a, b)) = part.split_once('-') else {
            return Err(StateError::Torn(format!(
                "range {:?} has no end",
                cut(part)
            )));
        };
        if b.is_empty() {
            return Err(StateError::Torn(format!(
                "range {:?} has no end",
                cut(part)
            )));
        }
        let (Ok(start), Ok(end)) = (a.parse::<u64>(), b.parse::<u64>()) else {
            return Err(StateError::Invalid(format!(
                "range {:?} is not start-end",
                cut(part)
            )));
        };
        if start >= end {
            let why = format!("range {start}-{end} is empty or reversed");
            // The last range may be cut short (`100-1` of `100-150`).
            return Err(if last {
                StateError::Torn(why)
            } else {
                StateError::Invalid(why)
            });
        }
        out.push((start, end));
    }
    Ok(out)
}

/// Sorted, with overlapping and adjacent ranges merged (as the agent's tracker does).
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn cut(s: &str) -> String {
    s.chars().take(60).collect()
}

/// What the done ranges say about a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Where the done bytes from 0 end (the first gap, or the end).
    pub prefix: u64,
    /// Done bytes within `[0, size)`.
    pub done: u64,
    /// Bytes within `[0, size)` not done: gaps, and the tail after the last range.
    pub pending: u64,
    /// The largest end is past the size: the file was truncated (the agent reads it again
    /// from 0, `tail.go:535-541`).
    pub truncated: bool,
    /// Ranges with a gap between them (`logs.concurrency` > 1).
    pub gaps: usize,
}

impl StateFile {
    /// Compares the done ranges with a file of `size` bytes.
    pub fn coverage(&self, size: u64) -> Coverage {
        coverage(&self.ranges, size)
    }
}

/// [`StateFile::coverage`] for sorted, merged ranges (none: nothing done).
pub fn coverage(ranges: &[(u64, u64)], size: u64) -> Coverage {
    let max = ranges.iter().map(|r| r.1).max().unwrap_or(0);
    if max > size {
        return Coverage {
            prefix: 0,
            done: 0,
            pending: size,
            truncated: true,
            gaps: 0,
        };
    }
    let done: u64 = ranges.iter().map(|&(s, e)| e.min(size) - s.min(size)).sum();
    let prefix = match ranges.first() {
        Some(&(0, e)) => e,
        _ => 0,
    };
    let gaps =
        ranges.len().saturating_sub(1) + usize::from(ranges.first().is_some_and(|r| r.0 > 0));
    Coverage {
        prefix,
        done,
        pending: size - done,
        truncated: false,
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_var_log_app.log";

    #[test]
    fn escapes_as_the_agent_does() {
        assert_eq!(escape("/var/log/app.log"), NAME);
        assert_eq!(escape("/srv/my logs/a:b.log"), "_srv_my_logs_a_b.log");
    }

    #[test]
    fn reads_both_formats() {
        let s = parse(NAME, b"120\n/var/log/app.log").unwrap();
        assert_eq!(
            (s.max, s.format, s.ranges.clone()),
            (120, Format::Offset, vec![(0, 120)])
        );
        let s = parse(NAME, b"120\n/var/log/app.log\n0-120").unwrap();
        assert_eq!(
            (s.max, s.format, s.ranges.clone()),
            (120, Format::Ranges, vec![(0, 120)])
        );
        let s = parse(NAME, b"150\n/var/log/app.log\n100-150,0-50").unwrap();
        assert_eq!(s.ranges, vec![(0, 50), (100, 150)]);
        let c = s.coverage(150);
        assert_eq!((c.prefix, c.done, c.pending, c.gaps), (50, 100, 50, 1));
    }

    #[test]
    fn a_cut_file_is_torn_never_a_smaller_state() {
        for cut in [
            &b""[..],
            b"120",
            b"120\n",
            b"120\n/var/log/ap",
            b"120\n/var/log/app.log\n",
            b"120\n/var/log/app.log\n0-",
            b"120\n/var/log/app.log\n0-12",
            b"150\n/var/log/app.log\n0-50,100-1",
        ] {
            assert!(
                matches!(parse(NAME, cut), Err(StateError::Torn(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(cut),
                parse(NAME, cut)
            );
        }
    }

    #[test]
    fn garbage_is_invalid() {
        for bad in [
            &b"abc\n/var/log/app.log"[..],
            b"1\n/var/log/app.log\nx-y",
            b"5\n/var/log/app.log\n5-5,0-5",
            b"1\n/var/log/app.log\n0-1\nmore",
        ] {
            assert!(
                matches!(parse(NAME, bad), Err(StateError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn coverage_against_the_size() {
        let r = [(0, 100)];
        assert_eq!(coverage(&r, 100).pending, 0);
        assert_eq!(coverage(&r, 130).pending, 30);
        let t = coverage(&r, 40);
        assert!(t.truncated);
        assert_eq!(t.pending, 40);
        assert_eq!(coverage(&[], 10).pending, 10);
        let late = coverage(&[(20, 100)], 100);
        assert_eq!((late.prefix, late.pending, late.gaps), (0, 20, 1));
    }
}
