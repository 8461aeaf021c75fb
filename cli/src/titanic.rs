//! `domo titanic submit|reply|close`: the Titanic (RFC 9) services from the command line.

use std::process::ExitCode;

use bytes::Bytes;
use domo_client::TitanicReply;

use crate::output::{frame_text, frames_json};
use crate::RequestArgs;

/// `domo titanic submit SERVICE [FRAME]...`: prints the request id once it is stored.
pub(crate) async fn submit(args: &RequestArgs, service: &str, frames: Vec<String>) -> ExitCode {
    let body: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    let id = match crate::call::client(args) {
        Ok(c) => c.submit(service.to_string(), body).await,
        Err(e) => Err(e),
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
pub(crate) async fn reply(args: &RequestArgs, id: &str, json: bool) -> ExitCode {
    let reply = match crate::call::client(args) {
        Ok(c) => c.titanic_reply(id).await,
        Err(e) => Err(e),
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
pub(crate) async fn close(args: &RequestArgs, id: &str) -> ExitCode {
    let closed = match crate::call::client(args) {
        Ok(c) => c.titanic_close(id).await,
        Err(e) => Err(e),
    };
    match closed {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => crate::call::fail(error),
    }
}
