//! Who the cluster is, kept true by background tasks:
//!
//! - [`membership_check`]: the node's last word in every RA-TLS handshake
//!   (revocation, identity pinning, membership).
//! - [`bootstrap`]: founds the cluster from the genesis file.
//! - [`ask_to_join`]: on a node that is not in the genesis file, asks the
//!   members to admit it until an admin has and the log has reached it.
//! - [`reconcile`]: on the leader, makes Raft's membership follow the
//!   replicated member list: approved joiners become learners, caught-up
//!   learners are promoted, revoked nodes are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guardian_proto::v1::peer_service_client::PeerServiceClient;
use guardian_proto::v1::{JoinRequest, JoinState};
use openraft::ChangeMembers;

use crate::net::ratls::verify::{ExtraCheck, PeerCertificate};
use crate::raft::network::Connector;
use crate::raft::types::{NodeAddr, Raft};
use crate::state::genesis::Genesis;
use crate::state::{Command, Member, MemberStatus, NodeId, NodeIdentity};
use crate::store::StateView;

/// Identities and MRTDs (hex) seen on successful handshakes, for the bootstrap entry.
pub type Observed = Arc<Mutex<BTreeMap<NodeId, (NodeIdentity, String)>>>;

/// Members a joiner learned from join answers, with their identities: whom it
/// accepts replication from before its own copy of the state arrives.
pub type Provisional = Arc<Mutex<BTreeMap<NodeId, (String, NodeIdentity)>>>;

/// The peer policy's own checks. After bootstrap, against the replicated
/// state: a revoked identity is refused; a member's id must come with the
/// member's identity; a non-member may connect (only `Join` will answer it,
/// see `PeerServer::admit`). Before bootstrap: genesis members, and on a
/// joiner the members it learned.
pub fn membership_check(
    genesis: &Genesis,
    view: StateView,
    observed: Observed,
    provisional: Provisional,
) -> ExtraCheck {
    let genesis = genesis.clone();
    Arc::new(move |peer: &PeerCertificate, claims: &crate::attest::Claims| {
        view.with_state(|state| check_member(&genesis, state, &provisional, peer))?;
        if let Ok(mut o) = observed.lock() {
            o.insert(peer.node_id, (peer.identity, hex::encode(claims.td.mrtd)));
        }
        Ok(())
    })
}

/// [`membership_check`]'s decision, on the state as it is (not a copy: this
/// runs in every handshake).
fn check_member(
    genesis: &Genesis,
    state: &crate::state::ClusterState,
    provisional: &Provisional,
    peer: &PeerCertificate,
) -> Result<(), String> {
    if state.revoked.contains(&peer.identity) {
        return Err(format!("node {} (identity {}) is revoked", peer.node_id, peer.identity));
    }
    if state.genesis_digest.is_some() {
        if let Some(member) = state.members.get(&peer.node_id) {
            if member.identity != peer.identity {
                return Err(format!(
                    "node {} presented identity {}, the cluster knows it as {}",
                    peer.node_id, peer.identity, member.identity
                ));
            }
        } else if let Some(m) = state.members.values().find(|m| m.identity == peer.identity) {
            return Err(format!("identity {} is node {}, not node {}", peer.identity, m.id, peer.node_id));
        }
    } else {
        let learned = provisional.lock().map(|p| p.get(&peer.node_id).map(|(_, i)| *i)).unwrap_or_default();
        match learned {
            Some(identity) if identity != peer.identity => {
                return Err(format!("node {} presented an identity the cluster does not know it by", peer.node_id))
            }
            Some(_) => {}
            None if genesis.member(peer.node_id).is_some() => {}
            None => return Err(format!("node {} is not a genesis member", peer.node_id)),
        }
    }
    Ok(())
}

async fn tick(period: Duration, stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = stop.as_mut() => false,
    }
}

/// What [`bootstrap`] needs to know about this node.
pub struct Me {
    pub id: NodeId,
    pub identity: NodeIdentity,
    pub mrtd: String,
}

