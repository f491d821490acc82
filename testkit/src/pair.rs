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
}
