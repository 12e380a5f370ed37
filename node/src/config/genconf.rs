//! `cjdroute --genconf`: a fresh config in cjdns' layout.
//!
//! The output has the same keys, values and order as cjdns 22.3's generator (§10.3 of the
//! protocol digest): a new key pair, four random passwords (one active for `default-login`,
//! three commented out), one random port above 1024 for both `0.0.0.0:port` and `[::]:port`,
//! beaconing on the IPv4 interface (mode 2, port 64512, devices `["all"]`), an Ethernet
//! interface that is disabled unless asked for, TUN, admin on `127.0.0.1:11234`, the usual
//! security steps, `noBackground` 0, `pipe` and `"version": 2`. Comments explain each block in
//! the same places cjdns puts them, and commented-out examples show optional settings. The
//! result parses strictly, with our parser and with stock cjdns.
//!
//! One value differs on purpose: the admin password. cjdns writes `NONE`, which lets every
//! local user (every process of the host) call every admin function of a node that usually
//! runs as root: add peering passwords, connect to peers, read its state. Ours is random, like
//! the peering passwords; tools read it from `~/.cjdnsadmin` (docs/node.md).

use core::fmt::Write as _;

use pktmesh_crypto_auth::keys::base32_encode;
use pktmesh_crypto_auth::PrivateKey;
use rand_core::{CryptoRng, RngCore};

/// Options of `--genconf`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GenconfOptions {
    /// `--eth`: enable the Ethernet interface (otherwise it is written as
    /// `_disabled_ETHInterface`).
    pub eth: bool,
}

impl GenconfOptions {
    /// Options with `--eth` set as given.
    pub fn with_eth(eth: bool) -> Self {
        Self { eth }
    }
}

/// Length of generated passwords (cjdns: `Random_base32` into 32 bytes, NUL-terminated).
const PASSWORD_LEN: usize = 31;

/// A random password of 31 cjdns-base32 characters.
fn password<R: RngCore + CryptoRng>(rng: &mut R) -> String {
    let mut raw = [0u8; 20];
    rng.fill_bytes(&mut raw);
    let mut text = [0u8; 32];
    base32_encode(&raw, &mut text);
    text[..PASSWORD_LEN]
        .iter()
        .map(|&c| char::from(c))
        .collect()
}

/// A random UDP port above 1024 (cjdns draws 16-bit values until one is > 1024).
fn port<R: RngCore>(rng: &mut R) -> u16 {
    loop {
        let candidate = (rng.next_u32() & 0xffff) as u16;
        if candidate > 1024 {
            return candidate;
        }
    }
}

/// `cjdroute --genconf`.
pub fn genconf<R: RngCore + CryptoRng>(rng: &mut R) -> String {
    genconf_with(rng, GenconfOptions::default())
}

