//! Fixtures for the config tests: real configs written by cjdns 22.3.

/// `nodeA.cjdroute.conf` from `shared/vectors/cjdns-captures/two-node-password`, verbatim.
pub(crate) const NODE_A: &str = r#"{
  "admin": {
    "bind": "127.0.0.1:11234",
    "password": "NONE"
  },
  "authorizedPasswords": [
    {
      "password": "lgyckvlb50cw81ttp5gbhc98h3ugqdb",
      "user": "default-login"
    }
  ],
  "interfaces": {
    "UDPInterface": [
      {
        "beacon": 0,
        "bind": "10.77.0.1:11001",
        "connectTo": {
          "10.77.0.2:11002": {
            "login": "nodeA",
            "password": "ngb3c5rrbb1f9w2m0crx3gfjq4zv6nx",
            "peerName": "nodeB",
            "publicKey": "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k"
          }
        }
      }
    ]
  },
  "ipv6": "fc91:fc76:265b:733a:2473:502e:b7a4:2fc9",
  "logging": {
    "logTo": "stdout"
  },
  "noBackground": 1,
  "pipe": "/run/cjdroute-A.sock",
  "privateKey": "ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa",
  "publicKey": "hdxrv5j8mm504fbwlsh1z14qybr954pu4h8k8llz4x7sbd0wfjh0.k",
  "router": {
    "_disabled_interface": {
      "socketFullPath": "/var/run/cjdns.sock",
      "type": "SocketInterface"
    },
    "dnsSeeds": [],
    "interface": {
      "type": "TUNInterface"
    },
    "ipTunnel": {
      "allowedConnections": [],
      "outgoingConnections": []
    },
    "publicPeer": {},
    "supernodes": []
  },
  "security": [
    {
      "keepNetAdmin": 1,
      "setuser": "nobody"
    },
    {
      "chroot": "/var/run/"
    },
    {
      "nofiles": 0
    },
    {
      "noforks": 1
    },
    {
      "setupComplete": 1
    }
  ],
  "version": 2
}"#;

/// `nodeB.cjdroute.conf` from the same capture, verbatim.
pub(crate) const NODE_B: &str = r#"{
  "admin": {
    "bind": "127.0.0.1:11234",
    "password": "NONE"
  },
  "authorizedPasswords": [
    {
      "password": "ngb3c5rrbb1f9w2m0crx3gfjq4zv6nx",
      "user": "nodeA"
    }
  ],
  "interfaces": {
    "UDPInterface": [
      {
        "beacon": 0,
        "bind": "10.77.0.2:11002",
        "connectTo": {}
      }
    ]
  },
  "ipv6": "fc1c:27de:1c7a:099b:4fa6:0a6e:9dde:70de",
  "logging": {
    "logTo": "stdout"
  },
  "noBackground": 1,
  "pipe": "/run/cjdroute-B.sock",
  "privateKey": "a6e8d265a098da7b8b90fa48012e267388846fd4895b4b9bdc5a67dd0adad0cb",
  "publicKey": "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k",
  "router": {
    "_disabled_interface": {
      "socketFullPath": "/var/run/cjdns.sock",
      "type": "SocketInterface"
    },
    "dnsSeeds": [],
    "interface": {
      "type": "TUNInterface"
    },
    "ipTunnel": {
      "allowedConnections": [],
      "outgoingConnections": []
    },
    "publicPeer": {},
    "supernodes": []
  },
  "security": [
    {
      "keepNetAdmin": 1,
      "setuser": "nobody"
    },
    {
      "chroot": "/var/run/"
    },
    {
      "nofiles": 0
    },
    {
      "noforks": 1
    },
    {
      "setupComplete": 1
    }
  ],
  "version": 2
}"#;

