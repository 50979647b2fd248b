//! Conservation of attributed energy: random section trees on several threads, random
//! sample grids (with gaps), random power.

use std::sync::Arc;

use proptest::prelude::*;
use tracing_energy::attribution::{Activity, EnergyIntegral};
use tracing_energy::power::{DomainEnergy, PowerSample};

#[derive(Debug, Clone)]
struct Node {
    start: u64,
    end: u64,
    children: Vec<Node>,
}

/// Splits `[a, b)` into up to `n` non-overlapping sub-intervals, using `cuts` as random
/// positions.
fn split(a: u64, b: u64, cuts: &[u64]) -> Vec<(u64, u64)> {
    let mut pts: Vec<u64> = cuts.iter().map(|c| a + c % (b - a).max(1)).collect();
    pts.push(a);
    pts.push(b);
    pts.sort_unstable();
    pts.dedup();
    // Every other gap is a section, the rest idle time.
    pts.windows(2)
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, w)| (w[0], w[1]))
        .filter(|(x, y)| y > x)
        .collect()
}

fn tree(a: u64, b: u64, depth: u32, seed: &mut impl Iterator<Item = u64>) -> Vec<Node> {
    let cuts: Vec<u64> = seed.by_ref().take(4).collect();
    split(a, b, &cuts)
        .into_iter()
        .map(|(s, e)| Node {
            start: s,
            end: e,
            children: if depth > 0 && e - s > 4 {
                tree(s, e, depth - 1, seed)
            } else {
                vec![]
            },
        })
        .collect()
}

fn walk(f: &EnergyIntegral, n: &Node, exclusive_sum: &mut f64, count: &mut usize) -> f64 {
    let incl = f.section(n.start, n.end).total_mj.unwrap_or(0.0);
    let children: f64 = n
        .children
        .iter()
        .map(|c| walk(f, c, exclusive_sum, count))
        .sum();
    *exclusive_sum += incl - children;
    *count += 1;
    incl
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn exclusive_energies_plus_unattributed_equal_measured(
        seed in proptest::collection::vec(any::<u64>(), 400),
        threads in 1usize..5,
        grid in proptest::collection::vec((1u64..5_000, 0.0f64..500.0, any::<bool>()), 1..40),
        span in 1_000u64..100_000,
    ) {
        let mut it = seed.into_iter().cycle();
        let forests: Vec<Vec<Node>> = (0..threads).map(|_| tree(0, span, 3, &mut it)).collect();
        // Sample windows back to back, some of them missing (a gap in coverage).
        let mut samples = Vec::new();
        let mut t = 0u64;
        for (len, mj, keep) in grid {
            if keep {
                samples.push(PowerSample::new(t, t + len, DomainEnergy { cpu: Some(mj * 0.7), gpu: Some(mj * 0.3), ane: None, dram: None }, Arc::from("p"), false).unwrap());
            }
            t += len;
        }
        let activity: Vec<Vec<Activity>> = forests
            .iter()
            .map(|roots| roots.iter().map(|r| Activity { start_ns: r.start, end_ns: r.end }).collect())
            .collect();
        let f = EnergyIntegral::new(&samples, &activity, 0, span);
        let mut exclusive = 0.0;
        let mut count = 0;
        for roots in &forests {
            for r in roots {
                walk(&f, r, &mut exclusive, &mut count);
            }
        }
        let measured = f.measured_mj();
        let err = (exclusive + f.unattributed_mj() - measured).abs();
        prop_assert!(err <= 1e-9 * measured.max(1.0), "sum {} + {} vs {} ({} sections)", exclusive, f.unattributed_mj(), measured, count);
        // No double counting: attributed energy never exceeds what was measured.
        prop_assert!(exclusive <= measured * (1.0 + 1e-9) + 1e-9);
    }
}
