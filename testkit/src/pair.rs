//! A master and its replica, started and synced.

use crate::server::{Server, ServerOptions};

/// A master and a replica of it that has finished its initial sync (as seen
/// from both sides, so that `WAIT 1` counts it).
///
/// ```no_run
/// use shield_testkit::{Pair, ServerOptions, ShieldCommands};
///
/// let Pair { master, replica } =
///     Pair::start(ServerOptions::default(), ServerOptions::default().without_module());
/// let mut m = master.conn();
/// m.absorb("k", 10, 60, None);
/// assert_eq!(m.wait_replicas(1), 1);
/// assert_eq!(replica.conn().stored("k"), m.stored("k"));
/// ```
pub struct Pair {
    pub master: Server,
    pub replica: Server,
}

impl Pair {
    /// Start a master with `master`'s options, then a replica of it with
    /// `replica`'s (its `replica_of` is set here), and wait until it is synced.
    pub fn start(master: ServerOptions, replica: ServerOptions) -> Pair {
        let master = Server::start(master);
        let replica = Server::start_replica(&master, replica);
        Pair { master, replica }
    }

    /// Both with the module, AOF off.
    pub fn with_module() -> Pair {
        Pair::start(ServerOptions::default(), ServerOptions::default())
    }

    /// The master with the module, the replica without it (it holds the
    /// bytes the master's commands replicate), AOF off.
    pub fn replica_without_module() -> Pair {
        Pair::start(
            ServerOptions::default(),
            ServerOptions::default().without_module(),
        )
    }

    /// Waits for the replica to acknowledge what `m` (a connection to the
    /// master) wrote, then checks that each of `keys` is on the master with
    /// an expiry and holds the same bytes and expiry on the replica.
    pub fn assert_same_bytes(&self, m: &mut redis::Connection, keys: &[&str]) {
        use crate::shield::ShieldCommands;
        assert_eq!(m.wait_replicas(1), 1);
        let mut r = self.replica.conn();
        for &key in keys {
            let on_master = m.stored(key);
            assert!(
                on_master.0.is_some() && on_master.1 > 0,
                "{key}: {on_master:?}"
            );
            assert_eq!(r.stored(key), on_master, "{key} on the replica");
        }
    }
}
