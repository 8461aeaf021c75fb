//! Durations for the flags (`--timeout 2500ms`, `--older-than 7d`, `--heartbeat 5s`): the
//! `humantime` syntax, one or more `<number><unit>` parts such as `2500ms`, `30s`, `5m`, `1h`,
//! `7d` or `1h 30m`.

use std::time::Duration;

/// Parses a duration with [`humantime::parse_duration`]. A bare number is refused, so a value
/// is never read in a unit its writer did not mean; that refusal gets a message of its own
/// (humantime's would speak of an unknown unit `""`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("missing unit in {text:?}: write e.g. 2500ms, 5s, 5m, 1h or 7d")
        }
        other => format!("invalid duration {text:?}: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_the_docs_and_tests_use_parses() {
        let cases = [
            ("2500ms", Duration::from_millis(2500)),
            ("500ms", Duration::from_millis(500)),
            ("200ms", Duration::from_millis(200)),
            ("100ms", Duration::from_millis(100)),
            ("1s", Duration::from_secs(1)),
            ("5s", Duration::from_secs(5)),
            ("30s", Duration::from_secs(30)),
            ("0s", Duration::ZERO),
            (" 0s ", Duration::ZERO),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("12h", Duration::from_secs(12 * 3600)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("60000ms", Duration::from_secs(60)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn humantime_also_takes_compound_and_long_forms() {
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("3 days"),
            Ok(Duration::from_secs(3 * 86_400))
        );
    }

    #[test]
    fn refusals_say_why() {
        let bare = parse_duration("2500").unwrap_err();
        assert!(bare.contains("missing unit"), "{bare}");
        for text in ["", "ms", "-1s", "5 parsecs", "99999999999999999999s"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.starts_with("invalid duration"), "{text:?}: {error}");
        }
    }
}