/// Found the cluster from the genesis file once every member has been
/// attested: the initializer (lowest id) initializes Raft with all genesis
/// members as voters; whichever node then leads proposes the bootstrap entry
/// with the identities it attested. Idempotent across restarts.
pub async fn bootstrap(
    raft: Raft,
    genesis: Genesis,
    me: Me,
    view: StateView,
    observed: Observed,
    connector: Arc<dyn Connector>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    while tick(Duration::from_millis(300), &mut stop).await {
        if view.with_state(|s| s.genesis_digest.is_some()) {
            return;
        }
        // Attest every peer we have not seen yet (the handshake does it both ways).
        let missing: Vec<_> = {
            let seen = observed.lock().map(|o| o.clone()).unwrap_or_default();
            genesis.members.iter().filter(|m| m.id != me.id && !seen.contains_key(&m.id)).cloned().collect()
        };
        for m in &missing {
            if let Err(e) = connector.connect(m.id, m.addr.clone()).await {
                tracing::debug!(peer = m.id, error = %e, "peer not attested yet");
            }
        }
        let seen = observed.lock().map(|o| o.clone()).unwrap_or_default();
        if !genesis.members.iter().all(|m| m.id == me.id || seen.contains_key(&m.id)) {
            continue;
        }
        let metrics = raft.metrics().borrow().clone();
        let initialized = metrics.membership_config.membership().voter_ids().next().is_some();
        if !initialized && me.id == genesis.initializer() {
            let members: BTreeMap<NodeId, NodeAddr> =
                genesis.members.iter().map(|m| (m.id, NodeAddr { addr: m.addr.clone() })).collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!("initialized Raft with every genesis member as a voter"),
                Err(e) => tracing::debug!(error = %e, "initialize"),
            }
            continue;
        }
        if metrics.current_leader == Some(me.id) {
            let members = genesis
                .members
                .iter()
                .map(|m| {
                    let (identity, mrtd) =
                        if m.id == me.id { (me.identity, me.mrtd.clone()) } else { seen[&m.id].clone() };
                    Member { id: m.id, addr: m.addr.clone(), identity, mrtd, status: MemberStatus::Voter }
                })
                .collect();
            match raft.client_write(Command::Bootstrap { genesis_digest: genesis.digest, members }).await {
                Ok(r) => tracing::info!(index = r.log_id.index, response = ?r.data, "proposed the bootstrap entry"),
                Err(e) => tracing::warn!(error = %e, "proposing the bootstrap entry"),
            }
        }
    }
}

/// On a node that is not a genesis member: ask every member it knows to admit
/// it, every few seconds, until the replicated state lists it. Each answer
/// also names the current members, whom the joiner then accepts (and asks).
pub async fn ask_to_join(
    genesis: Genesis,
    me: NodeId,
    address: String,
    view: StateView,
    provisional: Provisional,
    connector: Arc<dyn Connector>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut last: Option<(i32, String)> = None;
    let mut period = Duration::from_millis(100);
    while tick(period, &mut stop).await {
        period = Duration::from_secs(2);
        if view.with_state(|s| s.members.contains_key(&me)) {
            tracing::info!("admitted: this node is a member of the cluster");
            return;
        }
        let mut targets: BTreeMap<NodeId, String> = genesis.members.iter().map(|m| (m.id, m.addr.clone())).collect();
        if let Ok(p) = provisional.lock() {
            targets.extend(p.iter().map(|(id, (addr, _))| (*id, addr.clone())));
        }
        let (mut answered, mut failures) = (0, Vec::new());
        for (id, addr) in targets.into_iter().filter(|(id, _)| *id != me) {
            let answer = async {
                let channel = connector.connect(id, addr.clone()).await?;
                let req = JoinRequest { address: address.clone(), version: env!("CARGO_PKG_VERSION").into() };
                PeerServiceClient::new(channel).join(req).await.map(|r| r.into_inner()).map_err(|s| s.to_string())
            };
            match answer.await {
                Ok(resp) => {
                    answered += 1;
                    if let Ok(mut p) = provisional.lock() {
                        for m in &resp.members {
                            if let Ok(key) = <[u8; 32]>::try_from(m.tls_key_sha256.as_slice()) {
                                p.insert(m.node_id, (m.address.clone(), NodeIdentity(key)));
                            }
                        }
                    }
                    let now = (resp.state, resp.message.clone());
                    if last.as_ref() != Some(&now) {
                        match JoinState::try_from(resp.state) {
                            Ok(JoinState::Refused) => tracing::warn!(peer = id, reason = %resp.message, "join refused"),
                            Ok(state) => tracing::info!(peer = id, ?state, detail = %resp.message, "join request"),
                            Err(_) => tracing::warn!(peer = id, "join answer with an unknown state"),
                        }
                        last = Some(now);
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = id, error = %e, "could not ask to join");
                    failures.push(format!("node {id}: {e}"));
                }
            }
        }
        // No member answered: say why, once per distinct reason. A member
        // that refuses the handshake (a revoked identity, a measurement the
        // guardian policy does not allow) shows here as a TLS alert.
        if answered == 0 && !failures.is_empty() {
            let now = (-1, failures.join("; "));
            if last.as_ref() != Some(&now) {
                tracing::warn!(errors = %now.1, "no member accepted the join request; retrying");
                last = Some(now);
            }
        }
    }
}

