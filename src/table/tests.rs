//! Unit tests of the known-node table: one test per rule of SPEC §11 it implements.

use super::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// `127.g.0.h:port`: group g (a /16), host h.
fn n(g: u8, h: u8, port: u16) -> Node {
    Node::new(&format!("127.{g}.0.{h}"), port).unwrap()
}

fn rng() -> fastrand::Rng {
    fastrand::Rng::with_seed(7)
}

fn nodes(table: &Table) -> Vec<Node> {
    table.iter().map(|e| e.node().clone()).collect()
}

fn group_counts<'a>(sample: impl IntoIterator<Item = &'a Node>) -> HashMap<Group, usize> {
    let mut counts = HashMap::new();
    for node in sample {
        *counts.entry(node.group()).or_default() += 1;
    }
    counts
}

#[test]
fn entries_keep_insertion_order_through_removals() {
    let mut table = Table::new();
    let mut rng = rng();
    let all: Vec<Node> = (1..=200).map(|p| n((p % 7) as u8, 1, p)).collect();
    for node in &all {
        assert_eq!(
            table.admit(node.clone(), Source::Registered, 1000, &mut rng),
            Admission::Added
        );
    }
    assert_eq!(
        table.admit(all[3].clone(), Source::Learned, 1000, &mut rng),
        Admission::AlreadyKnown
    );
    let mut expected = all.clone();
    // Remove every third, then more than half, so that holes are compacted on the way.
    for (i, node) in all.iter().enumerate() {
        if i % 3 == 0 || i > 60 {
            assert!(table.remove(node).is_some());
            expected.retain(|e| e != node);
            assert_eq!(table.len(), expected.len());
            for (j, want) in expected.iter().enumerate().step_by(7) {
                assert_eq!(table.get(j).map(Entry::node), Some(want), "index {j}");
            }
            assert!(table.get(expected.len()).is_none());
        }
    }
    assert_eq!(nodes(&table), expected);
    assert!(table.remove(&all[0]).is_none(), "already gone");
    assert!(!table.contains(&all[0]));
    // A removed node can come back, at the end.
    table.admit(all[0].clone(), Source::Added, 1000, &mut rng);
    assert_eq!(table.get(table.len() - 1).unwrap().node(), &all[0]);
    assert_eq!(table.groups(), 7);
}

#[test]
fn groups_appear_and_disappear_with_their_entries() {
    let mut table = Table::new();
    let mut rng = rng();
    assert_eq!((table.groups(), table.largest_group()), (0, 0));
    table.admit(n(1, 1, 1), Source::File, 10, &mut rng);
    table.admit(n(1, 2, 1), Source::File, 10, &mut rng);
    table.admit(n(2, 1, 1), Source::File, 10, &mut rng);
    table.admit(
        Node::new("a.example.com", 1).unwrap(),
        Source::File,
        10,
        &mut rng,
    );
    table.admit(
        Node::new("b.Example.com", 1).unwrap(),
        Source::File,
        10,
        &mut rng,
    );
    assert_eq!((table.groups(), table.largest_group()), (3, 2));
    table.remove(&n(2, 1, 1));
    assert_eq!(table.groups(), 2);
    table.remove(&n(1, 1, 1));
    table.remove(&n(1, 2, 1));
    assert_eq!((table.groups(), table.largest_group()), (1, 2));
    table.admit(n(2, 1, 1), Source::File, 10, &mut rng);
    assert_eq!(table.groups(), 2);
}

#[test]
fn a_full_table_evicts_from_the_largest_group_for_a_smaller_one() {
    let mut table = Table::new();
    let mut rng = rng();
    for port in 1..=3 {
        table.admit(n(1, 1, port), Source::Registered, 4, &mut rng);
    }
    table.admit(n(2, 1, 1), Source::Registered, 4, &mut rng);
    // Group 1 holds 3, group 2 holds 1: a newcomer of group 3 pushes out one of group 1.
    match table.admit(n(3, 1, 1), Source::Registered, 4, &mut rng) {
        Admission::AddedEvicting(gone) => assert_eq!(gone.group(), n(1, 1, 1).group()),
        other => panic!("{other:?}"),
    }
    assert_eq!(table.len(), 4);
    // Now group 1 holds 2, the others 1: a newcomer of group 2 also evicts from group 1.
    match table.admit(n(2, 2, 1), Source::Registered, 4, &mut rng) {
        Admission::AddedEvicting(gone) => assert_eq!(gone.group(), n(1, 1, 1).group()),
        other => panic!("{other:?}"),
    }
    // Group 2 now holds 2, the largest: its own newcomer is refused.
    let before = nodes(&table);
    assert_eq!(
        table.admit(n(2, 3, 1), Source::Registered, 4, &mut rng),
        Admission::Full
    );
    assert_eq!(nodes(&table), before, "a refusal changes nothing");
    let mut empty = Table::new();
    assert_eq!(
        empty.admit(n(1, 1, 9), Source::Registered, 0, &mut rng),
        Admission::Full
    );
    assert!(empty.is_empty());
}

