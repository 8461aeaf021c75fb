//! Human-readable durations for flags and configuration: `"2500ms"`, `"30s"`, `"5m"`, `"1h"`, `"7d"`
//! (`humantime`'s syntax, as in `domo`).

use std::time::Duration;

/// Parses a duration in the `humantime` syntax (the one `domo` uses too): one or more
/// `<number><unit>` parts, e.g. `2500ms`, `30s`, `5m`, `1h`, `7d` or `1h 30m`. A bare number is
/// refused, so a value is never read in a unit its writer did not mean.
///
/// # Errors
/// A one-line message naming the problem.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("invalid duration {text:?}: missing unit (ms, s, m, h or d)")
        }
        other => format!("invalid duration {text:?}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("2500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals_say_why() {
        assert!(parse_duration("2500").unwrap_err().contains("missing unit"));
        assert!(parse_duration("ms")
            .unwrap_err()
            .starts_with("invalid duration"));
        assert!(parse_duration("3 parsecs")
            .unwrap_err()
            .contains("unknown time unit"));
        assert_eq!(
            parse_duration("3 days"),
            Ok(Duration::from_secs(3 * 86_400))
        );
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }
}
