#!/usr/bin/env python3
"""Builds a seed corpus for each fuzz target from the reference vectors.

    fuzz/corpus.py VECTORS OUT

VECTORS is ../shared/vectors (seen from the checkout); OUT receives one folder per target.
What each target gets, in the framing its input uses (see the target's module docs):

- link packets (UDP payloads of the cjdns captures): ca_handshake, ca_data, ca_noise (after a
  selector byte 0), node_shards (as records from the established peer and from a stranger);
- the decrypted switch packets: switch_forward (selector byte 0), control_parse (the control
  frame after the switch header and handle);
- CJDHT messages (bencode after the inner data header): dht_message, bencode_value;
- admin API datagrams (loopback captures): admin_request, bencode_value;
- Ethernet beacons: lan_frames (the frame payload), node_beacon (as Ethernet and as UDP beacon
  records);
- whole capture files: capture_decode; cjdroute.conf files: config_text; keys and addresses
  of the scenarios: label_key_scheme;
- PacketCrypt announcements: ann_parse (after a mode byte); PcP proofs, transactions and
  tree proofs: pcp_parse.

Only the standard library is used. Seeds are named by the SHA-1 of their bytes, as libFuzzer
names corpus files.
"""

import hashlib
import json
import struct
import sys
from pathlib import Path

# Ethernet ethertypes of the captures.
ETH_IPV4, ETH_IPV6, ETH_CJDNS = 0x0800, 0x86DD, 0xFC00
# A node_shards record carries at most this many bytes.
RECORD_MAX = 255


def pcap_frames(path):
    """The frames of a classic pcap file (either byte order)."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return
    at = 24
    while at + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[at + 8 : at + 12])[0]
        yield data[at + 16 : at + 16 + incl]
        at += 16 + incl


def split_ethernet(frame):
    """(kind, payload): kind is 'udp' (the UDP payload), 'cjdns' (the frame payload of an
    ETHInterface frame) or None."""
    if len(frame) < 14:
        return None, b""
    ethertype = struct.unpack(">H", frame[12:14])[0]
    body = frame[14:]
    if ethertype == ETH_CJDNS:
        return "cjdns", body
    if ethertype == ETH_IPV4 and len(body) >= 20 and body[9] == 17:
        ihl = (body[0] & 0x0F) * 4
        return "udp", body[ihl + 8 :]
    if ethertype == ETH_IPV6 and len(body) >= 48 and body[6] == 17:
        return "udp", body[48:]
    return None, b""


class Corpus:
    def __init__(self, out):
        self.out = Path(out)
        self.count = {}

    def add(self, target, data):
        if not data:
            return
        folder = self.out / target
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        path = folder / name
        if not path.exists():
            path.write_bytes(data)
            self.count[target] = self.count.get(target, 0) + 1


def captures(vectors, corpus):
    root = vectors / "cjdns-captures"
    for pcap in sorted(root.glob("*/*.pcap")):
        corpus.add("capture_decode", pcap.read_bytes())
        admin = pcap.parent.name == "admin-api"
        link_records = b""
        for frame in pcap_frames(pcap):
            kind, payload = split_ethernet(frame)
            if kind == "udp" and admin:
                corpus.add("admin_request", payload)
                corpus.add("bencode_value", payload)
            elif kind == "udp":
                corpus.add("ca_handshake", b"\x00" + payload)
                corpus.add("ca_data", b"\x00" + payload)
                corpus.add("ca_noise", payload)
                part = payload[:RECORD_MAX]
                record = bytes([0, 0, len(part)]) + part
                corpus.add("node_shards", record)
                corpus.add("node_shards", bytes([1, 7, len(part)]) + part)
                if len(link_records) < 2048:
                    link_records += record + bytes([5, 0, 110])
            elif kind == "cjdns":
                corpus.add("lan_frames", payload)
                body = payload[6:62]
                if len(body) == 56 and frame[:6] == b"\xff" * 6:
                    mac = frame[6:12]
                    corpus.add("node_beacon", bytes([1, mac[4], mac[5]]) + body)
                    udp = b"\xff\xff\xff\xfc\x00\x00" + struct.pack(">H", 11000 + mac[5])
                    corpus.add("node_beacon", bytes([0, mac[4], mac[5]]) + udp + body)
        corpus.add("node_shards", link_records)
    for decoded in sorted(root.glob("*/decoded-*.json")):
        for frame in json.loads(decoded.read_text()):
            decoded_frame(frame, corpus)
    for conf in sorted(root.glob("*/*.cjdroute.conf")):
        corpus.add("config_text", conf.read_bytes())
    for scenario in sorted(root.glob("*/scenario.json")):
        text = scenario.read_text()
        for word in set(
            w.strip('",')
            for w in text.split()
            if w.strip('",').endswith(".k") or w.strip('",').startswith("fc")
        ):
            corpus.add("label_key_scheme", word.encode())


def decoded_frame(frame, corpus):
    switch = frame.get("switch")
    outer = frame.get("outer") or {}
    plain = bytes.fromhex(outer.get("plaintext_hex", ""))
    if plain:
        corpus.add("switch_forward", b"\x00" + plain)
        if switch and "control" in switch:
            corpus.add("control_parse", plain[16:])
    inner = (switch or {}).get("inner") or {}
    payload = inner.get("payload") or {}
    header = payload.get("dataheader")
    if "dht" in payload and header:
        text = bytes.fromhex(inner.get("plaintext_hex", ""))
        at = text.find(bytes.fromhex(header))
        if at >= 0:
            message = text[at + 4 :]
            corpus.add("dht_message", message)
            corpus.add("bencode_value", message)


def packetcrypt(vectors, corpus):
    root = vectors / "packetcrypt"
    real = json.loads((root / "real_ann_v1_mainnet.json").read_text())
    ann = bytes.fromhex(real["ann_hex"])
    corpus.add("ann_parse", b"\x00" + ann)
    corpus.add("ann_parse", b"\x04" + ann)
    block = json.loads((root / "synthetic_block_pcp_v2.json").read_text())
    anns = block.get("all_anns_sorted_by_hash_prefix", [])
    if isinstance(anns, str):
        anns = json.loads(anns.replace("'", '"'))
    for a in anns[:8]:
        corpus.add("ann_parse", b"\x02" + bytes.fromhex(a))
    for field in ("pcp_wire_hex", "coinbase_tx_hex", "proof_tree_hex"):
        if field in block:
            corpus.add("pcp_parse", bytes.fromhex(block[field]))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    vectors, out = Path(sys.argv[1]), sys.argv[2]
    if not (vectors / "cjdns-captures").is_dir() or not (vectors / "packetcrypt").is_dir():
        sys.exit(f"{vectors}: not the reference vectors (cjdns-captures/, packetcrypt/)")
    corpus = Corpus(out)
    captures(vectors, corpus)
    packetcrypt(vectors, corpus)
    for target, n in sorted(corpus.count.items()):
        print(f"{target}: {n} seeds from the vectors")


if __name__ == "__main__":
    main()
