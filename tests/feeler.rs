//! The feeler with the real binaries: a node that knows enough peers, and so never asks its
//! peers or seed for more (SPEC §7), still hears of a node only the seed knows.

mod support;

use std::fs;
use std::time::Duration;

use seedmesh::feeler::FEELER_EVERY;
use support::*;

#[test]
fn a_node_that_knows_enough_learns_a_node_only_the_seed_knows() {
    let dir = TempDir::new("feeler");
    let seed = dns(&dir.join("dns"), &[]);
    // C answers anything and never announces itself: only the seed knows it.
    let c = FakePeer::new("127.0.0.1", "[]");
    assert_eq!(seed.post("/", &c.node_json().to_string()).status, 200);

    // A starts knowing two live peers, B1 and B2, which is --kn_limit: every cycle ends after
    // its checks, and it never asks a peer or the seed for a list. Two, not one, so that the
    // seed's sample of --kn_limit holds C whatever its order (A is listed too).
    let (b1, b2) = (
        FakePeer::new("127.0.0.1", "[]"),
        FakePeer::new("127.0.0.1", "[]"),
    );
    let a_dir = dir.join("a");
    fs::create_dir_all(&a_dir).unwrap();
    let file = format!("[{},{}]", b1.node_json(), b2.node_json());
    fs::write(a_dir.join("nodes.json"), file).unwrap();
    let interval = 0.2;
    let seed_arg = format!("127.0.0.1:{}", seed.port());
    let a = node(
        &a_dir,
        &["-u", &interval.to_string(), "-k", "2", "--dns", &seed_arg],
    );
    wait_until(Duration::from_secs(10), "A registers with the seed", || {
        seed.nodes().contains(&("127.0.0.1".into(), a.port()))
    });

    // Its feeler comes within FEELER_EVERY cycles (+10% jitter); three times that, and a
    // few seconds, for a loaded machine.
    let deadline = Duration::from_secs_f64(FEELER_EVERY as f64 * interval * 1.1 * 3.0 + 5.0);
    // C was checked by A (announced to) before A listed it: looked at the moment A first
    // lists C, not after, when A announces itself to C every round anyway.
    let mut checked_first = false;
    wait_until(deadline, "A learns C from its feeler", || {
        // Listed first, then C's requests: a check made before the listing is among them,
        // and A's next announcement to C is a round (0.2 s) away.
        let listed = a.nodes().contains(&("127.0.0.1".into(), c.addr.port()));
        let requests = c.requests.lock().unwrap().clone();
        checked_first = requests.iter().any(|r| r.starts_with("POST / "));
        listed
    });
    assert!(checked_first, "A checked C before it listed it");
    // Never the exchange step: B1 and B2 were only announced to.
    for b in [&b1, &b2] {
        let lines = b.requests.lock().unwrap().clone();
        assert!(
            lines.iter().all(|r| r.starts_with("POST / ")),
            "no GET /nodes/ from A: {lines:?}"
        );
    }
    // Counted once its round ends.
    wait_until(Duration::from_secs(5), "the feeler is counted", || {
        a.metric("seedmesh_feeler_nodes_learned_total") == 1
            && a.metric("seedmesh_feelers_total") >= 1
    });
    assert_eq!(a.get("/status").json()["totals"]["feeler_learned"], 1);
    // A seed never feels: it shows no feeler counters.
    assert!(!seed.get("/metrics").body.contains("seedmesh_feeler"));
    assert!(
        seed.get("/status").json()["totals"]
            .get("feelers")
            .is_none()
    );
}
