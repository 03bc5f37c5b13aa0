//! The simulator (`seedmesh::sim`, issue 12): one seed gives the same figures byte for byte,
//! and the behaviours users rely on hold in a small network with churn and an attack.

use seedmesh::sim::{Attack, Config, Simulation, figures};

/// A small network: 200 nodes, 2 seeds, 15 rounds, 3% churn, a one-host attacker from
/// round 1, and 10% of the departures leaving black holes. (The test runs in debug, where
/// the whole thing must take seconds.)
fn small(seed: u64) -> Config {
    Config {
        nodes: 200,
        seeds: 2,
        rounds: 15,
        churn: 0.03,
        black_holes: 0.1,
        attack: Attack::OneHost,
        attack_size: 100,
        seed,
        ..Config::default()
    }
}

/// Runs `config` and returns what `simulate` prints and writes: the round lines, the
/// summary line, and the CSV.
fn run(config: Config) -> (String, Simulation) {
    let rounds = config.rounds;
    let mut sim = Simulation::new(config);
    let mut out = String::new();
    for _ in 0..rounds {
        out.push_str(&sim.step().line());
        out.push('\n');
    }
    out.push_str(&sim.summary().to_string());
    out.push('\n');
    out.push_str(&figures::csv(sim.rounds()));
    (out, sim)
}

#[test]
fn one_seed_gives_the_same_output_byte_for_byte_and_the_network_holds() {
    let (first, sim) = run(small(7));
    let (second, _) = run(small(7));
    assert_eq!(first, second, "the same seed must give the same output");
    let (other, _) = run(Config {
        rounds: 2,
        ..small(8)
    });
    assert_ne!(first, other, "another seed gives another run");

    let summary = sim.summary();
    let rounds = sim.rounds();
    // Convergence: every live node knows at least --kn_limit live peers within 3 rounds,
    // and stays so under churn.
    let converged: usize = summary.get("converged_round").unwrap().parse().unwrap();
    assert!(converged <= 3, "{summary}");
    for f in &rounds[3..] {
        assert!(f.converged >= 0.99, "round {}: {}", f.round, f.line());
        assert!(f.lcc >= 0.99, "round {}: {}", f.round, f.line());
    }
    // Forgetting: a node that stops answering is in no table a few rounds later.
    let died: usize = summary.get("died").unwrap().parse().unwrap();
    assert!(died >= 60, "churn ran: {summary}");
    let forget_max: usize = summary.get("forget_rounds_max").unwrap().parse().unwrap();
    assert!(forget_max <= 5, "{summary}");
    // Answers stay fresh under 2% churn per round.
    for f in &rounds[2..] {
        assert!(f.dead_answers < 0.05, "round {}: {}", f.round, f.line());
    }
}
