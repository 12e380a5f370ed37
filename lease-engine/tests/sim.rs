//! Must show 1: enforcement under contention, in a deterministic simulation of one 100 Mbit/s
//! egress link carrying three leases (20/30/40 Mbit/s) and free-tier traffic. Every lease is set
//! up through signed messages; each packet goes through `LeaseEngine::classify` and the port's
//! `EgressScheduler`, exactly as a switch would call them. Writes the plots of
//! `docs/leases/*.png`.

mod common;

use common::{in_if, png, World, FREE_IF, OUT_IF};
use pktmesh_lease_engine::priority::UNCLASSED;
use pktmesh_lease_engine::{EgressScheduler, Enqueued, Nanos};

const LINK_BPS: f64 = 100e6;
const PACKET: u32 = 1250;
const BIN_S: f64 = 0.1;
const LEASES_KBPS: [u32; 3] = [20_000, 30_000, 40_000];

/// A flow: its arrival interface and offered rate (Mbit/s) as a function of time (s).
struct Flow {
    arrival: u16,
    mbps: Box<dyn Fn(f64) -> f64>,
}

#[derive(Default)]
struct Outcome {
    /// Per flow, per bin: bytes delivered.
    delivered: Vec<Vec<f64>>,
    /// Per flow: bytes offered / dropped.
    offered: Vec<f64>,
    dropped: Vec<f64>,
    /// Per bin: the overuser meter's rate estimate (Mbit/s) and p* of its excess packets.
    overuser_rate: Vec<f64>,
    overuser_p: Vec<f64>,
    /// Per bin: mean demoted level of lease 0's excess packets (NaN if none).
    overuser_level: Vec<f64>,
}

impl Outcome {
    /// Mean delivered Mbit/s of `flow` over `[from, to)` seconds.
    fn mbps(&self, flow: usize, from: f64, to: f64) -> f64 {
        let (a, b) = (
            (from / BIN_S).round() as usize,
            (to / BIN_S).round() as usize,
        );
        self.delivered[flow][a..b].iter().sum::<f64>() * 8.0 / (to - from) / 1e6
    }
}

fn simulate(world: &mut World, flows: &[Flow], secs: f64) -> Outcome {
    let bins = (secs / BIN_S).round() as usize;
    let mut out = Outcome {
        delivered: vec![vec![0.0; bins]; flows.len()],
        offered: vec![0.0; flows.len()],
        dropped: vec![0.0; flows.len()],
        overuser_rate: vec![0.0; bins],
        overuser_p: vec![f64::NAN; bins],
        overuser_level: vec![f64::NAN; bins],
    };
    let mut level_sum = vec![0.0; bins];
    let mut level_n = vec![0.0; bins];
    let mut port: EgressScheduler<u32> = EgressScheduler::new(256);
    let end = secs * 1e9;
    let mut rng = 0x853c_49e6_748f_ea9bu64;
    let mut jitter = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        0.85 + 0.3 * ((rng >> 11) as f64 / (1u64 << 53) as f64)
    };
    // Stagger the first packets so flows do not start in lockstep.
    let mut next: Vec<f64> = (0..flows.len()).map(|i| i as f64 * 37_000.0).collect();
    let mut link_free = 0.0f64;
    let mut last_bin = 0;
    let (mut last_stats_excess, mut last_p_sum) = (0u64, 0.0f64);
    loop {
        let (fi, ta) = next
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("flows");
        let t = if !port.is_empty() && link_free <= ta {
            link_free
        } else {
            ta
        };
        if t >= end {
            break;
        }
        let bin = (t / 1e9 / BIN_S) as usize;
        while last_bin < bin {
            // Sample the overuser's meter at each bin boundary.
            if let Some(s) = world.engine.meter_stats(world.out_key(0)) {
                out.overuser_rate[last_bin] = s.rate_bps / 1e6;
                let n = s.excess_packets - last_stats_excess;
                if n > 0 {
                    out.overuser_p[last_bin] = (s.excess_priority_sum - last_p_sum) / n as f64;
                }
                last_stats_excess = s.excess_packets;
                last_p_sum = s.excess_priority_sum;
            }
            last_bin += 1;
        }
        if !port.is_empty() && link_free <= ta {
            let d = port.dequeue(Nanos(t as u64)).expect("not empty");
            link_free = t + f64::from(d.len) * 8.0 / LINK_BPS * 1e9;
            let done = ((link_free / 1e9 / BIN_S) as usize).min(bins - 1);
            out.delivered[d.token as usize][done] += f64::from(d.len);
            continue;
        }
        // An arrival of flow `fi` at `ta`.
        if port.is_empty() && link_free < ta {
            link_free = ta;
        }
        let flow = &flows[fi];
        let rate = (flow.mbps)(ta / 1e9);
        if rate <= 0.0 {
            next[fi] = ta + 1e6;
            continue;
        }
        let now = Nanos(ta as u64);
        let prio = world
            .engine
            .classify(now, flow.arrival, OUT_IF, PACKET, UNCLASSED);
        if fi == 0 && prio.is_demoted() {
            level_sum[bin] += f64::from(prio.level());
            level_n[bin] += 1.0;
        }
        out.offered[fi] += f64::from(PACKET);
        match port.enqueue(now, prio, PACKET, fi as u32) {
            Enqueued::Queued => {}
            Enqueued::QueuedEvicting(d) | Enqueued::Dropped(d) => {
                out.dropped[d.token as usize] += f64::from(d.len);
            }
        }
        next[fi] = ta + f64::from(PACKET) * 8.0 / (rate * 1e6) * 1e9 * jitter();
    }
    for b in 0..bins {
        if level_n[b] > 0.0 {
            out.overuser_level[b] = level_sum[b] / level_n[b];
        }
    }
    out
}

