#!/usr/bin/env bash
# Throughput of two pktmesh nodes in network namespaces joined by a veth pair, measured with
# iperf3 through their TUN devices: TCP for 10 s, then an unthrottled UDP flood (-b 0).
# Each node is pinned to its own core; CPU per node is read from /proc while iperf3 runs, and
# what node B wrote into its TUN device from the device's counters.
#
# Usage (as root): benches/netns-throughput.sh [path/to/cjdroute]
# DUR=seconds per run (default 10); TUN_OFFLOAD=0 turns the TUN offloads off; APP_PIN=1 pins
# the iperf3 processes too (see below); LINK=eth makes the nodes peer over raw Ethernet
# (ETHInterface) instead of UDP. NODE_PIN=0 lets the nodes float over all cores instead of
# pinning each to one; WORKERS=n sets pktmesh.workers in both configs (default: one worker per
# core the node may run on, so one when pinned); FLOWS=n runs the TCP test with n parallel
# streams (iperf3 -P n). CRYPTO=legacy sets pktmesh.linkCrypto and pktmesh.sessionCrypto to
# "legacy" in both configs (legacy CryptoAuth on the link and end to end, as with stock cjdns);
# by default two pktmesh nodes speak Noise on both (docs/node.md).
# LEASES=1 runs the same two nodes with leases configured as an operator would (docs/leases.md
# §9): a route server (pktmesh-route-server) in a third namespace pmtpR, joined to each node by
# a veth of its own (10.231.1.0/24 to A, 10.231.2.0/24 to B); both configs with
# pktmesh.routeServer (intervalSeconds 1, a leaseOffer) and pktmesh.linkCapacityKbps =
# CAPACITY_KBPS (default 20000000, 20 Gbit/s: every packet to the peer goes through its paced
# egress port, whose rate is far above what the nodes reach); and a virtual ISP that buys a
# lease of LEASE_KBPS (default 10000000, so all of the benchmark's traffic is in-lease) on A→B
# and on B→A with `pktctl lease buy` and attaches both to one network. iperf3 starts once both
# nodes have logged both attachments. LEASES=pace: the same route server, offers and capacity,
# but no lease bought (pacing and the agent without a lease to classify against). The route
# server is ROUTE_SERVER (default: pktmesh-route-server next to cjdroute; the script builds it
# when it builds cjdroute).
# Needs iproute2 and iperf3. Creates namespaces pmtpA/pmtpB (and pmtpR) and removes them on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CJDROUTE=${1:-}
if [ -z "$CJDROUTE" ]; then
  # For this machine: native CPU features (AVX2) speed up the ciphers.
  RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}" CARGO_TARGET_DIR=target/native \
    cargo build --release -p pktmesh-tools --bin cjdroute --bin pktctl >&2
  if [ "${LEASES:-0}" != 0 ]; then
    RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}" CARGO_TARGET_DIR=target/native \
      cargo build --release -p pktmesh-route-server >&2
  fi
  CJDROUTE=target/native/release/cjdroute
fi
PKTCTL=$(dirname "$CJDROUTE")/pktctl
ROUTE_SERVER=${ROUTE_SERVER:-$(dirname "$CJDROUTE")/pktmesh-route-server}
DUR=${DUR:-10}
LEASES=${LEASES:-0}
case "$LEASES" in 0|1|pace) ;; *) echo "LEASES must be 0, 1 or pace" >&2; exit 2 ;; esac
CAPACITY_KBPS=${CAPACITY_KBPS:-20000000}
LEASE_KBPS=${LEASE_KBPS:-10000000}
# APP_PIN=1 also pins each iperf3 to its node's core (client with A, server with B), as if each
# side were a one-core host; by default the two iperf3 processes float over both cores.
PIN_A=""; PIN_B=""
if [ "${APP_PIN:-0}" = 1 ]; then PIN_A="taskset -c 0"; PIN_B="taskset -c 1"; fi
NODE_A="taskset -c 0"; NODE_B="taskset -c 1"
if [ "${NODE_PIN:-1}" = 0 ]; then NODE_A=""; NODE_B=""; fi
EXTRA_KEYS=""
if [ -n "${WORKERS:-}" ]; then EXTRA_KEYS=", \"workers\": $WORKERS"; fi
case "${CRYPTO:-noise}" in
  noise) ;;
  legacy) EXTRA_KEYS="$EXTRA_KEYS, \"linkCrypto\": \"legacy\", \"sessionCrypto\": \"legacy\"" ;;
  *) echo "CRYPTO must be noise or legacy" >&2; exit 2 ;;
esac
WORK=$(mktemp -d)
A=pmtpA; B=pmtpB; R=pmtpR

