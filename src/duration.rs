//! Durations as people write them: `90s`, `30m`, `1h`, `1h30m`, `500ms`.

use std::time::Duration;

/// The longest duration accepted: nothing drainhook waits for lasts a year, and a larger
/// value would overflow when added to a clock reading.
pub const MAX: Duration = Duration::from_secs(365 * 86_400);

/// Parses `90s`, `30m`, `1h`, `2d`, `500ms` or a sum such as `1h30m`. A bare number is seconds.
/// At most [`MAX`].
pub fn parse(s: &str) -> Result<Duration, String> {
    let d = parse_any(s)?;
    if d > MAX {
        return Err(format!("duration {s:?} is longer than a year"));
    }
    Ok(d)
}

fn parse_any(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 90s, 30m or 1h".into());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}; write e.g. 90s, 30m or 1h"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" | "sec" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ))
            }
        };
        let part = Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid duration {s:?}: out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration {s:?}: out of range"))?;
        rest = next;
    }
    Ok(total)
}

/// The inverse of [`parse`], for logs and `--help`: `1h30m`, `11s`, `250ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 && ms > 0 && d.as_secs() == 0 {
        return format!("{ms}ms");
    }
    let mut s = d.as_secs();
    if d.subsec_millis() >= 500 {
        s += 1;
    }
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 || out.is_empty() {
        out += &format!("{sec}s");
    }
    out
}

/// clap value parser.
pub fn arg(s: &str) -> Result<Duration, String> {
    parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_that_overflow_and_absurd_lengths_are_errors_not_panics() {
        // Found by `make fuzz` (fuzz/regressions/duration/): the sum overflowed Duration.
        let crash = include_str!(
            "../fuzz/regressions/duration/crash-71be99a8dcb1f5c6052c3dfef481f383145ba8bd"
        );
        assert!(parse(crash).is_err());
        assert!(parse("18446744073709551615").is_err(), "a bare number too");
        assert!(parse("99999999999999999999h").is_err());
        assert_eq!(parse("365d"), Ok(MAX));
        assert!(parse("366d").is_err());
    }

    #[test]
    fn parses_what_people_write() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("11").unwrap(), Duration::from_secs(11));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "abc", "10x", "m", "-5s"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(11)), "11s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
