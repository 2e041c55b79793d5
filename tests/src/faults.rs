//! A fault-injecting transport for real clusters, at the TCP level.
//!
//! Each node's peer port is fronted by a proxy listening on the node's genesis
//! address, and each node dials its peers from a loopback address of its own,
//! 127.0.0.(10+id) (`peer_source_ip`), so the proxy knows which two nodes a
//! connection joins. [`Faults::partition`] cuts chosen links both ways: new
//! connections are closed at once and open ones are torn down. The RA-TLS
//! traffic inside is untouched, so nodes see what a real network partition
//! shows them: connections refused or reset.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The loopback address node `id` dials its peers from.
pub fn source_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(id).expect("node id below 246")))
}

fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] > 10 => {
            Some(u64::from(v4.octets()[3] - 10))
        }
        _ => None,
    }
}

fn link(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

#[derive(Default)]
struct Links {
    cut: Mutex<BTreeSet<(u64, u64)>>,
    open: Mutex<Vec<((u64, u64), AbortHandle)>>,
}

impl Links {
    fn is_cut(&self, a: u64, b: u64) -> bool {
        self.cut.lock().expect("links").contains(&link(a, b))
    }
}

/// The proxies of one cluster; dropping it stops them.
pub struct Faults {
    /// Runs the proxies; dropping it stops them.
    _rt: tokio::runtime::Runtime,
    links: Arc<Links>,
}

/// One node's route: connections to `front` (its genesis address) go to `back` (where it listens).
pub struct Route {
    pub node: u64,
    pub front: SocketAddr,
    pub back: SocketAddr,
}

impl Faults {
    pub fn start(routes: Vec<Route>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let links = Arc::new(Links::default());
        for r in routes {
            let listener = rt.block_on(TcpListener::bind(r.front)).expect("bind proxy");
            rt.spawn(proxy(listener, r.node, r.back, links.clone()));
        }
        Faults { _rt: rt, links }
    }

    /// Cut every link between a node of `a` and a node of `b`.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        let pairs: BTreeSet<(u64, u64)> = a.iter().flat_map(|x| b.iter().map(|y| link(*x, *y))).collect();
        self.links.cut.lock().expect("links").extend(pairs.iter().copied());
        let mut open = self.links.open.lock().expect("links");
        open.retain(|(pair, conn)| {
            let cut = pairs.contains(pair);
            if cut {
                conn.abort();
            }
            !cut && !conn.is_finished()
        });
    }

    /// Restore every link.
    pub fn heal(&self) {
        self.links.cut.lock().expect("links").clear();
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        for (_, conn) in self.links.open.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default() {
            conn.abort();
        }
    }
}

async fn proxy(listener: TcpListener, to: u64, back: SocketAddr, links: Arc<Links>) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else { continue };
        // Connections from an unknown address (not a node) pass: only node links are cut.
        let from = node_of(peer.ip());
        if from.is_some_and(|from| links.is_cut(from, to)) {
            drop(inbound);
            continue;
        }
        let task = tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(back).await else { return };
            let mut inbound = inbound;
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
        if let Some(from) = from {
            links.open.lock().expect("links").push((link(from, to), task.abort_handle()));
        }
    }
}
