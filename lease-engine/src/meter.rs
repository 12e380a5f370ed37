//! Per-lease metering: a token bucket that separates traffic within the lease from the excess,
//! and a rate EMA that sets how far the excess is demoted (the white paper's rule).
//!
//! For every packet of `len` bytes entering on a lease of rate `L` (bit/s) at time `t_k`:
//!
//! 1. **Rate EMA** (τ = [`TAU_NS`], 1 s): with `Δ = t_k − t_{k−1}`,
//!    `Â_k = Â_{k−1} · e^{−Δ/τ} + 8·len / τ` (bit/s). For a steady rate `A` this converges to `A`;
//!    it is the standard exponentially weighted rate estimator for irregular arrivals (each
//!    packet's bits spread over τ, old contributions decaying continuously). `e^{−x}` is the
//!    Taylor polynomial `1 − x + x²/2 − x³/6` below x = 1/8 (x ≈ 10⁻⁴ per packet at link rates;
//!    error < 10⁻⁵) and `1 / (1 + x + x²/2 + x³/6)` above (long gaps, where little is left).
//! 2. **Token bucket** (rate `L`, depth `L · 20 ms`, at least 3000 bytes): a packet that finds
//!    enough tokens is *within the lease* and rides `Priority::in_lease(class)`.
//! 3. Otherwise the packet is **excess**. Its target priority is the white paper's
//!    `p* = 1 / (Â − L)` with bandwidth measured in units of the lease itself, i.e.
//!    `p* = min(1, L / (Â − L))` (1 while `Â ≤ 2L`, ½ at `Â = 3L`, 1/10 at `Â = 11L`). The level is
//!    `1 + p*·46` with error diffusion (the fraction carried to the next packet), so the mean level
//!    of the excess packets is exactly `1 + 46·p*`: the EMA of the priority of excess traffic is
//!    `p*` in the scheduler's demoted band.
//!
//! Every step is a handful of floating-point operations and no allocation.

use crate::priority::Priority;
use crate::Nanos;

/// EMA time constant: 1 s.
pub const TAU_NS: u64 = 1_000_000_000;
/// Token bucket depth in time at the lease rate: 20 ms.
pub const BURST_NS: u64 = 20_000_000;
/// Smallest bucket depth, bytes (two full-size packets).
pub const MIN_BURST_BYTES: f64 = 3000.0;

/// Steps of the demoted band above its bottom level (47 − 1).
const DEMOTED_STEPS: f64 = (Priority::DEMOTED_MAX.level() - Priority::DEMOTED_MIN.level()) as f64;

/// What the meter decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the lease.
    InLease,
    /// Beyond the lease, demoted to this level (1..=47).
    Excess(Priority),
}

/// Counters and estimates of one lease, for tests, plots and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterStats {
    /// The rate EMA Â, bit/s.
    pub rate_bps: f64,
    /// Bytes classified within the lease.
    pub in_lease_bytes: u64,
    /// Bytes classified as excess.
    pub excess_bytes: u64,
    /// Excess packets.
    pub excess_packets: u64,
    /// Sum of `p*` over excess packets (mean = this / `excess_packets`).
    pub excess_priority_sum: f64,
}

/// One lease's meter.
#[derive(Debug, Clone)]
pub struct LeaseMeter {
    lease_bps: f64,
    /// Lease rate in bytes per nanosecond (token fill rate).
    fill_per_ns: f64,
    burst: f64,
    tokens: f64,
    rate: f64,
    last: Option<Nanos>,
    carry: f64,
    stats: MeterStats,
}

/// `1/τ` in 1/ns, so the per-packet path multiplies instead of dividing.
const INV_TAU: f64 = 1.0 / TAU_NS as f64;
/// Bits per byte spread over τ, in bit/s: `8 / τ` with τ in seconds.
const BITS_PER_BYTE_OVER_TAU: f64 = 8.0 * 1e9 / TAU_NS as f64;

/// `e^{−x}` for x ≥ 0. Below 1/8 (every packet gap shorter than 125 ms) the cubic Taylor
/// polynomial `1 − x + x²/2 − x³/6` (error < x⁴/24 < 10⁻⁵, no division); above it,
/// `1 / (1 + x + x²/2 + x³/6)` (positive and decreasing for all x, within 2 % up to x = 1).
#[inline]
fn decay(x: f64) -> f64 {
    if x < 0.125 {
        1.0 - x * (1.0 - x * (0.5 - x * (1.0 / 6.0)))
    } else {
        1.0 / (1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6.0))))
    }
}

impl LeaseMeter {
    /// A meter for a lease of `kbps`, starting with a full bucket and a zero rate estimate.
    pub fn new(kbps: u32) -> Self {
        let lease_bps = f64::from(kbps) * 1000.0;
        let fill_per_ns = lease_bps / 8.0 / 1e9;
        let burst = (fill_per_ns * BURST_NS as f64).max(MIN_BURST_BYTES);
        Self {
            lease_bps,
            fill_per_ns,
            burst,
            tokens: burst,
            rate: 0.0,
            last: None,
            carry: 0.0,
            stats: MeterStats::default(),
        }
    }

