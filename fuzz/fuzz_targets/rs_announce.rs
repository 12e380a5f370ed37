//! Fuzz the route server's announcement parsing and ingestion: any bytes must give a checked
//! view or a typed error, never a panic; what parses must re-emit; the graph must refuse or
//! take it without panicking, and the supernode-query handler must answer or ignore it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_route_server::announce::{Announcement, AnnouncementRepr};
use pktmesh_route_server::graph::{Config, Graph, Origin};
use pktmesh_route_server::{CostModel, RouteServer};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announcement::new_checked(data) {
        let repr = AnnouncementRepr::parse(&a);
        assert_eq!(repr.entities.len(), a.entities().count());
        let _ = a.verify();
        let _ = a.hash();
    }
    let now = 1_700_000_000_000;
    let mut g = Graph::new(Config::default());
    let _ = g.ingest(now, data, Origin::Gossip);
    let _ = g.ingest(now, data, Origin::Node);
    g.handle_timeout(now + 1);
    let mut rs = RouteServer::new(Config::default(), CostModel::default());
    let _ = rs.handle_query(now, data);
});
