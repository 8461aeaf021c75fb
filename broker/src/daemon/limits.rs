//! Resource limits the daemon checks at start.

use tracing::{info, warn};

/// Fewer open files than this is too few for a broker: every client and worker is a TCP
/// connection (the shipped unit sets `LimitNOFILE=65536`).
const FEW_FILES: u64 = 4096;

/// Logs the open-file limit, with a warning when it would cap the peers the broker can take.
pub fn log_fd_limit() {
    let Some((soft, hard)) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_limit(&text))
    else {
        return;
    };
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let (soft_text, hard_text) = (show(soft), show(hard));
    match soft {
        Some(n) if n < FEW_FILES => warn!(
            soft = %soft_text,
            hard = %hard_text,
            "Open-file limit is low: each client and worker connection takes one; raise it \
             (ulimit -n, or LimitNOFILE= in the unit)"
        ),
        _ => {
            info!(soft = %soft_text, hard = %hard_text, "Open-file limit (one per connected peer)")
        }
    }
}

/// The "Max open files" soft and hard limits from `/proc/self/limits` text; `None` for
/// "unlimited".
fn open_files_limit(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    let mut next = || -> Option<Option<u64>> {
        let v = values.next()?;
        Some(if v == "unlimited" {
            None
        } else {
            Some(v.parse().ok()?)
        })
    };
    Some((next()?, next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95000                95000                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some((Some(1024), Some(524_288))));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_limit(unlimited), Some((None, None)));
        assert_eq!(open_files_limit("Max processes 1 1 processes\n"), None);
        assert_eq!(open_files_limit("Max open files  lots  1 files\n"), None);
    }
}
