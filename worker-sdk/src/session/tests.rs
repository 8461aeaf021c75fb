use std::time::{Duration, Instant};

use domo_mdp::{Backoff, BackoffOptions, Heartbeat};

use super::{Action, Session};

const MS: Duration = Duration::from_millis(1);

fn session(endpoints: usize) -> (Instant, Session) {
    let start = Instant::now();
    let backoff = Backoff::with_seed(BackoffOptions::default().jitter(false), 1);
    (
        start,
        Session::new(start, Heartbeat::default(), backoff, endpoints),
    )
}

/// Runs `poll_action` at `at` until it is quiet; returns what it said.
fn actions(s: &mut Session, at: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(a) = s.poll_action(at) {
        if a == Action::SendHeartbeat {
            s.handle_sent(at);
        }
        out.push(a);
    }
    out
}

#[test]
fn heartbeat_is_due_one_interval_after_ready_and_after_each_send() {
    let (t0, mut s) = session(1);
    assert_eq!(s.poll_timeout(), t0 + 2500 * MS);
    assert!(actions(&mut s, t0 + 2499 * MS).is_empty());
    assert_eq!(actions(&mut s, t0 + 2500 * MS), [Action::SendHeartbeat]);
    assert_eq!(s.poll_timeout(), t0 + 5000 * MS);
    s.handle_sent(t0 + 3000 * MS);
    assert_eq!(s.poll_timeout(), t0 + 5500 * MS);
}

#[test]
fn broker_silent_for_three_intervals_is_dead_and_the_next_endpoint_is_tried_after_1s() {
    let (t0, mut s) = session(2);
    s.handle_traffic(t0 + 1000 * MS);
    // Heartbeats go out at 2500 and 5000; the broker's deadline is 1000 + 7500.
    assert_eq!(actions(&mut s, t0 + 2500 * MS), [Action::SendHeartbeat]);
    assert_eq!(actions(&mut s, t0 + 5000 * MS), [Action::SendHeartbeat]);
    assert_eq!(actions(&mut s, t0 + 7500 * MS), [Action::SendHeartbeat]);
    assert!(actions(&mut s, t0 + 8499 * MS).is_empty());
    assert!(s.is_live());
    assert_eq!(actions(&mut s, t0 + 8500 * MS), [Action::Abandon]);
    assert!(!s.is_live());
    assert_eq!(s.poll_timeout(), t0 + 9500 * MS);
    assert!(actions(&mut s, t0 + 9499 * MS).is_empty());
    assert_eq!(
        actions(&mut s, t0 + 9500 * MS),
        [Action::Connect { endpoint: 1 }]
    );
    assert_eq!(s.endpoint(), 1);
}

#[test]
fn backoff_doubles_while_the_broker_stays_dead_and_endpoints_rotate() {
    let (t0, mut s) = session(2);
    let mut at = t0;
    let mut waits = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..7 {
        // Dead after 7500 ms of silence (heartbeats we send do not count).
        at += 7500 * MS;
        let acts = actions(&mut s, at);
        assert_eq!(acts.last(), Some(&Action::Abandon), "{acts:?}");
        let lost = at;
        at = s.poll_timeout();
        waits.push((at - lost).as_secs());
        let acts = actions(&mut s, at);
        let Some(Action::Connect { endpoint }) = acts.last() else {
            panic!("{acts:?}")
        };
        endpoints.push(*endpoint);
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32]);
    assert_eq!(endpoints, [1, 0, 1, 0, 1, 0, 1]);
}

#[test]
fn any_traffic_resets_the_backoff() {
    let (t0, mut s) = session(1);
    assert_eq!(
        actions(&mut s, t0 + 7500 * MS).last(),
        Some(&Action::Abandon)
    );
    let t1 = s.poll_timeout(); // 8500: 1 s
    actions(&mut s, t1);
    assert_eq!(
        actions(&mut s, t1 + 7500 * MS).last(),
        Some(&Action::Abandon)
    );
    let t2 = s.poll_timeout();
    assert_eq!(t2 - (t1 + 7500 * MS), 2000 * MS);
    actions(&mut s, t2);
    s.handle_traffic(t2 + 100 * MS);
    let lost = t2 + 100 * MS + 7500 * MS;
    assert_eq!(actions(&mut s, lost).last(), Some(&Action::Abandon));
    assert_eq!(s.poll_timeout() - lost, 1000 * MS);
}

#[test]
fn traffic_keeps_the_session_alive_indefinitely() {
    let (t0, mut s) = session(1);
    for i in 1..=100u32 {
        let at = t0 + i * 2000 * MS;
        s.handle_traffic(at);
        assert!(!actions(&mut s, at).contains(&Action::Abandon));
    }
    assert!(s.is_live());
}

#[test]
fn disconnect_re_registers_with_the_same_endpoint_after_the_backoff() {
    let (t0, mut s) = session(3);
    s.handle_traffic(t0 + 100 * MS);
    s.handle_disconnect(t0 + 200 * MS);
    assert_eq!(s.poll_timeout(), t0 + 200 * MS);
    assert_eq!(actions(&mut s, t0 + 200 * MS), [Action::Abandon]);
    assert_eq!(s.poll_timeout(), t0 + 1200 * MS);
    assert_eq!(
        actions(&mut s, t0 + 1200 * MS),
        [Action::Connect { endpoint: 0 }]
    );
    // DISCONNECT is not a sign of life: a second one waits twice as long.
    s.handle_disconnect(t0 + 1300 * MS);
    actions(&mut s, t0 + 1300 * MS);
    assert_eq!(s.poll_timeout(), t0 + 3300 * MS);
}

#[test]
fn traffic_and_disconnect_while_waiting_are_ignored() {
    let (t0, mut s) = session(1);
    s.handle_disconnect(t0);
    actions(&mut s, t0);
    s.handle_traffic(t0 + 10 * MS);
    s.handle_disconnect(t0 + 20 * MS);
    assert_eq!(s.poll_timeout(), t0 + 1000 * MS);
}

#[test]
fn restart_starts_a_fresh_liveness_window() {
    let (t0, mut s) = session(1);
    s.handle_restart(t0 + 5000 * MS);
    assert!(actions(&mut s, t0 + 12_499 * MS)
        .iter()
        .all(|a| *a == Action::SendHeartbeat));
    assert_eq!(
        actions(&mut s, t0 + 12_500 * MS).last(),
        Some(&Action::Abandon)
    );
}
