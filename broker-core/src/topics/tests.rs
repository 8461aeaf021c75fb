#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn msg(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| b(p)).collect()
}

/// Everything handed out now, per subscriber, as (topic, offset).
fn drain(t: &mut Topics) -> Vec<(SubId, String, u64)> {
    let mut out = Vec::new();
    while let Some((id, d)) = t.poll_delivery() {
        out.push((
            id,
            String::from_utf8_lossy(&d.frames[0]).into_owned(),
            d.offset,
        ));
    }
    out
}

fn for_sub(all: &[(SubId, String, u64)], id: SubId) -> Vec<(String, u64)> {
    all.iter()
        .filter(|(s, _, _)| *s == id)
        .map(|(_, t, o)| (t.clone(), *o))
        .collect()
}

#[test]
fn messages_go_whole_to_matching_prefixes_once_per_subscriber() {
    let now = Instant::now();
    let mut t = Topics::new(TopicsConfig::default());
    let (a, bb, c) = (t.connect(), t.connect(), t.connect());
    t.handle_subscriber(now, a, &[b("\x01weather.")]);
    t.handle_subscriber(now, a, &[b("\x01weather.paris")]);
    t.handle_subscriber(now, bb, &[b("\x01")]);
    t.handle_subscriber(now, c, &[b("\x01sport")]);
    assert_eq!(t.publish(now, msg(&["weather.paris", "", "21C"])), Some(0));
    assert_eq!(t.publish(now, msg(&["news", "x"])), Some(0));
    assert_eq!(t.publish(now, msg(&["weather.paris", "22C"])), Some(1));
    let mut got = Vec::new();
    while let Some((id, d)) = t.poll_delivery() {
        got.push((id, d));
    }
    let of = |id| -> Vec<Vec<Bytes>> {
        got.iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, d)| d.frames.clone())
            .collect()
    };
    assert_eq!(
        of(a),
        vec![
            msg(&["weather.paris", "", "21C"]),
            msg(&["weather.paris", "22C"])
        ]
    );
    assert_eq!(of(bb).len(), 3);
    assert!(of(c).is_empty());
    let s = t.stats();
    assert_eq!((s.published, s.delivered, s.replayed), (3, 5, 0));
}

#[test]
fn a_new_subscription_alone_gets_the_last_values_it_matches_then_live() {
    let now = Instant::now();
    let mut t = Topics::new(TopicsConfig::default());
    let early = t.connect();
    t.subscribe(now, early, b(""));
    for (topic, v) in [
        ("cfg.a", "1"),
        ("cfg.b", "1"),
        ("other", "1"),
        ("cfg.a", "2"),
    ] {
        t.publish(now, msg(&[topic, v]));
    }
    drain(&mut t);
    let late = t.connect();
    t.subscribe(now, late, b("cfg."));
    t.publish(now, msg(&["cfg.b", "2"]));
    let all = drain(&mut t);
    // The late one: each matching topic's last value, in topic order, then the live one.
    assert_eq!(
        for_sub(&all, late),
        vec![
            ("cfg.a".into(), 1),
            ("cfg.b".into(), 0),
            ("cfg.b".into(), 1)
        ]
    );
    // The early one sees the live message only: no replay.
    assert_eq!(for_sub(&all, early), vec![("cfg.b".into(), 1)]);
    // A second, narrower prefix of the same subscriber replays nothing it already had.
    t.subscribe(now, late, b("cfg.a"));
    // A prefix that adds topics replays only those.
    t.subscribe(now, late, b("oth"));
    let all = drain(&mut t);
    assert_eq!(for_sub(&all, late), vec![("other".into(), 0)]);
    assert_eq!(t.stats().replayed, 3);
}

#[test]
fn cancels_count_like_libzmq_and_unknown_cancels_are_ignored() {
    let now = Instant::now();
    let mut t = Topics::new(TopicsConfig::default());
    let s = t.connect();
    t.subscribe(now, s, b("a"));
    t.subscribe(now, s, b("a"));
    t.cancel(s, &b("zzz"));
    t.cancel(s, &b("a"));
    t.publish(now, msg(&["a1"]));
    assert_eq!(drain(&mut t).len(), 1);
    t.cancel(s, &b("a"));
    t.publish(now, msg(&["a2"]));
    assert!(drain(&mut t).is_empty());
}