/// `cjdroute --genconf [--eth]`.
pub fn genconf_with<R: RngCore + CryptoRng>(rng: &mut R, options: GenconfOptions) -> String {
    let passwords = [password(rng), password(rng), password(rng), password(rng)];
    let admin_password = password(rng);
    let port = port(rng);
    let (private, public, address) = PrivateKey::generate(rng);
    let private = private.to_hex();
    let eth_prefix = if options.eth { "" } else { "_disabled_" };
    let [pw, pw2, pw3, pw4] = &passwords;

    let mut s = String::with_capacity(16 * 1024);
    // `write!` into a String cannot fail.
    let _ = write!(
        s,
        r#"{{
    // The private key is this node's identity: everything else about it (public key,
    // IPv6 address) is derived from it. Anyone who has it can impersonate the node.
    "privateKey": "{private}",

    // Derived from the private key, for reference only:
    "publicKey": "{public}",
    "ipv6": "{address}",

    // Passwords which peers may present when they connect to this node.
    //
    // NOTE: a "login" travels in the clear, and without one the password's hash acts
    //       as the login, so either can be observed by someone on the path.
    //
    "authorizedPasswords": [
        // "password" is shared by you and the peer; "user" is an optional login name,
        // also used as the peer's display name.
        {{ "password": "{pw}", "user": "default-login" }}

        // Further passwords look like this:
        // {{ "password": "{pw2}", "user": "my-second-peer" }},
        // {{ "password": "{pw3}", "user": "my-third-peer" }},
        // {{ "password": "{pw4}", "user": "my-fourth-peer" }},

        // What to hand to someone who should connect to you with the default password
        // above ("login" is the name you have for them, "peerName" how they will see you).
        // One password per peer lets you revoke a single peer later.
        /*
         "your.external.ip.goes.here:{port}": {{
             "login": "default-login",
             "password": "{pw}",
             "publicKey": "{public}",
             "peerName": "your-name-goes-here"
         }},
         */
    ],

    // The admin API: bencoded RPC over UDP, used by cjdnstool and pktctl.
    "admin": {{
        // Address and port to listen on.
        "bind": "127.0.0.1:11234",

        // Password for the admin API, random: anyone who has it controls this node.
        // Tools (pktctl, cjdnstool) read it from ~/.cjdnsadmin, which you create:
        //   {{ "addr": "127.0.0.1", "port": 11234, "password": "<this password>" }}
        // "NONE" turns authentication off: then every local user has that control.
        "password": "{admin_password}"
    }},

    // Interfaces which carry traffic to and from peers.
    "interfaces": {{
        // Peering over UDP/IP.
        "UDPInterface": [
            {{
                // Address to bind.
                "bind": "0.0.0.0:{port}",
                // DSCP value for outgoing packets (default 0).
                // "dscp": 46,

                // LAN auto-peering: a second socket sends and receives beacons which
                // advertise the data port above.
                //   0 -> no beacons
                //   1 -> accept beacons from other nodes only
                //   2 -> send and accept beacons
                // beaconDevices names devices (eth0), broadcast addresses
                // (192.168.101.255) or "all". All nodes must use the same beaconPort.
                "beacon": 2,
                "beaconDevices": [ "all" ],
                "beaconPort": 64512,

                // IPv4 peers to connect to.
                "connectTo": {{
                    // Ask someone who is already on the network for credentials and add
                    // them here, separated by commas:
                    // "ipv4 address:port": {{
                    //     "login": "(optional) the name your peer has for you"
                    //     "password": "password to connect with",
                    //     "publicKey": "remote node key.k",
                    //     "peerName": "(optional) a name for the peer"
                    // }},
                }}
            }},
            {{
                // Address to bind.
                "bind": "[::]:{port}",
                // DSCP value for outgoing packets (default 0).
                // "dscp": 46,

                // IPv6 peers to connect to.
                "connectTo": {{
                    // Ask someone who is already on the network for credentials.
                }}
            }}
        ],

        // Peering with raw Ethernet frames.
        "{eth_prefix}ETHInterface": [
            {{
                // Device to bind, or "all" for every device.
                "bind": "all",

                // Auto-peering on the local segment:
                //
                // 0 -- off.
                //
                // 1 -- accept beacons and connect to their senders.
                //
                // 2 -- also broadcast beacons carrying a per-session password, so
                //      nodes set to 1 or 2 connect to this one.
                //
                "beacon": 2,

                // Peers to connect to by MAC address (not with "all"):
                "connectTo": {{
                    // "01:02:03:04:05:06":{{"password":"a","publicKey":"b"}}
                }}
            }}
        ]

    }},

    // Routing.
    "router": {{
        // DNS seeds supply peers automatically; the first one is trusted to name the
        // supernode.
        "dnsSeeds": [
            "seed.pns.cjdns.fr"
        ],

        // With an "id", this node posts its public peering credentials to its
        // supernode under that id ("PUB_..." ids are shared publicly, others are only
        // tested). Without one, your credentials stay private.
        //
        "publicPeer": {{
            // "id": "PUB_XXX",

            // Public IPv4 address if it cannot be detected: "x.x.x.x" fixes the address,
            // "0.0.0.0:port" the port, "x.x.x.x:port" both.
            //
            // "ipv4": "1.2.3.4:56789",

            // Public IPv6 address, same rules: "xxxx::" / "[::]:port" / "[xxxx::]:port".
            //
            // "ipv6": "[1234:5678::]:9012",
        }},

        // Supernodes; if none are given they are learned from peers.
        "supernodes": [
            //"6743gf5tw80ExampleExampleExampleExamplevlyb23zfnuzv0.k",
        ],

        // The interface between the network and this host's applications.
        "interface": {{
            // TUNInterface (or SocketInterface, see below).
            "type": "TUNInterface"

            // Use an existing persistent TUN device (only needed when starting
            // without the rights to create one):
            //"tunDevice": "tun0"
        }},

        // Instead of a TUN device, packets can be exchanged over a UNIX socket. To use
        // it, rename "interface" above to "_disabled_interface" and this one to
        // "interface".
        "_disabled_interface": {{
            "type": "SocketInterface",

            // Path of the socket.
            "socketFullPath": "/var/run/cjdns.sock"
        }},

        // Tunnelling IPv4 and non-cjdns IPv6 over cjdns (a VPN over the switch layer).
        "ipTunnel": {{
            // Nodes allowed to connect to us, and the addresses they are given.
            // ip4Prefix/ip6Prefix: routable prefix behind the tunnel (default 32/128,
            // i.e. no route); ip4Alloc/ip6Alloc: size of the block handed out.
            "allowedConnections": [
                // {{
                //     "publicKey": "f64hfl7c4uxt6krmhPutTheRealAddressOfANodeHere7kfm5m0.k",
                //     "ip4Address": "192.168.1.24",
                //     "ip4Prefix": 0,
                //     "ip4Alloc": 32,
                //     "ip6Address": "2001:123:ab::10",
                //     "ip6Prefix": 0
                //     "ip6Alloc": 64,
                // }},

                // One address alone is fine; prefix and alloc are optional.
                // {{
                //     "publicKey": "ydq8csdk8p8ThisIsJustAnExampleAddresstxuyqdf27hvn2z0.k",
                //     "ip4Address": "192.168.1.25",
                //     "ip4Prefix": 0,
                // }}
            ],

            "outgoingConnections": [
                // Nodes to ask for addresses:
                // "6743gf5tw80ExampleExampleExampleExamplevlyb23zfnuzv0.k",
                // "pw9tfmr8pcrExampleExampleExampleExample8rhg1pgwpwf80.k",
                // "g91lxyxhq0kExampleExampleExampleExample6t0mknuhw75l0.k"
            ]
        }}
    }},

    // Dropping privileges, applied in order. They limit what an attacker who
    // compromises the process can do to the rest of the system; they work best when
    // the node is started as root.
    "security": [
        // Switch to this user after start-up; keepNetAdmin keeps the right to configure
        // interfaces (needed by IpTunnel and ETHInterface hot-plug).
        // {{ "setuser": 0 }} disables.
        {{ "setuser": "nobody", "keepNetAdmin": 1 }},

        // Change the root directory (fails quietly without the right to do so).
        // {{ "chroot": 0 }} disables.
        {{ "chroot": "/var/run/" }},

        // Forbid opening files (deprecated; prevents setting IP addresses).
        {{ "nofiles": 0 }},

        // Forbid creating processes.
        {{ "noforks": 1 }},

        // Marks the end of set-up; without it a stock cjdns core exits.
        {{ "setupComplete": 1 }}
    ],

    // Logging.
    "logging": {{
        // Uncomment to log to stdout instead of through the admin API.
        // "logTo": "stdout"
    }},

    // Non-zero: stay in the foreground (pairs well with "logTo": "stdout").
    "noBackground": 0,

    // Name of the control socket between cjdroute's processes (a bare name goes in
    // the default directory).
    "pipe": "cjdroute.sock",

    // Version 2 files are parsed strictly, so tools can edit them safely.
    "version": 2
}}
"#
    );
    s
}
