#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use domo_mdp::topic::{ReadReply, Retention, Status};

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
    let mut t = Topics::new(TopicsConfig::default(), 1);
    let (a, bb, c) = (t.connect(), t.connect(), t.connect());
    t.handle_subscriber(now, a, &[b("\x01weather.")]);
    t.handle_subscriber(now, a, &[b("\x01weather.paris")]);
    t.handle_subscriber(now, bb, &[b("\x01")]);
    t.handle_subscriber(now, c, &[b("\x01sport")]);
    assert_eq!(
        t.publish(now, msg(&["weather.paris", "", "21C"]))
            .map(|s| s.offset),
        Some(0)
    );
    assert_eq!(
        t.publish(now, msg(&["news", "x"])).map(|s| s.offset),
        Some(0)
    );
    assert_eq!(
        t.publish(now, msg(&["weather.paris", "22C"]))
            .map(|s| s.offset),
        Some(1)
    );
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
    let mut t = Topics::new(TopicsConfig::default(), 1);
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
    let mut t = Topics::new(TopicsConfig::default(), 1);
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
    let mut t = Topics::new(config, 1);
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
    let mut t = Topics::new(config, 1);
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
    let mut t = Topics::new(config, 1);
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
    let mut t = Topics::new(config, 1);
    for topic in ["t1", "t2", "t3"] {
        t.publish(now, vec![b(topic), Bytes::from(vec![0u8; 10])]);
    }
    // t1 published again: t2 is now the least recent.
    assert_eq!(
        t.publish(now, vec![b("t1"), Bytes::from(vec![0u8; 10])])
            .map(|s| s.offset),
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
    assert_eq!(t.publish(now, vec![b("t2")]).map(|s| s.offset), Some(0));
    // Bounded however many publications.
    for i in 0..10_000u32 {
        t.publish(now, vec![Bytes::from(i.to_be_bytes().to_vec())]);
    }
    assert!(t.stats().last_values_bytes as usize <= t.config().last_values_bytes);
}

#[test]
fn bad_input_is_counted_and_changes_nothing() {
    let now = Instant::now();
    let mut t = Topics::new(
        TopicsConfig {
            max_prefixes: 2,
            ..TopicsConfig::default()
        },
        1,
    );
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
    let mut t = Topics::new(TopicsConfig::default(), 1);
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
        let mut t = Topics::new(TopicsConfig::default(), 1);
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

fn retention(max_messages: u64, max_bytes: u64, max_age_ms: u64) -> Retention {
    Retention {
        max_messages,
        max_bytes,
        max_age_ms,
        ..Retention::default()
    }
}

#[test]
fn created_topics_keep_their_retention_and_read_from_an_offset() {
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 7);
    assert_eq!(t.create(t0, b("orders"), retention(3, 1000, 0)), Ok(true));
    assert_eq!(t.create(t0, b("orders"), retention(3, 1000, 0)), Ok(false));
    let (status, reason) = t
        .create(t0, b("orders"), retention(4, 1000, 0))
        .unwrap_err();
    assert_eq!(status, Status::Conflict);
    assert!(reason.contains("max_messages=3"), "{reason}");
    let mut stream = None;
    for i in 0..5u64 {
        let stamp = t.publish(t0, msg(&["orders", &i.to_string()])).unwrap();
        assert_eq!(stamp.offset, i);
        assert_eq!(*stream.get_or_insert(stamp.stream), stamp.stream);
    }
    // The last three are kept; a read from before them starts at the first kept (the gap
    // is the reader's to see), without the topic frame.
    let r = t.read(t0, b"orders", 0, 10).unwrap();
    assert_eq!((r.stream, r.first, r.next), (stream.unwrap(), 2, 5));
    let got: Vec<(u64, Bytes)> = r
        .messages
        .iter()
        .map(|m| (m.offset, m.frames[0].clone()))
        .collect();
    assert_eq!(got, vec![(2, b("2")), (3, b("3")), (4, b("4"))]);
    assert_eq!(t.read(t0, b"orders", 4, 10).unwrap().messages.len(), 1);
    assert_eq!(t.read(t0, b"orders", 3, 1).unwrap().messages[0].offset, 3);
    assert!(t.read(t0, b"orders", 9, 10).unwrap().messages.is_empty());
    assert_eq!(t.read(t0, b"nothing", 0, 10), None);
    let s = t.stats();
    assert_eq!((s.created_topics, s.retained_bytes, s.topics), (1, 3, 0));
}

