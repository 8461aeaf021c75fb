//! CURVE keys: `domo keygen`, and the global `--server-key`/`--key` that make every
//! connection to a broker a CURVE one.

use std::path::Path;
use std::process::ExitCode;

use domo_zmtp::curve::{readable_by_others, Certificate, CurveClient};
use domo_zmtp::KeyPair;

/// The CURVE keys of `--server-key` (the broker's public certificate) and `--key` (ours,
/// secret): both or neither. A secret certificate that others may read is used with a
/// warning on stderr: pyzmq writes them 0644.
///
/// # Errors
///
/// The message for a usage error: one flag without the other (naming the missing one), or a
/// file that cannot be used (naming its flag).
pub(crate) fn load(
    server_key: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<CurveClient>, String> {
    let Some(keys) = CurveClient::from_flags(server_key, key, "your")? else {
        return Ok(None);
    };
    let ours = key.unwrap_or(Path::new(""));
    if readable_by_others(ours).unwrap_or(false) {
        eprintln!(
            "domo: warning: {} is readable by group or others; chmod 600 it",
            ours.display()
        );
    }
    Ok(Some(keys))
}

/// Parses `--meta NAME=VALUE`: a name of letters, digits and `-_.$@&+/`, a value without
/// quotes or control characters (certificates quote values and have no escapes).
pub(crate) fn parse_meta(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE, e.g. call=echo,pay*"))?;
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.$@&+/".contains(c));
    if !name_ok {
        return Err(format!(
            "{name:?}: a metadata name is letters, digits and -_.$@&+/"
        ));
    }
    if value.chars().any(|c| c == '"' || c.is_control()) {
        return Err(format!(
            "{value:?}: a metadata value may not hold quotes or control characters"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `domo keygen NAME [--dir DIR] [--meta NAME=VALUE]...`: writes `DIR/NAME.key` and
/// `DIR/NAME.key_secret` (mode 0600), never over existing files, and prints both paths and
/// the public key.
pub(crate) fn keygen(name: &str, dir: &Path, meta: Vec<(String, String)>) -> ExitCode {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        eprintln!("domo: keygen: {name:?} is not a file name (give --dir for the directory)");
        return ExitCode::from(2);
    }
    let mut cert = Certificate::new(KeyPair::generate().secret);
    cert.metadata = meta;
    match cert.save(dir, name) {
        Ok((public, secret)) => {
            println!("public-key: {}", cert.public);
            println!("public: {}", public.display());
            if let Some(secret) = secret {
                println!("secret: {}", secret.display());
            }
            ExitCode::SUCCESS
        }
        // The error names an existing file; others concern the directory.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("domo: keygen: {e}; not overwritten");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("domo: keygen: cannot write into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_name_equals_value() {
        assert_eq!(
            parse_meta("call=echo,pay*"),
            Ok(("call".into(), "echo,pay*".into()))
        );
        assert_eq!(parse_meta("serve="), Ok(("serve".into(), String::new())));
        assert_eq!(
            parse_meta("a=b=c"),
            Ok(("a".into(), "b=c".into())),
            "the first = splits"
        );
        for bad in ["call", "=echo", "ca ll=echo", "call=\"echo\"", "call=a\nb"] {
            assert!(parse_meta(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_come_in_pairs() {
        assert!(load(None, None).unwrap().is_none());
        let err = load(Some(Path::new("a.key")), None).unwrap_err();
        assert!(err.starts_with("--server-key needs --key"), "{err}");
        let err = load(None, Some(Path::new("b.key_secret"))).unwrap_err();
        assert!(err.starts_with("--key needs --server-key"), "{err}");
        let err = load(Some(Path::new("/nonexistent/a.key")), Some(Path::new("b"))).unwrap_err();
        assert!(
            err.starts_with("--server-key /nonexistent/a.key: "),
            "{err}"
        );
    }
}
