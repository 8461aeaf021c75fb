//! An echo worker: serves `echo` until Ctrl-C, then sends DISCONNECT.
//!
//! ```text
//! domo-broker --bind tcp://127.0.0.1:5555 &
//! cargo run -p domo-worker --example echo_worker -- tcp://127.0.0.1:5555
//! ```

use bytes::Bytes;
use domo_worker::{Worker, WorkerOptions};

#[tokio::main]
async fn main() -> Result<(), domo_worker::Error> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:5555".into());
    // Checks the name and options; the sessions connect and register in `serve`, and keep
    // trying (with backoff) while the broker is down.
    let worker = Worker::new("echo", WorkerOptions::new([endpoint]).sessions(2))?;
    worker
        .serve(
            |body: Vec<Bytes>| async move { Ok::<_, std::convert::Infallible>(body) },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await;
    Ok(())
}