#[test]
fn byte_and_age_bounds_prune_the_oldest() {
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 7);
    t.create(t0, b("big"), retention(100, 10, 0)).unwrap();
    t.create(t0, b("aged"), retention(100, 1000, 1000)).unwrap();
    for _ in 0..3 {
        t.publish(t0, vec![b("big"), Bytes::from(vec![0u8; 4])]);
    }
    // 12 bytes > 10: the oldest went.
    let r = t.read(t0, b"big", 0, 10).unwrap();
    assert_eq!((r.first, r.messages.len()), (1, 2));
    t.publish(t0, msg(&["aged", "old"]));
    t.publish(t0 + Duration::from_millis(600), msg(&["aged", "new"]));
    let r = t
        .read(t0 + Duration::from_millis(1200), b"aged", 0, 10)
        .unwrap();
    assert_eq!((r.first, r.next, r.messages.len()), (1, 2, 1));
}

#[test]
fn reads_of_a_topic_nobody_created_see_its_last_value_only() {
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 7);
    t.publish(t0, msg(&["loose", "a"]));
    t.publish(t0, msg(&["loose", "b", "c"]));
    let r = t.read(t0, b"loose", 0, 10).unwrap();
    assert_eq!((r.first, r.next), (1, 2));
    assert_eq!(r.messages[0].frames, msg(&["b", "c"]));
}

#[test]
fn creating_a_topic_keeps_its_last_value_in_a_new_stream_and_delete_forgets_it() {
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 7);
    let loose = t.publish(t0, msg(&["cfg", "v1"])).unwrap();
    t.create(t0, b("cfg"), Retention::default()).unwrap();
    let r = t.read(t0, b"cfg", 0, 10).unwrap();
    assert_ne!(r.stream, loose.stream);
    assert_eq!((r.first, r.next), (0, 1));
    // A late subscriber gets it as the created topic's newest message.
    let s = t.connect();
    t.subscribe(t0, s, b("c"));
    let (_, d) = t.poll_delivery().unwrap();
    assert_eq!(
        (d.stream, d.offset, d.frames),
        (r.stream, 0, msg(&["cfg", "v1"]))
    );
    assert!(t.delete(b"cfg"));
    assert!(!t.delete(b"cfg"));
    assert_eq!(t.read(t0, b"cfg", 0, 10), None);
    // Created again: a new stream, offsets from 0.
    t.create(t0, b("cfg"), Retention::default()).unwrap();
    let again = t.publish(t0, msg(&["cfg", "v2"])).unwrap();
    assert_eq!(again.offset, 0);
    assert_ne!(again.stream, r.stream);
}

#[test]
fn retention_reservations_are_bounded_and_given_back_on_delete() {
    let t0 = Instant::now();
    let mut t = Topics::new(
        TopicsConfig {
            retained_max_bytes: 100,
            ..TopicsConfig::default()
        },
        7,
    );
    t.create(t0, b("a"), retention(10, 60, 0)).unwrap();
    let (status, _) = t.create(t0, b("b"), retention(10, 60, 0)).unwrap_err();
    assert_eq!(status, Status::InsufficientStorage);
    t.delete(b"a");
    assert_eq!(t.create(t0, b("b"), retention(10, 60, 0)), Ok(true));
}

