//! The PostgreSQL server of the tests (`scripts/pg-test-cluster.sh`, which `.ci/run` runs).

use std::process::Command;

/// Whether a tool the test needs is here. Without it the test says so on stderr and is to
/// return early (it passes); under `CI=true` that is a failure instead, since CI installs
/// everything.
pub fn present_or_skip(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but {what} is missing"
        );
        eprintln!("skipped: {what} is missing");
    }
    present
}

/// A new database on the server whose URL is in the environment variable `var`
/// (`DOMO_TEST_PG_URL`, or `DOMO_TEST_PG_SYNC_URL` for the one with a synchronous standby);
/// its URL. `None` (the test skips) when the variable is not set, except under `CI=true`.
pub fn fresh_pg_database(var: &str) -> Option<String> {
    let base = std::env::var(var).ok();
    if !present_or_skip(
        base.is_some(),
        &format!("{var} (scripts/pg-test-cluster.sh)"),
    ) {
        return None;
    }
    let base = base?;
    let name = format!(
        "domo_t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let out = Command::new("psql")
        .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, _db) = base.rsplit_once('/').unwrap();
    Some(format!("{server}/{name}"))
}