cleanup() {
  for p in "$WORK"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
  ip netns del $R 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $A; ip netns add $B
ip -n $A link set lo up; ip -n $B link set lo up
ip link add pmtpa netns $A type veth peer name pmtpb netns $B
ip -n $A addr add 10.231.0.1/24 dev pmtpa; ip -n $B addr add 10.231.0.2/24 dev pmtpb
ip -n $A link set pmtpa up; ip -n $B link set pmtpb up
RS_A=""; RS_B=""
if [ "$LEASES" != 0 ]; then
  # The route server's namespace: one veth to each node, no forwarding between them.
  ip netns add $R; ip -n $R link set lo up
  ip link add pmtpra netns $A type veth peer name pmtpar netns $R
  ip link add pmtprb netns $B type veth peer name pmtpbr netns $R
  ip -n $A addr add 10.231.1.1/24 dev pmtpra; ip -n $R addr add 10.231.1.2/24 dev pmtpar
  ip -n $B addr add 10.231.2.1/24 dev pmtprb; ip -n $R addr add 10.231.2.2/24 dev pmtpbr
  ip -n $A link set pmtpra up; ip -n $R link set pmtpar up
  ip -n $B link set pmtprb up; ip -n $R link set pmtpbr up
  ip netns exec $R "$ROUTE_SERVER" --listen 0.0.0.0:8470 --db "$WORK/rs.redb" > "$WORK/rs.log" 2>&1 &
  echo $! > "$WORK/rs.pid"
  RS_A=http://10.231.1.2:8470; RS_B=http://10.231.2.2:8470
fi

ident() { "$PKTCTL" key gen; }
IA=$(ident); IB=$(ident)
field() { echo "$1" | sed -E "s/.*\"$2\":\"([^\"]*)\".*/\1/"; }
conf() { # private bind connect-json [ETHInterface-json] [route-server-url]
  local rs=""
  if [ -n "${5:-}" ]; then
    rs=", \"linkCapacityKbps\": $CAPACITY_KBPS, \"routeServer\": { \"url\": \"$5\", \"intervalSeconds\": 1,
      \"leaseOffer\": { \"maxKbps\": $LEASE_KBPS, \"maxSeconds\": 3600, \"priceMsat\": 1000 } }"
  fi
  cat <<EOF
{ "privateKey": "$1",
  "authorizedPasswords": [ { "password": "bench", "user": "bench" } ],
  "admin": { "bind": "127.0.0.1:11234", "password": "NONE" },
  "interfaces": { "UDPInterface": [ { "bind": "$2", "connectTo": { $3 } } ], "ETHInterface": [ $4 ] },
  "router": { "interface": { "type": "TUNInterface" } },
  "pktmesh": { "tunOffload": ${TUN_OFFLOAD:-1}$EXTRA_KEYS$rs },
  "noBackground": 1, "version": 2 }
EOF
}
PEER="\"password\": \"bench\", \"login\": \"bench\", \"publicKey\": \"$(field "$IB" public_key)\""
if [ "${LINK:-udp}" = eth ]; then
  # The nodes peer over raw Ethernet (ETHInterface, connectTo by MAC); UDP stays on loopback.
  MAC_B=$(ip netns exec $B cat /sys/class/net/pmtpb/address)
  conf "$(field "$IB" private_key)" 127.0.0.1:12345 "" '{ "bind": "pmtpb", "beacon": 0 }' "$RS_B" > "$WORK/b.conf"
  conf "$(field "$IA" private_key)" 127.0.0.1:12345 "" \
    "{ \"bind\": \"pmtpa\", \"beacon\": 0, \"connectTo\": { \"$MAC_B\": { $PEER } } }" "$RS_A" > "$WORK/a.conf"
else
  conf "$(field "$IB" private_key)" 10.231.0.2:12345 "" "" "$RS_B" > "$WORK/b.conf"
  conf "$(field "$IA" private_key)" 10.231.0.1:12345 "\"10.231.0.2:12345\": { $PEER }" "" "$RS_A" > "$WORK/a.conf"
fi
AIP=$(field "$IA" ipv6); BIP=$(field "$IB" ipv6)

# With leases the nodes also log the lease messages they apply (info), nothing else.
LOG=warn
if [ "$LEASES" != 0 ]; then LOG=warn,pktmesh_tools::daemon::lease_frames=info; fi
RUST_LOG=$LOG ip netns exec $B $NODE_B "$CJDROUTE" --config "$WORK/b.conf" > "$WORK/b.log" 2>&1 & echo $! > "$WORK/b.pid"
RUST_LOG=$LOG ip netns exec $A $NODE_A "$CJDROUTE" --config "$WORK/a.conf" > "$WORK/a.log" 2>&1 & echo $! > "$WORK/a.pid"
for i in $(seq 1 100); do
  ip netns exec $A ping -6 -c1 -W1 "$BIP" >/dev/null 2>&1 && break
  sleep 0.2
done

# What the link and A's end-to-end sessions run (noiseProto 1: Noise), once the session upgrade
# had time to happen.
noise_protos() { # pktctl-command list-key
  ip netns exec $A "$PKTCTL" --json "$1" | python3 -c '
import json,sys
print(",".join(str(x["noiseProto"]) for x in json.load(sys.stdin)[sys.argv[1]]))' "$1"
}
sleep 1
echo "crypto ${CRYPTO:-noise}: link noiseProto $(noise_protos peers), sessions noiseProto $(noise_protos sessions)"

wait_for() { # what seconds command...: runs command every 0.5 s until it succeeds
  local what=$1 n=$(($2 * 2)); shift 2
  for i in $(seq 1 $n); do "$@" && return 0; sleep 0.5; done
  echo "timed out waiting for $what" >&2
  tail -n 5 "$WORK"/*.log >&2; exit 1
}
lease() { # pktctl lease … in the route server's namespace, as the virtual ISP
  ip netns exec $R "$PKTCTL" lease --server http://127.0.0.1:8470 --key-file "$WORK/isp.key" "$@"
}
offered() { # both links offered
  lease offers --json | python3 -c '
import json,sys
have={(o["node"],o["peer"]) for o in json.load(sys.stdin)["offers"]}
sys.exit(0 if {(sys.argv[1],sys.argv[2]),(sys.argv[2],sys.argv[1])} <= have else 1)' "$AIP" "$BIP"
}
issued() { # order ids...: both leases issued; their ids into $WORK/lease-ids
  lease leases --json | python3 -c '
import json,sys
ls=json.load(sys.stdin)["leases"]
ids=[next((l["id"] for l in ls if l.get("order")==o),None) for o in sys.argv[1:]]
sys.exit(1) if None in ids else print(" ".join(ids))' "$@" > "$WORK/lease-ids"
}
attached() { # log: the node applied both attachments
  [ "$(grep -c Attached "$1" || true)" -ge 2 ]
}
if [ "$LEASES" != 0 ]; then
  wait_for "offers on A→B and B→A" 30 offered
fi
if [ "$LEASES" = 1 ]; then
  # A virtual ISP buys a lease on each direction of the link and puts both into network 77.
  field "$(ident)" private_key > "$WORK/isp.key"
  echo "virtual ISP (signing key, public key, ipv6): $(lease whoami)"
  ORDER_AB=$(lease buy --node "$AIP" --peer "$BIP" --kbps "$LEASE_KBPS" --seconds 3600)
  ORDER_BA=$(lease buy --node "$BIP" --peer "$AIP" --kbps "$LEASE_KBPS" --seconds 3600)
  wait_for "the nodes to issue both leases" 30 issued "$ORDER_AB" "$ORDER_BA"
  for id in $(cat "$WORK/lease-ids"); do lease attach --lease "$id" --network 77 >/dev/null; done
  wait_for "node A to apply both attachments" 30 attached "$WORK/a.log"
  wait_for "node B to apply both attachments" 30 attached "$WORK/b.log"
  echo "leases A→B and B→A ($(cat "$WORK/lease-ids")) of $LEASE_KBPS kbit/s attached to network 77; links paced at $CAPACITY_KBPS kbit/s"
elif [ "$LEASES" = pace ]; then
  echo "no lease; links paced at $CAPACITY_KBPS kbit/s, route server and offers as with LEASES=1"
fi

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Bytes node B has written into its TUN device (the device's receive side): what pktmesh
# delivered, before the receiving application's socket takes it or drops it.
tun_b_bytes() { ip -n $B -s -j link show tun0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }
measure() { # label iperf-args...
  local label=$1; shift
  ip netns exec $B $PIN_B iperf3 -s -1 -B "$BIP" >/dev/null 2>&1 & local srv=$!
  sleep 0.5
  local a0 b0 t0; a0=$(cpu_ticks "$(cat "$WORK/a.pid")"); b0=$(cpu_ticks "$(cat "$WORK/b.pid")")
  t0=$(tun_b_bytes)
  local out; out=$(ip netns exec $A $PIN_A iperf3 -c "$BIP" -t "$DUR" -J "$@" 2>&1 || true)
  local a1 b1 t1; a1=$(cpu_ticks "$(cat "$WORK/a.pid")"); b1=$(cpu_ticks "$(cat "$WORK/b.pid")")
  t1=$(tun_b_bytes)
  wait $srv 2>/dev/null || true
  local hz; hz=$(getconf CLK_TCK)
  local mbps; mbps=$(echo "$out" | python3 -c '
import json,sys
d=json.load(sys.stdin); e=d["end"]
s=e.get("sum_received") or e.get("sum")
print("%.0f" % (s["bits_per_second"]/1e6))' 2>/dev/null || echo "?")
  echo "$label: ${mbps} Mbit/s received; CPU node A $(( (a1-a0)*100/hz/DUR ))%, node B $(( (b1-b0)*100/hz/DUR ))% of a core; B wrote $(( (t1-t0)*8/DUR/1000000 )) Mbit/s into its TUN (IPv6 packets with headers)"
}
measure "TCP, $DUR s, ${FLOWS:-1} stream(s)" -P "${FLOWS:-1}"
for rate in ${RATES:-100M 200M 400M 800M 1200M}; do
  measure "UDP at $rate, $DUR s" -u -b $rate -l 1200
done
measure "UDP flood -b 0, $DUR s" -u -b 0 -l 1200
