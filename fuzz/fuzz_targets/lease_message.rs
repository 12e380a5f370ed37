//! Lease messages: parsing never panics and whatever parses re-emits to the same bytes; the
//! engine never panics, rejects with no state change, and — because the target re-signs what
//! parses with the keys the engine expects — the semantic checks (time spans, owners, sequence
//! numbers, pair conflicts, transfers, releases) are fuzzed too, followed by a few packets.
//! Leases are re-signed by the node, by either of its two peers (which may reuse each other's
//! ids: ambiguous targets) or by a stranger (never a peer: refused), and no peer may hold more
//! than its share of the table.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::PrivateKey;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{EngineConfig, LeaseEngine, LeaseId, Nanos, UnixTime};

/// Most leases one peer may hold in the fixture's engine.
const PER_ISSUER: usize = 4;

const NOW: u64 = 1_800_000_000;

struct Fixture {
    node: Signer,
    up: Signer,
    down: Signer,
    stranger: Signer,
    owner: Signer,
    engine: LeaseEngine,
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes([seed; 32])
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (node_k, up_k, q_k) = (key(1), key(2), key(3));
        let (node, up, owner) = (
            Signer::from_cjdns(&node_k),
            Signer::from_cjdns(&up_k),
            Signer::from_cjdns(&key(4)),
        );
        let config = EngineConfig {
            max_interfaces: 8,
            max_leases: 16,
            max_leases_per_issuer: PER_ISSUER,
        };
        let mut engine = LeaseEngine::new(node.public(), config);
        engine.peer_up(up_k.public_key(), 1);
        engine.peer_up(q_k.public_key(), 2);
        let span = (UnixTime(NOW - 10), UnixTime(NOW + 1000));
        let inl = Lease {
            id: LeaseId([1; 16]),
            node: up.public(),
            peer: *node_k.public_key().as_bytes(),
            kbps: 1000,
            start: span.0,
            end: span.1,
            owner: owner.public(),
        };
        let out = Lease {
            id: LeaseId([2; 16]),
            node: node.public(),
            peer: *q_k.public_key().as_bytes(),
            ..inl
        };
        let vs = VirtualSwitchLease {
            id: LeaseId([3; 16]),
            node: node.public(),
            owner: owner.public(),
            start: span.0,
            end: span.1,
            ins: vec![inl.id],
            outs: vec![out.id],
        };
        let now = UnixTime(NOW);
        engine
            .handle_message(now, &Message::Lease(inl).emit_signed(&up).unwrap())
            .unwrap();
        engine
            .handle_message(now, &Message::Lease(out).emit_signed(&node).unwrap())
            .unwrap();
        engine
            .handle_message(
                now,
                &Message::VirtualSwitch(vs.clone())
                    .emit_signed(&node)
                    .unwrap(),
            )
            .unwrap();
        for (seq, id) in [(1, inl.id), (2, out.id), (3, vs.id)] {
            let c = Config {
                target: id,
                signer: owner.public(),
                seq,
                command: Command::Attach { network: 7 },
            };
            engine
                .handle_message(now, &Message::Config(c).emit_signed(&owner).unwrap())
                .unwrap();
        }
        Fixture {
            node,
            up,
            down: Signer::from_cjdns(&q_k),
            stranger: Signer::from_cjdns(&key(5)),
            owner,
            engine,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut engine = f.engine.clone();
    let now = UnixTime(NOW - 20 + u64::from(data.first().copied().unwrap_or(0)) * 8);
    engine.handle_timeout(now);

    // Raw bytes: parse / re-emit, and the engine on unsigned input.
    if let Ok((msg, sig)) = Message::parse(data) {
        let back = msg.emit_with_signature(&sig).expect("parsed messages emit");
        assert_eq!(back, data);
    }
    let before = engine.snapshot().clone();
    if engine.handle_message(now, data).is_err() {
        assert_eq!(engine.snapshot(), &before);
    }

    // Re-signed with the keys the engine trusts, so the semantic layer is reached.
    if let Ok((msg, _)) = Message::parse(data) {
        let flip = data.get(1).copied().unwrap_or(0) & 1 == 1;
        let signed = match msg {
            Message::Lease(mut l) => {
                let s = match data.get(1).copied().unwrap_or(0) % 4 {
                    0 => &f.node,
                    1 => &f.up,
                    2 => &f.down,
                    _ => &f.stranger,
                };
                l.node = s.public();
                Message::Lease(l).emit_signed(s)
            }
            Message::VirtualSwitch(mut v) => {
                v.node = f.node.public();
                Message::VirtualSwitch(v).emit_signed(&f.node)
            }
            Message::Config(mut c) => {
                if flip {
                    c.signer = f.owner.public();
                }
                Message::Config(c).emit_signed(&f.owner)
            }
        };
        let signed = signed.expect("parsed messages emit");
        let before = engine.snapshot().clone();
        if engine.handle_message(now, &signed).is_err() {
            assert_eq!(engine.snapshot(), &before);
        }
        let issued_by = |s: &Signer| {
            let issuer = s.public();
            let snap = engine.snapshot();
            snap.leases.keys().filter(|k| k.issuer == issuer).count()
        };
        assert_eq!(
            issued_by(&f.stranger),
            0,
            "a lease from a non-peer was kept"
        );
        assert!(issued_by(&f.up) <= PER_ISSUER && issued_by(&f.down) <= PER_ISSUER);
    }
    for (i, w) in data.windows(3).take(16).enumerate() {
        let p = engine.classify(
            Nanos(i as u64 * 1000),
            u16::from(w[0] % 4),
            u16::from(w[1] % 4),
            u32::from(w[2]) * 6,
            u16::from(w[2]),
        );
        assert!(p.level() < 64);
    }
    let _ = engine.poll_timeout();
});
