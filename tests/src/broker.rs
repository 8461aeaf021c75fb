//! The broker in this process, on an ephemeral port, stopped when dropped.

use std::time::Duration;

use bytes::Bytes;
use domo_broker::shell::{self, ShellConfig};
use domo_broker::BrokerConfig;
use domo_worker::{Worker, WorkerOptions};
use tokio::sync::oneshot;

use crate::wait_for_service;

/// A broker running in this process; stopped when dropped.
pub struct TestBroker {
    /// The TCP endpoint it listens on (`tcp://127.0.0.1:PORT`).
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    /// Binds `tcp://127.0.0.1:0` with the core settings `core` and runs the broker on the
    /// current tokio runtime.
    pub async fn start(core: BrokerConfig) -> Self {
        let config = ShellConfig {
            binds: vec!["tcp://127.0.0.1:0".into()],
            core,
            ..ShellConfig::default()
        };
        let bound = shell::bind(config).await.unwrap();
        let endpoint = bound.endpoints()[0].to_string();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            bound
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            endpoint,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the broker and waits (up to 10 s) until it has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Heartbeat settings short enough for expiry tests.
pub fn fast_heartbeat() -> BrokerConfig {
    BrokerConfig {
        heartbeat: domo_mdp::Heartbeat {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        ..BrokerConfig::default()
    }
}

/// Runs blocking libzmq code off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Serves `service` with `handler` on a domo-worker until the task is aborted.
pub fn serve<F, Fut>(endpoint: &str, service: &str, handler: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Vec<Bytes>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Vec<Bytes>> + Send + 'static,
{
    let options = WorkerOptions::new([endpoint]).heartbeat(domo_mdp::Heartbeat {
        interval: Duration::from_millis(500),
        liveness: 3,
    });
    let worker = Worker::new(service.to_string(), options).unwrap();
    tokio::spawn(async move {
        worker
            .serve(
                move |body| {
                    let reply = handler(body);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                },
                std::future::pending(),
            )
            .await;
    })
}

/// Waits (up to 10 s) until the broker at `endpoint` says `service` has a worker.
pub async fn wait_service(endpoint: &str, service: &str) {
    let ep = endpoint.to_string();
    let service = service.to_string();
    blocking(move || wait_for_service(&ep, &service, b"200")).await;
}
