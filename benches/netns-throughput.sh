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
# streams (iperf3 -P n).
# Needs iproute2 and iperf3. Creates namespaces pmtpA/pmtpB and removes them on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CJDROUTE=${1:-}
if [ -z "$CJDROUTE" ]; then
  # For this machine: native CPU features (AVX2) speed up the ciphers.
  RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}" CARGO_TARGET_DIR=target/native \
    cargo build --release -p pktmesh-tools --bin cjdroute --bin pktctl >&2
  CJDROUTE=target/native/release/cjdroute
fi
PKTCTL=$(dirname "$CJDROUTE")/pktctl
DUR=${DUR:-10}
# APP_PIN=1 also pins each iperf3 to its node's core (client with A, server with B), as if each
# side were a one-core host; by default the two iperf3 processes float over both cores.
PIN_A=""; PIN_B=""
if [ "${APP_PIN:-0}" = 1 ]; then PIN_A="taskset -c 0"; PIN_B="taskset -c 1"; fi
NODE_A="taskset -c 0"; NODE_B="taskset -c 1"
if [ "${NODE_PIN:-1}" = 0 ]; then NODE_A=""; NODE_B=""; fi
WORKERS_KEY=""
if [ -n "${WORKERS:-}" ]; then WORKERS_KEY=", \"workers\": $WORKERS"; fi
WORK=$(mktemp -d)
A=pmtpA; B=pmtpB

cleanup() {
  for p in "$WORK"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $A; ip netns add $B
ip -n $A link set lo up; ip -n $B link set lo up
ip link add pmtpa netns $A type veth peer name pmtpb netns $B
ip -n $A addr add 10.231.0.1/24 dev pmtpa; ip -n $B addr add 10.231.0.2/24 dev pmtpb
ip -n $A link set pmtpa up; ip -n $B link set pmtpb up

ident() { "$PKTCTL" key gen; }
IA=$(ident); IB=$(ident)
field() { echo "$1" | sed -E "s/.*\"$2\":\"([^\"]*)\".*/\1/"; }
conf() { # private bind connect-json [ETHInterface-json]
  cat <<EOF
{ "privateKey": "$1",
  "authorizedPasswords": [ { "password": "bench", "user": "bench" } ],
  "admin": { "bind": "127.0.0.1:11234", "password": "NONE" },
  "interfaces": { "UDPInterface": [ { "bind": "$2", "connectTo": { $3 } } ], "ETHInterface": [ $4 ] },
  "router": { "interface": { "type": "TUNInterface" } },
  "pktmesh": { "tunOffload": ${TUN_OFFLOAD:-1}$WORKERS_KEY },
  "noBackground": 1, "version": 2 }
EOF
}
PEER="\"password\": \"bench\", \"login\": \"bench\", \"publicKey\": \"$(field "$IB" public_key)\""
if [ "${LINK:-udp}" = eth ]; then
  # The nodes peer over raw Ethernet (ETHInterface, connectTo by MAC); UDP stays on loopback.
  MAC_B=$(ip netns exec $B cat /sys/class/net/pmtpb/address)
  conf "$(field "$IB" private_key)" 127.0.0.1:12345 "" '{ "bind": "pmtpb", "beacon": 0 }' > "$WORK/b.conf"
  conf "$(field "$IA" private_key)" 127.0.0.1:12345 "" \
    "{ \"bind\": \"pmtpa\", \"beacon\": 0, \"connectTo\": { \"$MAC_B\": { $PEER } } }" > "$WORK/a.conf"
else
  conf "$(field "$IB" private_key)" 10.231.0.2:12345 "" "" > "$WORK/b.conf"
  conf "$(field "$IA" private_key)" 10.231.0.1:12345 "\"10.231.0.2:12345\": { $PEER }" "" > "$WORK/a.conf"
fi
BIP=$(field "$IB" ipv6)

RUST_LOG=warn ip netns exec $B $NODE_B "$CJDROUTE" --config "$WORK/b.conf" > "$WORK/b.log" 2>&1 & echo $! > "$WORK/b.pid"
RUST_LOG=warn ip netns exec $A $NODE_A "$CJDROUTE" --config "$WORK/a.conf" > "$WORK/a.log" 2>&1 & echo $! > "$WORK/a.pid"
for i in $(seq 1 100); do
  ip netns exec $A ping -6 -c1 -W1 "$BIP" >/dev/null 2>&1 && break
  sleep 0.2
done

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
