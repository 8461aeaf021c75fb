//! `domo keygen` as a real binary: the files it writes, their modes, no overwriting, and
//! certificates exchanged with pyzmq (`zmq.auth`) both ways.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use domo_zmtp::curve::Certificate;

const DOMO: &str = env!("CARGO_BIN_EXE_domo");

fn domo(args: &[&str]) -> Output {
    Command::new(DOMO)
        .args(args)
        .env_remove("DOMO_SERVER_KEY")
        .env_remove("DOMO_KEY")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `domo keygen NAME --dir DIR [ARGS]`, which must succeed; returns its stdout.
fn keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    let mut all = vec!["keygen", name, "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = domo(&all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_a_public_and_a_private_secret_certificate_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = keygen(
        dir.path(),
        "alice",
        &["--meta", "call=echo,pay*", "--meta", "serve=echo"],
    );
    let public = dir.path().join("alice.key");
    let secret = dir.path().join("alice.key_secret");
    let lines: Vec<&str> = stdout.lines().collect();
    let [key_line, public_line, secret_line] = lines[..] else {
        panic!("three lines expected: {stdout}")
    };
    assert_eq!(public_line, format!("public: {}", public.display()));
    assert_eq!(secret_line, format!("secret: {}", secret.display()));
    let printed = key_line.strip_prefix("public-key: ").unwrap();

    let cert = Certificate::load(&public).unwrap();
    assert_eq!(cert.public.to_string(), printed);
    assert!(cert.secret.is_none(), "the public file holds no secret");
    assert_eq!(cert.meta("call"), Some("echo,pay*"));
    assert_eq!(cert.meta("serve"), Some("echo"));
    let full = Certificate::load(&secret).unwrap();
    assert_eq!(full.public, cert.public);
    assert_eq!(full.secret.unwrap().public_key(), cert.public);
    #[cfg(unix)]
    {
        assert_eq!(mode(&secret), 0o600, "the secret is the owner's alone");
        assert_eq!(
            mode(&public) & 0o444,
            0o444,
            "the public file is for sharing"
        );
    }

    let before = (
        std::fs::read(&public).unwrap(),
        std::fs::read(&secret).unwrap(),
    );
    let again = domo(&["keygen", "alice", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    let after = (
        std::fs::read(&public).unwrap(),
        std::fs::read(&secret).unwrap(),
    );
    assert_eq!(before, after, "nothing was overwritten");

    let bad = domo(&["keygen", "x", "--meta", "no-equals-sign"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
}

/// Whether `python3` can import pyzmq. Without it the interop test is skipped with a
/// reason, except on CI (`CI` set), where pyzmq is installed and its absence is a failure.
fn pyzmq_available() -> bool {
    let imports = Command::new("python3")
        .args(["-c", "import zmq"])
        .output()
        .is_ok_and(|o| o.status.success());
    let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        imports || !on_ci,
        "CI is set but `python3 -c \"import zmq\"` fails: install pyzmq (pip install pyzmq)"
    );
    if !imports {
        eprintln!("skipped: pyzmq is not installed (pip install pyzmq); CI runs this test");
    }
    imports
}

/// Runs a python3 snippet with `args` and returns its stdout lines.
fn python(script: &str, args: &[&Path]) -> Vec<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "python3: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn pyzmq_reads_our_certificates_and_we_read_pyzmq_s() {
    if !pyzmq_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // Ours, read by zmq.auth; libzmq derives the same public key from our secret.
    keygen(dir.path(), "ours", &["--meta", "call=echo"]);
    let public = dir.path().join("ours.key");
    let secret = dir.path().join("ours.key_secret");
    let theirs = python(
        "import sys, zmq, zmq.auth\n\
         pub, sec = zmq.auth.load_certificate(sys.argv[1])\n\
         pub_only, none = zmq.auth.load_certificate(sys.argv[2])\n\
         print(pub.decode()); print(sec.decode()); print(pub_only.decode()); print(none)\n\
         print(zmq.curve_public(sec).decode())\n",
        &[&secret, &public],
    );
    let cert = Certificate::load(&secret).unwrap();
    let ours_secret = cert.secret.as_ref().unwrap().to_z85();
    let expected = [
        cert.public.to_string(),
        ours_secret.to_string(),
        cert.public.to_string(),
        "None".to_string(),
        cert.public.to_string(),
    ];
    assert_eq!(theirs, expected);

    // pyzmq's, read by Certificate::load and accepted by `domo --key`.
    let made = python(
        "import sys, zmq.auth\n\
         pub_file, sec_file = zmq.auth.create_certificates(sys.argv[1], 'py', metadata={'call': 'echo, pay*'})\n\
         pub, sec = zmq.auth.load_certificate(sec_file)\n\
         print(pub.decode()); print(sec.decode())\n",
        &[dir.path()],
    );
    let py_public = dir.path().join("py.key");
    let py_secret = dir.path().join("py.key_secret");
    let cert = Certificate::load(&py_secret).unwrap();
    assert_eq!(cert.public.to_string(), made[0]);
    assert_eq!(*cert.secret.as_ref().unwrap().to_z85(), made[1]);
    assert_eq!(cert.meta("call"), Some("echo, pay*"));
    assert_eq!(Certificate::load(&py_public).unwrap().public, cert.public);
    // Nothing listens on port 1: the keys load (no usage error), the request finds no broker.
    let out = domo(&[
        "--broker",
        "tcp://127.0.0.1:1",
        "--server-key",
        py_public.to_str().unwrap(),
        "--key",
        py_secret.to_str().unwrap(),
        "call",
        "echo",
        "--timeout",
        "100ms",
        "--retries",
        "0",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no broker reachable"), "{stderr}");
    // pyzmq leaves the secret's mode to the umask (0644 under the usual 022): then a warning.
    #[cfg(unix)]
    if mode(&py_secret) & 0o077 != 0 {
        assert!(stderr.contains("readable by group or others"), "{stderr}");
    }
}
