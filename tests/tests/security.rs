//! CURVE security of a real `domo-broker`: the `[security]` files refused with a one-line
//! message and exit 3 (or 2 for the configuration itself), and, end to end, who may connect
//! and what each key may call or serve. Every wait is bounded; every process is killed on
//! drop; ports are ephemeral.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use domo_tests::*;

/// Runs the broker binary to completion: exit code, stdout, stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(DOMO_BROKER);
    cmd.args(args);
    for var in [
        "DOMO_CONFIG",
        "DOMO_SECURITY__MECHANISM",
        "DOMO_SECURITY__SECRET_KEY_FILE",
        "DOMO_SECURITY__AUTHORIZED_KEYS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// `--check-config` and a start with `args`: both must fail with `code` and exactly
/// `message` (one line) on stderr.
fn refused(args: &[String], code: i32, message: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = [
        &[
            "--bind",
            "tcp://127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--no-titanic",
        ][..],
        &args,
    ]
    .concat();
    for args in [[&["--check-config"][..], &args].concat(), start] {
        let (status, out, err) = run(&args);
        assert_eq!(status, Some(code), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err, format!("domo-broker: {message}\n"), "{args:?}");
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// === the key files ===

#[test]
fn check_config_accepts_curve_with_good_key_files() {
    let keys = CurveKeys::new("sec-good");
    keys.authorize("alice", &[("call", "echo, mmi.*")]);
    let args = [vec!["--check-config".to_string()], keys.broker_args()].concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration OK"), "{out}");
}

#[test]
fn a_secret_key_readable_by_group_or_others_is_refused_with_exit_3() {
    let keys = CurveKeys::new("sec-mode");
    chmod(&keys.secret_file, 0o644);
    let message = format!(
        "security.secret_key_file: {} is readable by group or others (chmod 600 it)",
        keys.secret_file.display()
    );
    refused(&keys.broker_args(), 3, &message);
    chmod(&keys.secret_file, 0o600);
    let (code, _, err) = run(&[
        &["--check-config"][..],
        &keys
            .broker_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ]
    .concat());
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn missing_or_malformed_key_files_exit_3_naming_the_key_and_file() {
    let keys = CurveKeys::new("sec-files");
    let mut args = keys.broker_args();
    // The secret key file is missing.
    let missing = keys.dir().path().join("gone.key_secret");
    args[3] = missing.display().to_string();
    refused(
        &args,
        3,
        &format!(
            "security.secret_key_file: {}: cannot read: No such file or directory (os error 2)",
            missing.display()
        ),
    );
    // A malformed certificate among the authorized keys: its file and line.
    keys.authorize("alice", &[]);
    let bad = keys.authorized.join("bob.key");
    std::fs::write(
        &bad,
        "metadata\n    call = \"echo\"\ncurve\n    public-key = \"x\"\n",
    )
    .unwrap();
    let message = format!(
        "security.authorized_keys: {}:4: a CURVE key is 40 Z85 characters",
        bad.display()
    );
    let (code, _, err) = run(&[
        &["--check-config"][..],
        &keys
            .broker_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ]
    .concat());
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.starts_with(&format!("domo-broker: {message}")) && err.lines().count() == 1,
        "{err}"
    );
    // Rights that do not parse.
    let key = domo_zmtp::KeyPair::generate().public;
    let text = format!("metadata\n    serve = \"pay*ments\"\ncurve\n    public-key = \"{key}\"\n");
    std::fs::write(&bad, text).unwrap();
    refused(
        &keys.broker_args(),
        3,
        &format!(
            "security.authorized_keys: {}:2: metadata serve: \"pay*ments\": `*` may only end a \
             pattern",
            bad.display()
        ),
    );
    // The directory is missing.
    let mut args = keys.broker_args();
    let nowhere = keys.dir().path().join("nowhere");
    args[5] = nowhere.display().to_string();
    refused(
        &args,
        3,
        &format!(
            "security.authorized_keys: {}: cannot read: No such file or directory (os error 2)",
            nowhere.display()
        ),
    );
}

#[test]
fn curve_without_its_files_or_an_unknown_mechanism_is_a_configuration_error_exit_2() {
    let dir = TempDir::new("sec-config");
    let file = dir.file("broker.toml", "[security]\nmechanism = \"curve\"\n");
    refused(
        &["--config".into(), file.display().to_string()],
        2,
        &format!(
            "{}:1: security.secret_key_file: required with mechanism = \"curve\" (the broker's \
             secret certificate, e.g. \"/etc/domo/broker.key_secret\")",
            file.display()
        ),
    );
    let file = dir.file("plain.toml", "[security]\nmechanism = \"plain\"\n");
    refused(
        &["--config".into(), file.display().to_string()],
        2,
        &format!(
            "{}:2: security.mechanism: unknown variant `plain`, expected `null` or `curve`",
            file.display()
        ),
    );
    // The flag is checked by clap, with its usage error (exit 2 too).
    let (code, _, err) = run(&["--check-config", "--security-mechanism", "plain"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid value 'plain'"), "{err}");
}
