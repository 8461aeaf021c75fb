//! `domo titanic submit|reply|close`: the Titanic (RFC 9) services from the command line.

use std::process::ExitCode;

use bytes::Bytes;
use domo_client::{TitanicId, TitanicReply};

use crate::output::{frame_text, frames_json};
use crate::RequestArgs;

/// `domo titanic submit SERVICE [FRAME]...`: prints the request id once it is stored.
pub(crate) async fn submit(
    args: &RequestArgs,
    service: &str,
    frames: Vec<String>,
    key: Option<&str>,
) -> ExitCode {
    let body: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    let id = match (crate::call::client(args), key) {
        (Ok(c), Some(key)) => c.submit_keyed(key, service.to_string(), body).await,
        (Ok(c), None) => c.submit(service.to_string(), body).await,
        (Err(e), _) => Err(e),
    };
    match id {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(error) => crate::call::fail(error),
    }
}

/// `domo titanic reply ID`: prints the reply (exit 0), or `300 pending` (exit 3) or
/// `400 unknown` (exit 4), so scripts can poll.
///
/// An id that is not 32 hex digits is answered as Titanic answers it, `400 unknown`, without
/// asking.
pub(crate) async fn reply(args: &RequestArgs, id: &str, json: bool) -> ExitCode {
    let reply = match (crate::call::client(args), id.parse::<TitanicId>()) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(_)) => Ok(TitanicReply::Unknown),
        (Ok(c), Ok(id)) => c.titanic_reply(&id).await,
    };
    match reply {
        Ok(TitanicReply::Done(frames)) if json => {
            println!("{}", frames_json(&frames));
            ExitCode::SUCCESS
        }
        Ok(TitanicReply::Done(frames)) => {
            for f in &frames {
                println!("{}", frame_text(f));
            }
            ExitCode::SUCCESS
        }
        Ok(TitanicReply::Pending) => {
            println!("300 pending");
            ExitCode::from(3)
        }
        Ok(TitanicReply::Unknown) => {
            println!("400 unknown");
            ExitCode::from(4)
        }
        Err(error) => crate::call::fail(error),
    }
}

/// `domo titanic close ID`
///
/// An id that is not 32 hex digits fails as Titanic's `400` answer to it does, without asking.
pub(crate) async fn close(args: &RequestArgs, id: &str) -> ExitCode {
    let closed = match (crate::call::client(args), id.parse::<TitanicId>()) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(_)) => return crate::call::fail("titanic: 400"),
        (Ok(c), Ok(id)) => c.titanic_close(&id).await,
    };
    match closed {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => crate::call::fail(error),
    }
}

/// The redb store file inside a Titanic data directory (as domo-titanic names it, and
/// domo-broker with `store = "redb"`).
const STORE_FILE: &str = "titanic.redb";
/// The log store's directory inside a Titanic data directory (domo-broker's default).
const LOG_DIR: &str = "titanic-log";

/// Opens the store in `dir` for offline use; the program that owns it must be stopped.
/// The store `args` names: a stopped broker's redb file, or a PostgreSQL database.
fn open_store(args: &crate::StoreArgs) -> Result<Box<dyn domo_titanic::Store>, String> {
    if let Some(url) = &args.url {
        let mut options = domo_titanic::store::postgres::PostgresOptions::new(url.clone());
        if let Some(file) = &args.password_file {
            let password = std::fs::read_to_string(file)
                .map_err(|e| format!("--password-file {}: {e}", file.display()))?;
            options.password = Some(password.trim().to_string());
        }
        options.ca_file.clone_from(&args.ca_file);
        return domo_titanic::store::postgres::PostgresStore::open(options)
            .map(|s| Box::new(s) as Box<dyn domo_titanic::Store>)
            .map_err(|e| e.to_string());
    }
    let dir = args
        .data_dir
        .as_deref()
        .unwrap_or(std::path::Path::new("."));
    open_offline(dir)
}

fn open_offline(dir: &std::path::Path) -> Result<Box<dyn domo_titanic::Store>, String> {
    // The log store (the default) if its directory is there, else a redb file.
    let log = dir.join(LOG_DIR);
    if log.is_dir() {
        return domo_titanic::store::log::LogStore::open(
            &log,
            domo_titanic::RedbOptions::default(),
        )
        .map(|s| Box::new(s) as Box<dyn domo_titanic::Store>)
        .map_err(|e| {
            format!(
                "cannot open {} (stop the broker that uses it first): {e}",
                log.display()
            )
        });
    }
    let path = dir.join(STORE_FILE);
    if !path.exists() {
        return Err(format!(
            "no Titanic store at {} nor {}",
            log.display(),
            path.display()
        ));
    }
    domo_titanic::RedbStore::open(&path, domo_titanic::RedbOptions::default())
        .map(|s| Box::new(s) as Box<dyn domo_titanic::Store>)
        .map_err(|e| {
            format!(
                "cannot open {} (stop the broker that uses it first): {e}",
                path.display()
            )
        })
}

/// `domo titanic list --data-dir DIR | --url URL`: the pending requests, oldest first, and
/// the totals.
pub(crate) fn list(args: &crate::StoreArgs) -> ExitCode {
    let store = match open_store(args) {
        Ok(s) => s,
        Err(e) => return crate::call::fail(e),
    };
    let now = domo_titanic::TimeSource::now_millis(&domo_titanic::SystemClock);
    let mut after = None;
    loop {
        let page = match store.pending(after, 1000) {
            Ok(p) => p,
            Err(e) => return crate::call::fail(e),
        };
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        for (id, request) in &page {
            let age = now.saturating_sub(request.created_millis) / 1000;
            println!(
                "{id} {} pending {age}s",
                String::from_utf8_lossy(&request.service)
            );
        }
    }
    match store.stats() {
        Ok(s) => {
            println!(
                "{} pending, {} done, {} bytes stored",
                s.pending, s.done, s.file_bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => crate::call::fail(e),
    }
}

/// `domo titanic purge --data-dir DIR --older-than D`: removes requests (pending or done)
/// stored more than `D` ago.
pub(crate) fn purge(args: &crate::StoreArgs, older_than: std::time::Duration) -> ExitCode {
    let store = match open_store(args) {
        Ok(s) => s,
        Err(e) => return crate::call::fail(e),
    };
    let age = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
    match store.expire(age) {
        Ok(n) => {
            println!("{n} removed");
            ExitCode::SUCCESS
        }
        Err(e) => crate::call::fail(e),
    }
}