/// What `cjdroute --genconf` of cjdns 22.3 prints on Linux (text layout of
/// `client/cjdroute2.c` with HAS_ETH_INTERFACE, not Android/macOS/Windows), with node A's key
/// pair from the capture, port 41257 and made-up passwords.
pub(crate) const CJDNS_22_3_GENCONF: &str = r#"{
    // Private key:
    // Your confidentiality and data integrity depend on this key, keep it secret!
    "privateKey": "ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa",

    // This key corresponds to the public key and ipv6 address:
    "publicKey": "hdxrv5j8mm504fbwlsh1z14qybr954pu4h8k8llz4x7sbd0wfjh0.k",
    "ipv6": "fc91:fc76:265b:733a:2473:502e:b7a4:2fc9",

    // Anyone connecting and offering these passwords on connection will be allowed.
    //
    // WARNING: If a "login" parameter is passed, someone sniffing on the wire can
    //          sniff the packet and crack to find it. If the "login" is not passed
    //          then the hash of the 'password' is effectively the login, therefore
    //          that can be cracked.
    //
    "authorizedPasswords": [
        // Password is a unique string which is known to the client and server.
        // User is an optional login name and will also be used to display the peer.
        { "password": "w5gfs1y5xyqyv4l1hh2xgrxbnpvnf3k", "user": "default-login" }

        // More passwords should look like this.
        // { "password": "8b2d7n0j4qz6xgw9u0y1vct5nq3rfmk", "user": "my-second-peer" },
        // { "password": "lz0r8sb0n3q1yp7kc5dd6hf9xw2mg4t", "user": "my-third-peer" },
        // { "password": "2cqg9yw7h5vbf0n3kxl8rjz1sq6mtdp", "user": "my-fourth-peer" },

        // Below is an example of your connection credentials
        // that you can give to other people so they can connect
        // to you using your default password (from above).
        // The login field here yourself to your peer and the peerName field
        // is the name the peer which will be displayed in peerStats
        // Adding a unique password for each peer is advisable
        // so that leaks can be isolated.
        /*
         "your.external.ip.goes.here:41257": {
             "login": "default-login",
             "password": "w5gfs1y5xyqyv4l1hh2xgrxbnpvnf3k",
             "publicKey": "hdxrv5j8mm504fbwlsh1z14qybr954pu4h8k8llz4x7sbd0wfjh0.k",
             "peerName": "your-name-goes-here"
         },
         */
    ],

    // Settings for administering and extracting information from your router.
    // This interface provides functions which can be called through a UDP socket.
    // See admin/Readme.md for more information about the API and try:
    // ./tools/cexec
    // For a list of functions which can be called.
    // For example: ./tools/cexec 'memory()'
    // will call a function which gets the core's current memory consumption.
    // ./tools/cjdnslog
    // is a tool which uses this admin interface to get logs from cjdns.
    "admin": {
        // Port to bind the admin RPC server to.
        "bind": "127.0.0.1:11234",

        // Password for admin RPC server.
        // This is a static password by default, so that tools like
        // ./tools/cexec can use the API without you creating a
        // config file at ~/.cjdnsadmin first. If you decide to
        // expose the admin API to the network, change the password!
        "password": "NONE"
    },

    // Interfaces to connect to the switch core.
    "interfaces": {
        // The interface which connects over UDP/IP based VPN tunnel.
        "UDPInterface": [
            {
                // Bind to this port.
                "bind": "0.0.0.0:41257",
                // Set the DSCP value for Qos. Default is 0.
                // "dscp": 46,

                // Automatically connect to other nodes on the same LAN
                // This works by binding a second port and sending beacons
                // containing the main data port.
                // beacon is a number between 0 and 2:
                //   0 -> do not beacon nor connect to other nodes who beacon
                //   1 -> quiet mode, accept beacons from other nodes only
                //   2 -> send and accept beacons
                // beaconDevices is a list which can contain names of devices such
                // as eth0, as well as broadcast addresses to send to, such as
                // 192.168.101.255, or the pseudo-name "all".
                // in order to auto-peer, all cjdns nodes must use the same
                // beaconPort.
                "beacon": 2,
                "beaconDevices": [ "all" ],
                "beaconPort": 64512,

                // Nodes to connect to (IPv4 only).
                "connectTo": {
                    // Add connection credentials here to join the network
                    // If you have several, don't forget the separating commas
                    // They should look like:
                    // "ipv4 address:port": {
                    //     "login": "(optional) name your peer has for you"
                    //     "password": "password to connect with",
                    //     "publicKey": "remote node key.k",
                    //     "peerName": "(optional) human-readable name for peer"
                    // },
                    // Ask somebody who is already connected.
                }
            },
            {
                // Bind to this port.
                "bind": "[::]:41257",
                // Set the DSCP value for Qos. Default is 0.
                // "dscp": 46,

                // Nodes to connect to (IPv6 only).
                "connectTo": {
                    // Add connection credentials here to join the network
                    // Ask somebody who is already connected.
                }
            }
        ],

        // The interface which allows peering using layer-2 ethernet frames
        "_disabled_ETHInterface": [
            // Alternatively bind to just one device and either beacon and/or
            // connect to a specified MAC address
            {
                // Bind to this device (interface name, not MAC)
                // "all" is a pseudo-name which will try to connect to all devices.
                "bind": "all",

                // Auto-connect to other cjdns nodes on the same network.
                // Options:
                //
                // 0 -- Disabled.
                //
                // 1 -- Accept beacons, this will cause cjdns to accept incoming
                //      beacon messages and try connecting to the sender.
                //
                // 2 -- Accept and send beacons, this will cause cjdns to broadcast
                //      messages on the local network which contain a randomly
                //      generated per-session password, other nodes which have this
                //      set to 1 or 2 will hear the beacon messages and connect
                //      automatically.
                //
                "beacon": 2,

                // Node(s) to connect to manually
                // Note: does not work with "all" pseudo-device-name
                "connectTo": {
                    // Credentials for connecting look similar to UDP credentials
                    // except they begin with the mac address, for example:
                    // "01:02:03:04:05:06":{"password":"a","publicKey":"b"}
                }
            }
        ]

    },

    // Configuration for the router.
    "router": {
        // DNS Seeds, these will be used to add peers automatically.
        // The first seed in the list is trusted to provide the snode.
        "dnsSeeds": [
            "seed.pns.cjdns.fr"
        ],

        // When publicPeer id is set, this node will post its public peering credentials
        // to its supernode. The specified peerID will be used to identify itself.
        // For PKT yielding this must be set to the registered peerID, otherwise
        // you can set it to anything. By *convention*, peerIDs that begin with "PUB_"
        // are shared publicly and those which do not are tested by the snode but not
        // shared, allowing you to use the snode's peer tester on an otherwise private
        // node. If you leave "id" commented, your peering credentials will remain
        // entirely private.
        //
        "publicPeer": {
            // "id": "PUB_XXX",

            // If you set the public peer, you may also hardcode the IPv4 address.
            // By default, cjdns will request its public IP address from its peers, but
            // in cases with non-standard routing, you may have a different IP address
            // for traffic initiated from outside. In this case, you must manually enter
            // the IP address. If the address is entered in the form of "x.x.x.x", then
            // the IP address will be used, but the port will be detected. If it is entered
            // as "0.0.0.0:xxx" then the port will be used, but the address will be detected
            // finally, if it is in the form of "x.x.x.x:xxx" then the address AND port will
            // be used.
            //
            // "ipv4": "1.2.3.4:56789",

            // If you have a public IPv6 address which cannot be detected, you may hard-code
            // it here. The same rules apply as IPv4 addresses: "xxxx:xxxx::" means use ip
            // but detect port. "[::]:xxx" means use port but detect ip, and
            // "[xxxx:xxxx::]:xxx" means use ip and port from configuration.
            //
            // "ipv6": "[1234:5678::]:9012",
        },

        // supernodes, if none are specified they'll be taken from your peers
        "supernodes": [
            //"6743gf5tw80ExampleExampleExampleExamplevlyb23zfnuzv0.k",
        ],

        // The interface which is used for connecting to the cjdns network.
        "interface": {
            // The type of interface (only TUNInterface is supported for now)
            "type": "TUNInterface"

            // The name of a persistent TUN device to use.
            // This for starting cjdroute as its own user.
            // *MOST USERS DON'T NEED THIS*
            //"tunDevice": "tun0"
        },

        // As an alternative to the TUN interface, you can create a socket interface
        // which will create a UNIX socket which emits packets that would otherwise
        // be sent through the TUN device.
        // To enable this interface, change the name of the above TUN interface to
        // "_disabled_interface" and change the name of this interface to
        // simply "interface"
        "_disabled_interface": {
            "type": "SocketInterface",

            // The filesystem path to the socket to create or connect to.
            "socketFullPath": "/var/run/cjdns.sock"
        },

        // System for tunneling IPv4 and ICANN IPv6 through cjdns.
        // This is using the cjdns switch layer as a VPN carrier.
        "ipTunnel": {
            // Nodes allowed to connect to us.
            // When a node with the given public key connects, give them the
            // ip4 and/or ip6 addresses listed.
            "allowedConnections": [
                // Give the client an address on 192.168.1.0/24, and an address
                // it thinks has all of IPv6 behind it.
                // ip4Prefix is the set of addresses which are routable from the tun
                // for example, if you're advertizing a VPN into a company network
                // which exists in 10.123.45.0/24 space, ip4Prefix should be 24
                // default is 32 for ipv4 and 128 for ipv6
                // so by default it will not install a route
                // ip4Alloc is the block of addresses which are allocated to the
                // for example if you want to issue 4 addresses to the client, those
                // being 192.168.123.0 to 192.168.123.3, you would set this to 30
                // default is 32 for ipv4 and 128 for ipv6 (1 address)
                // {
                //     "publicKey": "f64hfl7c4uxt6krmhPutTheRealAddressOfANodeHere7kfm5m0.k",
                //     "ip4Address": "192.168.1.24",
                //     "ip4Prefix": 0,
                //     "ip4Alloc": 32,
                //     "ip6Address": "2001:123:ab::10",
                //     "ip6Prefix": 0
                //     "ip6Alloc": 64,
                // },

                // It's ok to only specify one address and prefix/alloc are optional.
                // {
                //     "publicKey": "ydq8csdk8p8ThisIsJustAnExampleAddresstxuyqdf27hvn2z0.k",
                //     "ip4Address": "192.168.1.25",
                //     "ip4Prefix": 0,
                // }
            ],

            "outgoingConnections": [
                // Connect to one or more machines and ask them for IP addresses.
                // "6743gf5tw80ExampleExampleExampleExamplevlyb23zfnuzv0.k",
                // "pw9tfmr8pcrExampleExampleExampleExample8rhg1pgwpwf80.k",
                // "g91lxyxhq0kExampleExampleExampleExample6t0mknuhw75l0.k"
            ]
        }
    },

    // Dropping permissions.
    // In the event of a serious security exploit in cjdns, leak of confidential
    // network traffic and/or keys is highly likely but the following rules are
    // designed to prevent the attack from spreading to the system on which cjdns
    // is running.
    // Counter-intuitively, cjdns is *more* secure if it is started as root because
    // non-root users do not have permission to use chroot or change usernames,
    // limiting the effectiveness of the mitigations herein.
    "security": [
        // Change the user id to sandbox the cjdns process after it starts.
        // If keepNetAdmin is set to 0, IPTunnel will be unable to set IP addresses
        // and ETHInterface will be unable to hot-add new interfaces
        // Use { "setuser": 0 } to disable.
        // Default: enabled with keepNetAdmin
        { "setuser": "nobody", "keepNetAdmin": 1 },

        // Chroot changes the filesystem root directory which cjdns sees, blocking it
        // from accessing files outside of the chroot sandbox, if the user does not
        // have permission to use chroot(), this will fail quietly.
        // Use { "chroot": 0 } to disable.
        // Default: enabled (using "/var/run")
        { "chroot": "/var/run/" },

        // Nofiles is a deprecated security feature which prevents cjdns from opening
        // any files at all, using this will block setting of IP addresses and
        // hot-adding ETHInterface devices but for users who do not need this, it
        // provides a formidable sandbox.
        // Default: disabled
        { "nofiles": 0 },

        // Noforks will prevent cjdns from spawning any new processes or threads,
        // this prevents many types of exploits from attacking the wider system.
        // Default: enabled
        { "noforks": 1 },

        // The client sets up the core using a sequence of RPC calls, the responses
        // to these calls are verified but in the event that the client crashes
        // setup of the core completes, it could leave the core in an insecure state
        // This call constitutes the client telling the core that the security rules
        // have been fully applied and the core may run. Without it, the core will
        // exit within a few seconds with return code 232.
        // Default: enabled
        { "setupComplete": 1 }
    ],

    // Logging
    "logging": {
        // Uncomment to have cjdns log to stdout rather than making logs available
        // via the admin socket.
        // "logTo": "stdout"
    },

    // If set to non-zero, cjdns will not fork to the background.
    // Recommended for use in conjunction with "logTo":"stdout".
    "noBackground": 0,

    // Path for admin control pipe:
    // If you pass only a filename then cjdns will guess the full path
    // On unix the default path is /tmp/
    // On windows: \\.\pipe\
    "pipe": "cjdroute.sock",

    // This is to make the configuration be parsed in strict mode, which allows
    // it to be edited externally using cjdnsconf.
    "version": 2
}
"#;