/// Flows 0..3 = leaseholders (constant `lease × factor[i]` Mbit/s), flow 3 = free tier.
fn steady(factor: [f64; 3], free_mbps: f64) -> Vec<Flow> {
    let mut flows: Vec<Flow> = (0..3)
        .map(|i| {
            let r = f64::from(LEASES_KBPS[i]) / 1000.0 * factor[i];
            Flow {
                arrival: in_if(i),
                mbps: Box::new(move |_| r),
            }
        })
        .collect();
    flows.push(Flow {
        arrival: FREE_IF,
        mbps: Box::new(move |_| free_mbps),
    });
    flows
}

fn within(actual: f64, target: f64, tolerance: f64) -> bool {
    (actual / target - 1.0).abs() <= tolerance
}

#[test]
fn a_all_at_their_lease_get_it_and_free_tier_gets_the_rest() {
    let mut w = World::new(&LEASES_KBPS);
    let out = simulate(&mut w, &steady([1.0; 3], 30.0), 8.0);
    for (i, kbps) in LEASES_KBPS.iter().enumerate() {
        let got = out.mbps(i, 2.0, 8.0);
        let lease = f64::from(*kbps) / 1000.0;
        println!("lease {i}: {got:.2} Mbit/s of {lease}");
        assert!(within(got, lease, 0.05), "lease {i}: {got} vs {lease}");
        assert_eq!(out.dropped[i], 0.0, "lease {i} lost packets");
    }
    let free = out.mbps(3, 2.0, 8.0);
    let total: f64 = (0..4).map(|f| out.mbps(f, 2.0, 8.0)).sum();
    println!("free tier: {free:.2} Mbit/s, link {total:.2} Mbit/s");
    assert!(within(free, 10.0, 0.1), "free tier got {free}");
    assert!(total > 98.0, "link not saturated: {total}");
}

#[test]
fn b_an_overuser_is_demoted_and_the_others_keep_their_lease() {
    let mut w = World::new(&LEASES_KBPS);
    let out = simulate(&mut w, &steady([3.0, 1.0, 1.0], 30.0), 10.0);
    for (i, kbps) in LEASES_KBPS.iter().enumerate().skip(1) {
        let got = out.mbps(i, 3.0, 10.0);
        let lease = f64::from(*kbps) / 1000.0;
        println!("lease {i}: {got:.2} Mbit/s of {lease}");
        assert!(within(got, lease, 0.05), "lease {i}: {got} vs {lease}");
        assert_eq!(out.dropped[i], 0.0, "lease {i} lost packets");
    }
    let over = out.mbps(0, 3.0, 10.0);
    let free = out.mbps(3, 3.0, 10.0);
    println!("overuser (20 leased, 60 offered): {over:.2} Mbit/s; free tier {free:.2}");
    // The overuser keeps at least its lease; its excess beats only the free tier.
    assert!(over >= 20.0 * 0.95, "overuser got {over}");
    // The EMA rule: Â ≈ 60 Mbit/s, so the excess rides p* = 20 / (60 − 20) = 0.5.
    let s = w.engine.meter_stats(w.out_key(0)).unwrap();
    let rate = s.rate_bps / 1e6;
    let p_late: Vec<f64> = out.overuser_p[30..99].to_vec();
    let p_mean = p_late.iter().sum::<f64>() / p_late.len() as f64;
    let lvl: Vec<f64> = out.overuser_level[30..99].to_vec();
    let lvl_mean = lvl.iter().sum::<f64>() / lvl.len() as f64;
    println!("overuser EMA rate {rate:.2} Mbit/s, mean p* {p_mean:.3}, mean level {lvl_mean:.2}");
    assert!(within(rate, 60.0, 0.05), "EMA rate {rate}");
    assert!((p_mean - 0.5).abs() < 0.03, "mean p* {p_mean}");
    assert!(
        (lvl_mean - (1.0 + 46.0 * p_mean)).abs() < 0.5,
        "mean level {lvl_mean}"
    );
    // Two thirds of what it sent was excess.
    let excess_share = s.excess_bytes as f64 / (s.excess_bytes + s.in_lease_bytes) as f64;
    assert!(
        within(excess_share, 2.0 / 3.0, 0.03),
        "excess share {excess_share}"
    );
}

