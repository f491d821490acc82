//! `SHIELD.inspect` on the cluster: the owner, a READONLY replica, and the
//! redirects of the other nodes.

use serial_test::serial;
use shield_testkit::{Cluster, ClusterNode, ShieldCommands};

use crate::NO_REFILL;

#[test]
#[serial]
fn inspect_answers_on_the_owner_and_a_readonly_replica_moved_elsewhere() {
    let cluster = Cluster::for_test();
    let key = cluster.key("inspect:me");
    let mut cc = cluster.conn();
    assert_eq!(cc.absorb(&key, 100, NO_REFILL, Some(30)), 70);
    assert_eq!(
        cc.try_inspect(&key, 100, NO_REFILL).unwrap()[..2],
        [70, 100]
    );
    let slot = cluster.server_keyslot(&key);
    let owner = cluster.owner_of_slot(slot);
    let redirects_to_owner = |node: &ClusterNode| {
        let err = cluster
            .conn_to(node)
            .try_inspect(&key, 100, NO_REFILL)
            .unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((owner.addr().as_str(), slot)),
            "{err}"
        );
    };
    let mut oc = cluster.conn_to(&owner);
    assert_eq!(oc.wait_replicas(1), 1);
    for replica in cluster.replicas_of(&owner.id) {
        let mut rc = cluster.replica_conn(&replica);
        assert_eq!(
            rc.try_inspect(&key, 100, NO_REFILL).unwrap()[..2],
            [70, 100],
            "READONLY replica {}",
            replica.addr()
        );
        // Without READONLY, the replica redirects to its master.
        redirects_to_owner(&replica);
    }
    for m in cluster.masters().iter().filter(|m| m.id != owner.id) {
        redirects_to_owner(m);
    }
    // Inspecting wrote nothing: absorb still sees 70.
    assert_eq!(cc.absorb(&key, 100, NO_REFILL, None), 69);
}
