//! The gate's semantics; the dispatcher behind it is tested over sockets in `tests/`.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;

use super::{DispatcherOptions, Gate};

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

fn gate(active: Option<watch::Receiver<bool>>) -> Gate {
    Gate::new(&DispatcherOptions {
        active,
        ..DispatcherOptions::default()
    })
}

#[tokio::test]
async fn no_gate_is_always_open_and_never_closes() {
    assert!(DispatcherOptions::default().active.is_none());
    let mut g = gate(None);
    assert!(g.is_open());
    timeout(LONG, g.until(true)).await.unwrap();
    assert!(timeout(SHORT, g.until(false)).await.is_err());
}

#[tokio::test]
async fn the_gate_follows_its_sender() {
    let (tx, rx) = watch::channel(false);
    let mut g = gate(Some(rx));
    assert!(!g.is_open());
    timeout(LONG, g.until(false)).await.unwrap();
    assert!(timeout(SHORT, g.until(true)).await.is_err());
    let opened = tokio::spawn({
        let mut g = g.clone();
        async move { g.until(true).await }
    });
    tx.send(true).unwrap();
    timeout(LONG, opened).await.unwrap().unwrap();
    assert!(g.is_open());
    tx.send(false).unwrap();
    timeout(LONG, g.until(false)).await.unwrap();
    assert!(!g.is_open());
}

#[tokio::test]
async fn a_gate_whose_sender_is_gone_keeps_its_last_value() {
    let (tx, rx) = watch::channel(false);
    let mut closed = gate(Some(rx));
    drop(tx);
    assert!(!closed.is_open());
    assert!(timeout(SHORT, closed.until(true)).await.is_err());
    timeout(LONG, closed.until(false)).await.unwrap();

    let (tx, rx) = watch::channel(true);
    let mut open = gate(Some(rx));
    drop(tx);
    assert!(open.is_open());
    assert!(timeout(SHORT, open.until(false)).await.is_err());
    timeout(LONG, open.until(true)).await.unwrap();
}