/// Catch-up margin: a learner this close to the leader's log is promoted.
const PROMOTE_LAG: u64 = 5;

/// On the leader, make Raft's membership follow the member list, one step
/// per round:
/// 1. an approved member Raft does not know yet is added as a learner;
/// 2. a learner that has caught up becomes a Raft voter, and then a
///    replicated `Promote` records it, so "voter" in the member list always
///    means a committed Raft voter (a `Promote` lost to a leader crash is
///    proposed again by the next leader);
/// 3. Raft voters and learners that are no longer members (revoked) are removed.
pub async fn reconcile(raft: Raft, me: NodeId, view: StateView, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    while tick(Duration::from_millis(500), &mut stop).await {
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(me) {
            continue;
        }
        let members: BTreeMap<NodeId, Member> = view.with_state(|s| match s.genesis_digest {
            Some(_) => s.members.clone(),
            None => BTreeMap::new(),
        });
        if members.is_empty() {
            continue;
        }
        let membership = metrics.membership_config.membership().clone();
        let in_raft: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learner = |m: &&Member| m.status == MemberStatus::Learner;
        let result = if let Some(m) = members.values().find(|m| !in_raft.contains(&m.id)) {
            tracing::info!(node = m.id, addr = %m.addr, "adding an approved node as a learner");
            raft.add_learner(m.id, NodeAddr { addr: m.addr.clone() }, false).await.map(|_| ())
        } else if let Some(m) = members.values().filter(learner).find(|m| voters.contains(&m.id)) {
            raft.client_write(Command::Promote { node_id: m.id }).await.map(|_| ())
        } else if let Some(m) = members.values().filter(learner).find(|m| caught_up(&metrics, m.id)) {
            tracing::info!(node = m.id, "learner caught up; promoting it to voter");
            match raft.change_membership(ChangeMembers::AddVoterIds([m.id].into()), true).await {
                Ok(_) => raft.client_write(Command::Promote { node_id: m.id }).await.map(|_| ()),
                Err(e) => Err(e),
            }
        } else {
            let kept: BTreeSet<NodeId> = voters.iter().filter(|id| members.contains_key(id)).copied().collect();
            let gone: BTreeSet<NodeId> = in_raft.iter().filter(|id| !members.contains_key(id)).copied().collect();
            if kept != voters {
                tracing::info!(removed = ?voters.difference(&kept).collect::<Vec<_>>(), "removing revoked voters from Raft");
                raft.change_membership(kept, false).await.map(|_| ())
            } else if !gone.is_empty() {
                raft.change_membership(ChangeMembers::RemoveNodes(gone), false).await.map(|_| ())
            } else {
                continue;
            }
        };
        match result {
            Ok(()) => tracing::info!("Raft membership moved towards the member list"),
            Err(e) => tracing::warn!(error = %e, "changing Raft membership"),
        }
    }
}

fn caught_up(metrics: &openraft::RaftMetrics<NodeId, NodeAddr>, id: NodeId) -> bool {
    let last = metrics.last_log_index.unwrap_or_default();
    let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index);
    matched.is_some_and(|m| m + PROMOTE_LAG >= last)
}