#[test]
fn list_shows_created_and_last_value_topics_by_prefix_in_name_order() {
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 7);
    t.create(t0, b("a.created"), retention(5, 100, 0)).unwrap();
    t.publish(t0, msg(&["a.created", "xy"]));
    t.publish(t0, msg(&["a.b", "xyz"]));
    t.publish(t0, msg(&["b", "z"]));
    let list = t.list(b"a.", 10);
    let names: Vec<&[u8]> = list.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(names, [&b"a.b"[..], b"a.created"]);
    assert!(list[0].1.starts_with("kind=last_value"), "{}", list[0].1);
    assert!(list[0].1.contains("bytes=3"), "{}", list[0].1);
    assert!(
        list[1].1.contains("kind=created persist=memory"),
        "{}",
        list[1].1
    );
    assert!(
        list[1].1.contains("first=0 next=1 messages=1 bytes=2"),
        "{}",
        list[1].1
    );
    assert_eq!(t.list(b"", 2).len(), 2);
}

#[test]
fn stream_ids_differ_across_seeds_and_topics() {
    let t0 = Instant::now();
    let mut a = Topics::new(TopicsConfig::default(), 1);
    let mut b2 = Topics::new(TopicsConfig::default(), 2);
    let sa = a.publish(t0, msg(&["t"])).unwrap().stream;
    let sb = b2.publish(t0, msg(&["t"])).unwrap().stream;
    let sa2 = a.publish(t0, msg(&["u"])).unwrap().stream;
    assert!(sa != sb && sa != sa2 && sa != 0);
}

fn call(t: &mut Topics, service: TopicService, frames: &[&[u8]]) -> Vec<Bytes> {
    let body = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
    t.handle_service(Instant::now(), service, body)
}

fn status(reply: &[Bytes]) -> &[u8] {
    &reply[0]
}

#[test]
fn the_services_answer_every_operation() {
    use TopicService::*;
    let mut t = Topics::new(TopicsConfig::default(), 3);
    assert_eq!(
        call(&mut t, Create, &[b"orders", b"max_messages=2"]),
        msg(&["200", "created"])
    );
    assert_eq!(
        call(&mut t, Create, &[b"orders", b"max_messages=2"]),
        msg(&["200", "exists"])
    );
    assert_eq!(call(&mut t, Write, &[b"orders", b"a"]), msg(&["200", "0"]));
    assert_eq!(
        call(&mut t, Write, &[b"orders", b"b", b""]),
        msg(&["200", "1"])
    );
    assert_eq!(call(&mut t, Write, &[b"orders"]), msg(&["200", "2"]));
    let r = ReadReply::decode(&call(&mut t, Read, &[b"orders", b"0"])).unwrap();
    assert_eq!((r.first, r.next), (1, 3));
    assert_eq!(r.messages[0].frames, msg(&["b", ""]));
    assert!(r.messages[1].frames.is_empty());
    let r = ReadReply::decode(&call(&mut t, Read, &[b"orders", b"1", b"1"])).unwrap();
    assert_eq!(r.messages.len(), 1);
    let list = call(&mut t, List, &[]);
    assert_eq!((list.len(), &list[1][..]), (3, &b"orders"[..]));
    assert_eq!(call(&mut t, List, &[b"zzz"]), msg(&["200"]));
    assert_eq!(call(&mut t, Delete, &[b"orders"]), msg(&["200"]));
    assert_eq!(status(&call(&mut t, Read, &[b"orders", b"0"])), b"404");
}

#[test]
fn bad_service_input_gets_a_status_and_a_reason_never_a_panic() {
    use TopicService::*;
    let mut t = Topics::new(TopicsConfig::default(), 3);
    let long = [b'x'; 256];
    for (service, frames, code) in [
        (Create, vec![], "400"),
        (Create, vec![&b""[..]], "400"),
        (Create, vec![&long[..]], "413"),
        (Create, vec![&b"t"[..], b"max_messages=-1"], "400"),
        (Create, vec![&b"t"[..], b"nonsense"], "400"),
        (Create, vec![&b"t"[..], b"persist=disk"], "501"),
        (Write, vec![], "400"),
        (Write, vec![&long[..], b"x"], "413"),
        (Read, vec![&b"t"[..]], "400"),
        (Read, vec![&b"t"[..], b"x"], "400"),
        (Read, vec![&b"t"[..], b"1", b"-2"], "400"),
        (Read, vec![&b"t"[..], b"1", b"2", b"3"], "400"),
        (Read, vec![&b"unknown"[..], b"0"], "404"),
        (Delete, vec![&b"unknown"[..]], "404"),
        (Delete, vec![&b"t"[..], b"extra"], "400"),
        (List, vec![&b"a"[..], b"b"], "400"),
    ] {
        let reply = call(&mut t, service, &frames);
        assert_eq!(
            status(&reply),
            code.as_bytes(),
            "{service:?} {frames:?}: {reply:?}"
        );
        if code != "200" {
            assert_eq!(reply.len(), 2, "{service:?}: a reason frame");
        }
    }
    // An MDP empty body (one empty frame) is a missing name too.
    assert_eq!(status(&call(&mut t, Write, &[b""])), b"400");
}