#[test]
fn a_newcomer_tied_with_the_largest_group_is_refused() {
    let mut table = Table::new();
    let mut rng = rng();
    for g in 1..=4 {
        table.admit(n(g, 1, 1), Source::Registered, 4, &mut rng);
    }
    assert_eq!(
        table.admit(n(1, 1, 2), Source::Registered, 4, &mut rng),
        Admission::Full
    );
    // A fresh group is smaller than all of them: one of the four (at random) goes.
    let mut evicted = HashSet::new();
    for seed in 0..64 {
        let mut copy = table.clone();
        let mut rng = fastrand::Rng::with_seed(seed);
        match copy.admit(n(9, 1, 1), Source::Registered, 4, &mut rng) {
            Admission::AddedEvicting(gone) => evicted.insert(gone),
            other => panic!("{other:?}"),
        };
    }
    assert_eq!(evicted.len(), 4, "ties between groups are broken at random");
}

#[test]
fn eviction_takes_from_the_host_with_most_entries() {
    let mut table = Table::new();
    let mut rng = rng();
    // Group 1: host 1 has three entries, host 2 has one (with many failures).
    for port in 1..=3 {
        table.admit(n(1, 1, port), Source::Registered, 5, &mut rng);
    }
    table.admit(n(1, 2, 1), Source::Registered, 5, &mut rng);
    for _ in 0..5 {
        table.record_check(&n(1, 2, 1), false, Instant::now());
    }
    table.admit(n(2, 1, 1), Source::Registered, 5, &mut rng);
    match table.admit(n(3, 1, 1), Source::Registered, 5, &mut rng) {
        Admission::AddedEvicting(gone) => assert_eq!(gone.host, n(1, 1, 1).host),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eviction_prefers_most_failures_then_least_recently_seen() {
    let start = Instant::now();
    let at = |s: u64| start + Duration::from_secs(s);
    let fill = |rng: &mut fastrand::Rng| {
        let mut table = Table::new();
        for port in 1..=4 {
            table.admit(n(1, 1, port), Source::Learned, 5, rng);
        }
        table.admit(n(2, 1, 1), Source::Learned, 5, rng);
        table
    };
    let mut rng = rng();

    // Most failed checks first.
    let mut table = fill(&mut rng);
    for port in 1..=4 {
        table.record_check(&n(1, 1, port), true, at(u64::from(port)));
    }
    table.record_check(&n(1, 1, 3), false, at(10));
    table.record_check(&n(1, 1, 3), false, at(11));
    table.record_check(&n(1, 1, 4), false, at(12));
    let admitted = table.admit(n(3, 1, 1), Source::Learned, 5, &mut rng);
    assert_eq!(admitted, Admission::AddedEvicting(n(1, 1, 3)));

    // Equal failures: the one seen online longest ago; never seen counts as least recent.
    let mut table = fill(&mut rng);
    table.record_check(&n(1, 1, 1), true, at(5));
    table.record_check(&n(1, 1, 2), true, at(1));
    table.record_check(&n(1, 1, 3), true, at(9));
    let admitted = table.admit(n(3, 1, 1), Source::Learned, 5, &mut rng);
    assert_eq!(admitted, Admission::AddedEvicting(n(1, 1, 4)), "never seen");
    let admitted = table.admit(n(4, 1, 1), Source::Learned, 5, &mut rng);
    assert_eq!(
        admitted,
        Admission::AddedEvicting(n(1, 1, 2)),
        "seen at 1 s"
    );
}

#[test]
fn checks_update_failures_last_seen_and_last_result() {
    let start = Instant::now();
    let mut table = Table::new();
    let mut rng = rng();
    let node = n(1, 1, 1);
    table.admit(node.clone(), Source::Learned, 5, &mut rng);
    let entry = table.entry(&node).unwrap();
    assert_eq!(
        (entry.failures(), entry.last_seen(), entry.last_ok()),
        (0, None, None)
    );
    assert!(!entry.vouched(), "learned and unchecked");
    let entry = table.record_check(&node, false, start).unwrap();
    assert_eq!(
        (entry.failures(), entry.last_seen(), entry.last_ok()),
        (1, None, Some(false))
    );
    let entry = table.record_check(&node, false, start).unwrap();
    assert_eq!(entry.failures(), 2);
    let later = start + Duration::from_secs(3);
    let entry = table.record_check(&node, true, later).unwrap();
    assert_eq!(
        (entry.failures(), entry.last_seen(), entry.last_ok()),
        (0, Some(later), Some(true))
    );
    assert!(entry.vouched(), "verified by our own check");
    // A result handed in late does not move "last seen" back.
    let entry = table.record_check(&node, true, start).unwrap();
    assert_eq!(entry.last_seen(), Some(later));
    let entry = table.record_check(&node, false, later).unwrap();
    assert!(
        entry.vouched(),
        "once verified, a failed check does not unsay it"
    );
    assert!(table.record_check(&n(9, 9, 9), true, start).is_none());
}

#[test]
fn a_registration_vouches_for_a_learned_entry() {
    let mut table = Table::new();
    let mut rng = rng();
    let node = n(1, 1, 1);
    table.admit(node.clone(), Source::Learned, 5, &mut rng);
    assert_eq!(
        table.admit(node.clone(), Source::Learned, 5, &mut rng),
        Admission::AlreadyKnown
    );
    assert_eq!(table.entry(&node).unwrap().source(), Source::Learned);
    assert_eq!(
        table.admit(node.clone(), Source::Registered, 5, &mut rng),
        Admission::AlreadyKnown
    );
    assert_eq!(table.entry(&node).unwrap().source(), Source::Registered);
    assert!(table.entry(&node).unwrap().vouched());
    table.admit(node.clone(), Source::Learned, 5, &mut rng);
    assert_eq!(
        table.entry(&node).unwrap().source(),
        Source::Registered,
        "never downgraded"
    );
}

#[test]
fn samples_take_one_entry_per_group_before_any_second() {
    let mut table = Table::new();
    let mut rng = rng();
    // One big group (the attacker's 500 entries) and 9 groups of 3.
    for port in 1..=500 {
        table.admit(n(1, 1, port), Source::Registered, 10_000, &mut rng);
    }
    for g in 2..=10 {
        for h in 1..=3 {
            table.admit(n(g, h, 1), Source::Registered, 10_000, &mut rng);
        }
    }
    for seed in 0..50 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let sample = table.sample(10, &mut rng);
        assert_eq!(sample.len(), 10);
        let counts = group_counts(sample.iter().copied());
        assert_eq!(counts.len(), 10, "ten groups, one each");
        let sample = table.sample(25, &mut rng);
        let counts = group_counts(sample.iter().copied());
        assert!(counts.values().all(|&c| c <= 3), "⌈25/10⌉ = 3: {counts:?}");
        // Round by round: the first 10 are 10 groups, the next 10 too.
        assert_eq!(group_counts(sample[..10].iter().copied()).len(), 10);
        assert_eq!(group_counts(sample[10..20].iter().copied()).len(), 10);
        let distinct: HashSet<_> = sample.iter().collect();
        assert_eq!(distinct.len(), sample.len());
    }
    // Once the small groups run out, the big one fills the rest.
    let sample = table.sample(100, &mut rng);
    assert_eq!(sample.len(), 100);
    assert_eq!(
        group_counts(sample.iter().copied())[&n(1, 1, 1).group()],
        73
    );
    assert_eq!(table.sample(10_000, &mut rng).len(), table.len());
    assert!(table.sample(0, &mut rng).is_empty());
    assert!(Table::new().sample(5, &mut rng).is_empty());
}

#[test]
fn samples_are_uniform_within_a_group() {
    let mut table = Table::new();
    let mut rng = rng();
    for port in 1..=4 {
        table.admit(n(1, 1, port), Source::Registered, 100, &mut rng);
    }
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for _ in 0..4000 {
        for node in table.sample(2, &mut rng) {
            *seen.entry(node.port).or_default() += 1;
        }
    }
    // 8000 picks over 4 entries: about 2000 each.
    assert_eq!(seen.len(), 4);
    assert!(
        seen.values().all(|&c| (1700..2300).contains(&c)),
        "{seen:?}"
    );
}

#[test]
fn filtered_samples_count_only_groups_with_accepted_entries() {
    let start = Instant::now();
    let mut table = Table::new();
    let mut rng = rng();
    for g in 1..=20 {
        for h in 1..=5 {
            table.admit(n(g, h, 55000), Source::Learned, 1000, &mut rng);
        }
    }
    // Only some entries of the even groups were found online.
    for g in (2..=20).step_by(2) {
        table.record_check(&n(g, 1, 55000), true, start);
        table.record_check(&n(g, 2, 55000), true, start);
        table.record_check(&n(g, 3, 55000), false, start);
    }
    let ok = |e: &Entry| e.last_ok() == Some(true);
    for _ in 0..20 {
        let sample = table.sample_where(10, &mut rng, ok);
        assert_eq!(sample.len(), 10);
        assert!(sample.iter().all(|node| table.entry(node).is_some_and(ok)));
        assert_eq!(group_counts(sample.iter().copied()).len(), 10);
    }
    assert_eq!(table.sample_where(100, &mut rng, ok).len(), 20);
    assert!(table.sample_where(5, &mut rng, |_| false).is_empty());
    let vouched = table.sample_where(100, &mut rng, Entry::vouched);
    assert_eq!(vouched.len(), 20);
    let picked = table.random_where(&mut rng, ok).unwrap();
    assert!(table.entry(picked).is_some_and(ok));
    assert!(table.random_where(&mut rng, |_| false).is_none());
}

#[test]
fn a_random_node_is_a_random_group_then_a_random_entry() {
    let mut table = Table::new();
    let mut rng = rng();
    assert!(table.random(&mut rng).is_none());
    for port in 1..=99 {
        table.admit(n(1, 1, port), Source::Registered, 1000, &mut rng);
    }
    table.admit(n(2, 1, 1), Source::Registered, 1000, &mut rng);
    let lone = (0..2000)
        .filter(|_| table.random(&mut rng) == Some(&n(2, 1, 1)))
        .count();
    // The lone group's entry comes up half the time, not 1% of it.
    assert!((850..1150).contains(&lone), "{lone}");
}

#[test]
fn the_same_seed_replays_the_same_decisions() {
    let run = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut table = Table::new();
        let mut log = Vec::new();
        for i in 1..=400u16 {
            let node = n((i % 9) as u8 + u8::from(i % 5 == 0) * 20, (i % 13) as u8, i);
            log.push(format!(
                "{:?}",
                table.admit(node, Source::Learned, 50, &mut rng)
            ));
        }
        log.extend(table.sample(20, &mut rng).iter().map(|n| n.to_string()));
        log
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn fenwick_selects_the_kth_set_position() {
    let mut tree = Fenwick::default();
    let mut flags = Vec::new();
    let mut rng = rng();
    for _ in 0..300 {
        tree.push(1);
        flags.push(true);
        if rng.bool() {
            let set: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
            let pos = set[rng.usize(..set.len())];
            tree.remove_one(pos);
            flags[pos] = false;
        }
        let set: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
        for (k, &pos) in set.iter().enumerate() {
            assert_eq!(tree.select(k), pos);
        }
    }
    let built = Fenwick::ones(77);
    for k in 0..77 {
        assert_eq!(built.select(k), k);
    }
}

/// Not a check: the cost of the operations on a 1,000-entry table, printed. Run with
/// `cargo test --release --lib table::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_costs_on_a_1000_entry_table() {
    use std::hint::black_box;
    fn time<T>(what: &str, runs: u32, mut f: impl FnMut(u32) -> T) {
        let start = Instant::now();
        for i in 0..runs {
            black_box(f(i));
        }
        let each = start.elapsed() / runs;
        eprintln!("{what:<50} {:>9.2} µs", each.as_secs_f64() * 1e6);
    }
    // Entry i of 1,000 in one of `groups` IPv6 /32s, one host per entry.
    let spread =
        |i: u32, groups: u32| Node::new(&format!("2001:{:x}::{:x}", i % groups, i + 1), 1).unwrap();
    let mut rng = rng();
    for groups in [1, 100, 1000] {
        let mut table = Table::new();
        for i in 0..1000 {
            table.admit(spread(i, groups), Source::Learned, 1000, &mut rng);
        }
        let nodes: Vec<Node> = table.iter().map(|e| e.node().clone()).collect();
        let label = |what: &str| format!("{groups:>4} groups: {what}");
        time(&label("admit of a known node"), 10_000, |i| {
            table.admit(
                nodes[i as usize % 1000].clone(),
                Source::Learned,
                1000,
                &mut rng,
            )
        });
        time(&label("remove, then admit below the cap"), 10_000, |i| {
            let node = &nodes[i as usize % 1000];
            table.remove(node);
            table.admit(node.clone(), Source::Learned, 1000, &mut rng)
        });
        let now = Instant::now();
        time(&label("record_check"), 100_000, |i| {
            table
                .record_check(&nodes[i as usize % 1000], i % 3 != 0, now)
                .is_some()
        });
        for k in [10, 100, 1000] {
            time(&label(&format!("sample({k})")), 2_000, |_| {
                table.sample(k, &mut rng).len()
            });
        }
        time(
            &label("sample_where(10, last check ok: 2/3)"),
            2_000,
            |_| {
                let ok = |e: &Entry| e.last_ok() == Some(true);
                table.sample_where(10, &mut rng, ok).len()
            },
        );
        time(&label("random"), 100_000, |_| {
            table.random(&mut rng).is_some()
        });
        time(&label("clone"), 1_000, |_| table.clone().len());
        let mut at = 0u32;
        time(&label("admit to a full table, evicting"), 9_500, |_| {
            at += 1;
            // A newcomer from a fresh group each time: evicts from a largest group.
            let node = Node::new(&format!("2002:{at:x}::1"), 1).unwrap();
            table.admit(node, Source::Learned, 1000, &mut rng)
        });
        assert!(table.vacant > 0, "get(i) measured through the Fenwick tree");
        time(&label("get(i) after removals"), 100_000, |i| {
            table.get(i as usize % 1000).is_some()
        });
    }
}

#[test]
fn pick_diverse_takes_each_group_once_before_any_twice_and_only_what_it_keeps() {
    // 600 candidates over 6 groups of very different sizes, with repeats, in mixed order.
    let mut candidates: Vec<Node> = Vec::new();
    for i in 0..600u16 {
        let group = match i % 10 {
            0..=5 => 1,
            6 | 7 => 2,
            8 => 3,
            _ => 4 + (i % 3) as u8,
        };
        candidates.push(n(group, (i % 50) as u8, 1 + i % 40));
    }
    let refused = n(3, 8, 9);
    for k in [0, 1, 5, 6, 20, 1000] {
        let mut rng = rng();
        let picked = pick_diverse(&candidates, k, &mut rng, |node| *node != refused);
        let distinct: HashSet<&Node> = candidates.iter().collect();
        assert_eq!(picked.len(), k.min(distinct.len() - 1), "k = {k}");
        assert!(!picked.contains(&refused));
        assert_eq!(
            picked.iter().collect::<HashSet<_>>().len(),
            picked.len(),
            "distinct"
        );
        // Any prefix is diverse: while a group still has unpicked candidates, no group is
        // ahead of it by two.
        let groups: HashSet<Group> = candidates.iter().map(Node::group).collect();
        for end in 1..=picked.len() {
            let counts = group_counts(&picked[..end]);
            let most = counts.values().copied().max().unwrap_or(0);
            for group in &groups {
                let available = distinct
                    .iter()
                    .filter(|c| c.group() == *group && **c != &refused)
                    .count();
                let taken = counts.get(group).copied().unwrap_or(0);
                if taken < available {
                    assert!(most <= taken + 1, "k = {k}, prefix {end}: {counts:?}");
                }
            }
        }
        // The same seed draws the same nodes in the same order.
        let again = pick_diverse(&candidates, k, &mut fastrand::Rng::with_seed(7), |node| {
            *node != refused
        });
        assert_eq!(picked, again);
    }
}