#[test]
fn a_subscriber_that_does_not_read_drops_its_oldest_lags_and_is_cut_off() {
    let t0 = Instant::now();
    let config = TopicsConfig {
        queue_messages: 10,
        queue_bytes: 1 << 20,
        slow_timeout: Duration::from_secs(5),
        ..TopicsConfig::default()
    };
    let mut t = Topics::new(config);
    let (slow, fast) = (t.connect(), t.connect());
    t.subscribe(t0, slow, b(""));
    t.subscribe(t0, fast, b(""));
    for i in 0..25u64 {
        t.publish(t0, msg(&["t", &i.to_string()]));
        // The fast one's connection takes everything; the slow one's is full from the
        // start.
        while let Some((id, d)) = t.poll_delivery() {
            if id == slow {
                t.blocked(slow, d);
            }
        }
    }
    let s = t.stats();
    assert_eq!(s.delivered, 50);
    assert_eq!(s.dropped_slow, 15);
    assert_eq!((s.lagging, s.queued_messages), (1, 10));
    assert!(t.is_lagging(slow) && !t.is_lagging(fast));
    assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    assert!(t.handle_timeout(t0 + Duration::from_secs(4)).is_empty());
    // It kept the newest ten.
    t.writable(slow);
    let (_, d) = t.poll_delivery().unwrap();
    assert_eq!(d.frames[1], b("15"));
    t.blocked(slow, d);
    assert_eq!(t.handle_timeout(t0 + Duration::from_secs(5)), vec![slow]);
    let s = t.stats();
    assert_eq!(
        (s.slow_disconnects, s.dropped_gone, s.subscribers),
        (1, 10, 1)
    );
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn a_lagging_subscriber_that_catches_up_to_half_is_no_longer_lagging() {
    let t0 = Instant::now();
    let config = TopicsConfig {
        queue_messages: 10,
        ..TopicsConfig::default()
    };
    let mut t = Topics::new(config);
    let s = t.connect();
    t.subscribe(t0, s, b(""));
    let (_, first) = {
        t.publish(t0, msg(&["t"]));
        t.poll_delivery().unwrap()
    };
    t.blocked(s, first);
    for _ in 0..12 {
        t.publish(t0, msg(&["t"]));
    }
    assert!(t.is_lagging(s));
    t.writable(s);
    for _ in 0..4 {
        t.poll_delivery().unwrap();
        assert!(t.is_lagging(s));
    }
    t.poll_delivery().unwrap();
    assert!(!t.is_lagging(s));
    assert_eq!(t.handle_timeout(t0 + Duration::from_secs(3600)), vec![]);
}

#[test]
fn byte_bound_drops_too_and_a_single_huge_message_is_kept_alone() {
    let now = Instant::now();
    let config = TopicsConfig {
        queue_bytes: 100,
        ..TopicsConfig::default()
    };
    let mut t = Topics::new(config);
    let s = t.connect();
    t.subscribe(now, s, b(""));
    let (_, d) = {
        t.publish(now, vec![b("t"), Bytes::from(vec![0u8; 40])]);
        t.poll_delivery().unwrap()
    };
    t.blocked(s, d);
    t.publish(now, vec![b("t"), Bytes::from(vec![1u8; 40])]);
    assert_eq!(t.stats().dropped_slow, 0);
    t.publish(now, vec![b("t"), Bytes::from(vec![2u8; 40])]);
    assert_eq!(t.stats().dropped_slow, 1);
    t.publish(now, vec![b("t"), Bytes::from(vec![3u8; 500])]);
    let st = t.stats();
    assert_eq!((st.dropped_slow, st.queued_messages), (3, 1));
}

#[test]
fn last_values_stay_within_their_bound_least_recent_first() {
    let now = Instant::now();
    let config = TopicsConfig {
        last_values_bytes: 3 * (last::ENTRY_OVERHEAD_FOR_TESTS + 2 + 10),
        ..TopicsConfig::default()
    };
    let mut t = Topics::new(config);
    for topic in ["t1", "t2", "t3"] {
        t.publish(now, vec![b(topic), Bytes::from(vec![0u8; 10])]);
    }
    // t1 published again: t2 is now the least recent.
    assert_eq!(
        t.publish(now, vec![b("t1"), Bytes::from(vec![0u8; 10])]),
        Some(1)
    );
    t.publish(now, vec![b("t4"), Bytes::from(vec![0u8; 10])]);
    let s = t.stats();
    assert_eq!((s.topics, s.evicted_last_values), (3, 1));
    let sub = t.connect();
    t.subscribe(now, sub, b("t"));
    let got: Vec<String> = drain(&mut t).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(got, ["t1", "t3", "t4"]);
    // Evicted and published again: offsets start over.
    assert_eq!(t.publish(now, vec![b("t2")]), Some(0));
    // Bounded however many publications.
    for i in 0..10_000u32 {
        t.publish(now, vec![Bytes::from(i.to_be_bytes().to_vec())]);
    }
    assert!(t.stats().last_values_bytes as usize <= t.config().last_values_bytes);
}

#[test]
fn bad_input_is_counted_and_changes_nothing() {
    let now = Instant::now();
    let mut t = Topics::new(TopicsConfig {
        max_prefixes: 2,
        ..TopicsConfig::default()
    });
    let s = t.connect();
    t.handle_subscriber(now, s, &[]);
    t.handle_subscriber(now, s, &[b("\x02x")]);
    t.handle_subscriber(now, s, &[b("\x01a"), b("b")]);
    t.handle_subscriber(now, s, &[Bytes::new()]);
    assert_eq!(t.publish(now, Vec::new()), None);
    assert_eq!(t.stats().malformed, 5);
    for p in ["a", "b", "c"] {
        t.subscribe(now, s, b(p));
    }
    assert_eq!(t.stats().refused_subscriptions, 1);
    // Unknown subscribers are ignored.
    t.disconnect(s);
    t.subscribe(now, s, b("x"));
    t.writable(s);
    t.publish(now, msg(&["x"]));
    assert!(drain(&mut t).is_empty());
}

#[test]
fn a_blocked_subscriber_waits_for_writable_and_others_go_on() {
    let now = Instant::now();
    let mut t = Topics::new(TopicsConfig::default());
    let (a, c) = (t.connect(), t.connect());
    t.subscribe(now, a, b(""));
    t.subscribe(now, c, b(""));
    t.publish(now, msg(&["1"]));
    t.publish(now, msg(&["2"]));
    let mut seen_c = Vec::new();
    while let Some((id, d)) = t.poll_delivery() {
        if id == a {
            t.blocked(a, d);
        } else {
            seen_c.push(d.offset);
        }
    }
    assert_eq!(seen_c.len(), 2);
    t.writable(a);
    let all = drain(&mut t);
    assert_eq!(for_sub(&all, a), vec![("1".into(), 0), ("2".into(), 0)]);
}

proptest! {
    /// Whatever the subscriptions, each subscriber gets exactly the messages one of its
    /// prefixes matches, each once, in publication order.
    #[test]
    fn deliveries_match_a_brute_force_prefix_check(
        subs in prop::collection::vec(prop::collection::vec("[ab]{0,3}", 0..4), 1..5),
        topics in prop::collection::vec("[ab]{0,4}", 0..30),
    ) {
        let now = Instant::now();
        let mut t = Topics::new(TopicsConfig::default());
        let ids: Vec<SubId> = subs.iter().map(|_| t.connect()).collect();
        for (id, prefixes) in ids.iter().zip(&subs) {
            for p in prefixes {
                t.subscribe(now, *id, b(p));
            }
        }
        for topic in &topics {
            t.publish(now, msg(&[topic]));
        }
        let all = drain(&mut t);
        for (id, prefixes) in ids.iter().zip(&subs) {
            let want: Vec<&String> = topics
                .iter()
                .filter(|topic| prefixes.iter().any(|p| topic.starts_with(p.as_str())))
                .collect();
            let got: Vec<String> = for_sub(&all, *id).into_iter().map(|(t, _)| t).collect();
            prop_assert_eq!(got.iter().collect::<Vec<_>>(), want);
        }
    }
}
