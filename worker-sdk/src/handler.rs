//! The application's handler as the sessions run it: a boxed future per request whose error
//! or panic becomes [`Outcome::Failed`].

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use domo_mdp::sync::CatchUnwind;
use tracing::warn;

use crate::request::Outcome;

/// A boxed future that settles one request.
pub(crate) type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The type-erased handler shared by the sessions of one worker.
pub(crate) type Handler = Arc<dyn Fn(Vec<Bytes>) -> OutcomeFuture + Send + Sync>;

/// Erases the handler's types and adds panic and error handling.
pub(crate) fn wrap<F, Fut, E>(handler: F) -> Handler
where
    F: Fn(Vec<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Bytes>, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |body| {
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler(body)));
        Box::pin(async move {
            let result = match started {
                Ok(fut) => CatchUnwind::new(fut).await,
                Err(_) => Err(()),
            };
            match result {
                Ok(Ok(body)) => Outcome::Reply(body),
                Ok(Err(error)) => {
                    warn!(%error, "Handler returned an error");
                    Outcome::Failed
                }
                Err(()) => {
                    warn!("Handler panicked");
                    Outcome::Failed
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(handler: &Handler, body: &'static [u8]) -> Outcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(handler(vec![Bytes::from_static(body)]))
    }

    fn test_handler() -> Handler {
        wrap(|body: Vec<Bytes>| {
            if body[0] == "sync-panic" {
                panic!("panics before returning a future");
            }
            async move {
                match &body[0][..] {
                    b"panic" => panic!("panics inside the future"),
                    b"error" => Err("fails"),
                    _ => Ok(body),
                }
            }
        })
    }

    #[test]
    fn a_reply_passes_through() {
        let Outcome::Reply(body) = run(&test_handler(), b"ok") else {
            panic!("expected a reply")
        };
        assert_eq!(body, vec![Bytes::from_static(b"ok")]);
    }

    #[test]
    fn errors_and_panics_fail_the_request() {
        let handler = test_handler();
        for body in [&b"error"[..], b"panic", b"sync-panic"] {
            assert!(matches!(run(&handler, body), Outcome::Failed), "{body:?}");
        }
    }
}
