//! Durations on the command line: `30s`, `5m`, `1h`, `90d` (and combinations like `1h30m`).

use std::time::Duration;

/// Parses a positive duration; the error is one sentence with examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is not a duration; write it like 30s, 5m, 1h or 90d"))?;
    if d.is_zero() {
        return Err(format!("{text:?} is zero; give a duration of at least 1s"));
    }
    Ok(d)
}

/// `1h 30m` style, rounded to seconds, for messages.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn nonsense_and_zero_are_refused_with_examples() {
        assert_eq!(parse_duration("soon").unwrap_err(), "\"soon\" is not a duration; write it like 30s, 5m, 1h or 90d");
        assert_eq!(parse_duration("10").unwrap_err(), "\"10\" is not a duration; write it like 30s, 5m, 1h or 90d");
        assert!(parse_duration("0s").unwrap_err().contains("at least 1s"));
    }

    #[test]
    fn formatting_rounds_to_seconds() {
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m 30s");
    }
}
