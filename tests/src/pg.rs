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

/// Whether Debian's PostgreSQL server is installed (tests that start servers of their own
/// need it); under `CI=true` its absence is a failure (see [`present_or_skip`]).
pub fn pg_server_or_skip() -> bool {
    let server = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("bin/pg_ctl").is_file())
        })
        .unwrap_or(false);
    present_or_skip(server, "the PostgreSQL server (apt-get install postgresql)")
}

/// Throw-away PostgreSQL servers of a test's own (`scripts/pg-test-cluster.sh`), stopped and
/// removed when dropped.
pub struct PgCluster {
    /// The variables the script exported (`DOMO_TEST_PG_URL`, `DOMO_PG_HA_DIR`...).
    vars: Vec<(String, String)>,
    /// The directory to stop.
    dir: String,
}

impl PgCluster {
    fn script() -> String {
        format!(
            "{}/../scripts/pg-test-cluster.sh",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    /// Runs `pg-test-cluster.sh ARGS...` (`start PORT`, `start-tls`, `ha-start`); `dir_var`
    /// names the exported variable that holds the directory to stop.
    pub fn start(args: &[&str], dir_var: &str) -> Self {
        let out = Command::new("bash")
            .arg(Self::script())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-test-cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `export A='x' B='y'`
        let line = String::from_utf8(out.stdout).unwrap();
        let vars: Vec<(String, String)> = line
            .trim()
            .trim_start_matches("export ")
            .split("' ")
            .filter_map(|pair| {
                let (name, value) = pair.split_once("='")?;
                Some((name.to_string(), value.trim_end_matches('\'').to_string()))
            })
            .collect();
        let mut cluster = Self {
            vars,
            dir: String::new(),
        };
        cluster.dir = cluster.var(dir_var);
        cluster
    }

    /// The value of an exported variable.
    pub fn var(&self, name: &str) -> String {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("pg-test-cluster.sh exported no {name}: {:?}", self.vars))
    }

    /// Runs `pg-test-cluster.sh WHAT DIR` (`ha-crash`, `ha-promote`...).
    pub fn run(&self, what: &str) {
        let out = Command::new("bash")
            .args([&Self::script(), what, &self.dir])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([&Self::script(), "stop", &self.dir])
            .output();
    }
}