#[test]
fn disk_topics_are_planned_stored_then_kept_and_fanned_out() {
    use TopicService::*;
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 9);
    let s = t.connect();
    t.subscribe(t0, s, b("d"));
    let body = |frames: &[&str]| frames.iter().map(|f| b(f)).collect::<Vec<_>>();
    let Plan::CreateDisk {
        name,
        retention,
        stream,
    } = t.plan_service(t0, Create, body(&["d", "persist=disk", "max_messages=2"]))
    else {
        panic!("not a disk create");
    };
    // While it is being stored, a write is an ordinary one (the topic does not exist yet).
    t.finish_disk_create(t0, name, retention, stream, None);
    assert_eq!(
        t.plan_service(t0, Create, body(&["d", "persist=disk", "max_messages=2"])),
        Plan::Reply(msg(&["200", "exists"]))
    );
    let mut stamps = Vec::new();
    for v in ["a", "b", "c"] {
        let Plan::WriteDisk { stamp, frames } = t.plan_service(t0, Write, body(&["d", v])) else {
            panic!("not a disk write");
        };
        stamps.push((stamp, frames));
    }
    assert_eq!(
        stamps.iter().map(|(s, _)| s.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // Nothing reaches subscribers before it is stored; offset 1's store failed (a hole).
    assert!(t.poll_delivery().is_none());
    let (s0, f0) = stamps.remove(0);
    let (_, _) = stamps.remove(0);
    let (s2, f2) = stamps.remove(0);
    assert!(t.append_reserved(t0, s0, f0));
    assert!(t.append_reserved(t0, s2, f2));
    let got: Vec<u64> = drain(&mut t).iter().map(|(_, _, o)| *o).collect();
    assert_eq!(got, [0, 2]);
    let r = t.read(t0, b"d", 0, 10).unwrap();
    assert_eq!((r.first, r.next, r.messages.len()), (0, 3, 2));
    assert_eq!(t.first_offset(b"d"), Some(0));
    assert!(matches!(
        t.plan_service(t0, Delete, body(&["d"])),
        Plan::DeleteDisk { stream: st, .. } if st == stream
    ));
    // A memory-only core refuses disk topics.
    let mut mem = Topics::new(TopicsConfig::default(), 9);
    assert_eq!(
        status(&call(&mut mem, Create, &[b"x", b"persist=disk"])),
        b"501"
    );
}

#[test]
fn a_restored_disk_topic_goes_on_from_its_next_offset() {
    let t0 = Instant::now();
    let mut t = Topics::new(TopicsConfig::default(), 9);
    let retention = Retention {
        persist: domo_mdp::topic::Persist::Disk,
        ..Retention::default()
    };
    t.restore(
        t0,
        b("r"),
        retention,
        77,
        10,
        vec![(8, t0, msg(&["r", "x"])), (9, t0, msg(&["r", "y"]))],
    );
    let r = t.read(t0, b"r", 0, 10).unwrap();
    assert_eq!((r.stream, r.first, r.next), (77, 8, 10));
    assert_eq!(t.reserve_disk(b"r").unwrap().offset, 10);
    // A late subscriber gets its newest message.
    let s = t.connect();
    t.subscribe(t0, s, b("r"));
    assert_eq!(drain(&mut t)[0].2, 9);
}