    /// The white paper's target priority of excess traffic for a rate estimate `rate_bps`:
    /// `min(1, L / (Â − L))`, 1 when `Â ≤ L`.
    pub fn target_priority(&self, rate_bps: f64) -> f64 {
        let over = rate_bps - self.lease_bps;
        if over <= self.lease_bps {
            1.0
        } else {
            self.lease_bps / over
        }
    }

    /// Meters one packet of `len` bytes arriving at `now` (times must not go backwards; a
    /// backwards step counts as zero elapsed time).
    #[inline]
    pub fn on_packet(&mut self, now: Nanos, len: u32) -> Verdict {
        let elapsed = match self.last {
            Some(last) => now.0.saturating_sub(last.0),
            None => 0,
        };
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
        let dt = elapsed as f64;
        let bytes = f64::from(len);
        self.rate = self.rate * decay(dt * INV_TAU) + bytes * BITS_PER_BYTE_OVER_TAU;
        self.tokens = (self.tokens + dt * self.fill_per_ns).min(self.burst);
        if self.tokens >= bytes {
            self.tokens -= bytes;
            self.stats.in_lease_bytes += u64::from(len);
            return Verdict::InLease;
        }
        let p = self.target_priority(self.rate);
        let x = p * DEMOTED_STEPS + self.carry;
        let step = x.floor();
        self.carry = x - step;
        self.stats.excess_bytes += u64::from(len);
        self.stats.excess_packets += 1;
        self.stats.excess_priority_sum += p;
        // step ∈ [0, 46] because p ∈ (0, 1] and carry ∈ [0, 1).
        let level = Priority::DEMOTED_MIN.level() + (step as u8).min(DEMOTED_STEPS as u8);
        Verdict::Excess(Priority::new(level).unwrap_or(Priority::DEMOTED_MAX))
    }

    /// Counters and the current estimate.
    pub fn stats(&self) -> MeterStats {
        MeterStats {
            rate_bps: self.rate,
            ..self.stats
        }
    }

    /// The lease rate, bit/s.
    pub fn lease_bps(&self) -> f64 {
        self.lease_bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_is_close_to_exp() {
        for x in [0.0f64, 1e-6, 1e-3, 0.1, 0.5, 1.0] {
            let e = (-x).exp();
            assert!((decay(x) - e).abs() / e < 0.03, "x={x}");
        }
        assert!(decay(100.0) < 1e-4);
        for i in 0..125 {
            let x = f64::from(i) / 1000.0;
            assert!((decay(x) - (-x).exp()).abs() < 1e-5, "x={x}");
        }
    }

    /// Packets of 1250 bytes at `mbps` for `secs`; returns the meter.
    fn run(kbps: u32, mbps: f64, secs: f64) -> (LeaseMeter, u64, u64) {
        let mut m = LeaseMeter::new(kbps);
        let gap = 1250.0 * 8.0 / (mbps * 1e6) * 1e9;
        let n = (secs * 1e9 / gap) as u64;
        let (mut inl, mut exc) = (0, 0);
        for i in 0..n {
            match m.on_packet(Nanos((i as f64 * gap) as u64), 1250) {
                Verdict::InLease => inl += 1,
                Verdict::Excess(_) => exc += 1,
            }
        }
        (m, inl, exc)
    }

    #[test]
    fn within_lease_is_never_excess() {
        let (m, _, exc) = run(20_000, 19.9, 5.0);
        assert_eq!(exc, 0);
        assert!((m.stats().rate_bps / 19.9e6 - 1.0).abs() < 0.02);
    }

    #[test]
    fn overuse_splits_and_demotes_per_rule() {
        let (m, inl, exc) = run(20_000, 60.0, 8.0);
        // One third within the lease, two thirds excess.
        let share = inl as f64 / (inl + exc) as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.01, "{share}");
        let s = m.stats();
        assert!((s.rate_bps / 60e6 - 1.0).abs() < 0.02);
        // p* = 20 / (60 − 20) = 0.5 once the EMA has converged.
        assert!((m.target_priority(s.rate_bps) - 0.5).abs() < 0.02);
    }

    #[test]
    fn mean_level_follows_target() {
        let mut m = LeaseMeter::new(1000);
        m.rate = 5e6; // pretend: Â = 5 Mbit/s on a 1 Mbit/s lease → p* = 1/4
        m.tokens = 0.0;
        let mut sum = 0u64;
        let n = 1000;
        for _ in 0..n {
            m.rate = 5e6;
            m.tokens = 0.0;
            m.last = Some(Nanos(0));
            if let Verdict::Excess(p) = m.on_packet(Nanos(0), 1) {
                sum += u64::from(p.level() - 1);
            }
        }
        let mean = sum as f64 / n as f64 / DEMOTED_STEPS;
        assert!((mean - 0.25).abs() < 0.005, "{mean}");
    }
}