#[test]
fn c_without_contention_nothing_is_dropped() {
    // Two holders below their lease, one 20 % above it, free tier: 16 + 24 + 48 + 5 < 100.
    let mut w = World::new(&LEASES_KBPS);
    let out = simulate(&mut w, &steady([0.8, 0.8, 1.2], 5.0), 8.0);
    let offered: f64 = out.offered.iter().sum::<f64>() * 8.0 / 8.0 / 1e6;
    println!("offered {offered:.2} Mbit/s, dropped {:?}", out.dropped);
    assert!(offered < 99.0 && offered > 80.0);
    assert!(
        out.dropped.iter().all(|&d| d == 0.0),
        "drops without contention: {:?}",
        out.dropped
    );
    // Fail open: the free tier and the over-lease holder get everything they sent.
    assert!(within(out.mbps(3, 1.0, 8.0), 5.0, 0.03));
    assert!(within(out.mbps(2, 1.0, 8.0), 48.0, 0.03));
    assert!(
        w.engine.meter_stats(w.out_key(2)).unwrap().excess_bytes > 0,
        "no demotion seen"
    );
}

#[test]
fn plots_of_a_timeline() {
    // 0–5 s all at their lease; 5–12 s lease 0 sends 3×; 12–16 s back to its lease.
    let mut w = World::new(&LEASES_KBPS);
    let mut flows = steady([1.0; 3], 30.0);
    flows[0].mbps = Box::new(|t| if (5.0..12.0).contains(&t) { 60.0 } else { 20.0 });
    let secs = 16.0;
    let out = simulate(&mut w, &flows, secs);
    // The phases hold the numbers of the steady tests.
    for (from, to) in [(2.0, 5.0), (13.0, 16.0)] {
        for (i, kbps) in LEASES_KBPS.iter().enumerate() {
            assert!(within(
                out.mbps(i, from, to),
                f64::from(*kbps) / 1000.0,
                0.05
            ));
        }
    }
    for (i, kbps) in LEASES_KBPS.iter().enumerate().skip(1) {
        assert!(within(
            out.mbps(i, 6.0, 12.0),
            f64::from(*kbps) / 1000.0,
            0.05
        ));
    }
    let bins = out.delivered[0].len();
    let xs: Vec<f64> = (0..bins).map(|b| (b as f64 + 0.5) * BIN_S).collect();
    let colours = [3u8, 4, 5, 6];
    let throughput: Vec<(u8, Vec<(f64, f64)>)> = (0..4)
        .map(|f| {
            let pts = xs
                .iter()
                .zip(&out.delivered[f])
                .map(|(&x, &b)| (x, b * 8.0 / BIN_S / 1e6))
                .collect();
            (colours[f], pts)
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/leases");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("throughput.png"),
        png::chart(&throughput, secs, 70.0, 1.0, 10.0),
    )
    .unwrap();
    // Demotion: the overuser's rate EMA (Mbit/s, red), 100·p* of its excess (purple) and its
    // mean demoted level (orange), against its lease (black).
    // (The last bin is never sampled.)
    let rate: Vec<(f64, f64)> = xs
        .iter()
        .copied()
        .zip(out.overuser_rate.iter().copied())
        .take(bins - 1)
        .collect();
    let p: Vec<(f64, f64)> = xs
        .iter()
        .zip(&out.overuser_p)
        .filter(|(_, p)| p.is_finite())
        .map(|(&x, &p)| (x, 100.0 * p))
        .collect();
    let lvl: Vec<(f64, f64)> = xs
        .iter()
        .zip(&out.overuser_level)
        .filter(|(_, l)| l.is_finite())
        .map(|(&x, &l)| (x, l))
        .collect();
    let lease = vec![(0.0, 20.0), (secs, 20.0)];
    let series = [(2u8, lease), (3, rate), (7, p), (8, lvl)];
    std::fs::write(
        dir.join("demotion.png"),
        png::chart(&series, secs, 110.0, 1.0, 10.0),
    )
    .unwrap();
}

#[test]
fn d_two_overusers_keep_their_lease_and_the_lesser_one_gets_the_spare() {
    // Holder 0 sends 3× (p* = 20/40 = 0.5), holder 1 sends 4× (p* = 30/90 = 1/3).
    let mut w = World::new(&LEASES_KBPS);
    let out = simulate(&mut w, &steady([3.0, 4.0, 1.0], 30.0), 10.0);
    let got: Vec<f64> = (0..4).map(|f| out.mbps(f, 3.0, 10.0)).collect();
    println!(
        "holders {:.2} / {:.2} / {:.2}, free {:.2}",
        got[0], got[1], got[2], got[3]
    );
    // Everyone keeps at least the lease; the in-lease holder loses nothing.
    assert!(within(got[2], 40.0, 0.05));
    assert_eq!(out.dropped[2], 0.0);
    assert!(got[1] >= 30.0 * 0.95, "holder 1 got {}", got[1]);
    // The 10 Mbit/s spare goes to the smaller overshoot: holder 0's excess rides higher.
    assert!(within(got[0], 30.0, 0.05), "holder 0 got {}", got[0]);
    assert!(within(got[1], 30.0, 0.05), "holder 1 got {}", got[1]);
    assert!(got[3] < 0.5, "free tier got {}", got[3]);
}
