//! Moving a slot between masters while clients use it: the legacy way
//! (`CLUSTER SETSLOT` + `MIGRATE`, as `redis-cli --cluster reshard` does) and
//! the servers' own atomic slot migration (Valkey 9+ `CLUSTER MIGRATESLOTS`,
//! Redis 8.4+ `CLUSTER MIGRATION`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Cluster, ClusterNode, HEALTHY_TIMEOUT};
use crate::server::wait_until;

impl Cluster {
    /// Move `slot` from `source` to `target` the way `redis-cli --cluster
    /// reshard` does, while clients may keep using it:
    /// `CLUSTER SETSLOT <slot> IMPORTING` on the target, `MIGRATING` on the
    /// source; then `CLUSTER GETKEYSINSLOT` + `MIGRATE ... KEYS` in batches of
    /// `batch` keys until the source has none left (calling `between_batches`
    /// after each batch); then `CLUSTER SETSLOT <slot> NODE <target>` on the
    /// target, the source and every other master. Returns the number of
    /// MIGRATE batches.
    pub fn migrate_slot(
        &self,
        slot: u16,
        source: &ClusterNode,
        target: &ClusterNode,
        batch: usize,
        mut between_batches: impl FnMut(),
    ) -> usize {
        let mut src = self.conn_to(source);
        let mut tgt = self.conn_to(target);
        let setslot = |c: &mut redis::Connection, how: &str, id: Option<&str>| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(how);
            if let Some(id) = id {
                cmd.arg(id);
            }
            let _: () = cmd
                .query(c)
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {how} {id:?}: {e}"));
        };
        setslot(&mut tgt, "IMPORTING", Some(&source.id));
        setslot(&mut src, "MIGRATING", Some(&target.id));
        let mut batches = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch)
                .query(&mut src)
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg(&target.host)
                .arg(target.port)
                .arg("")
                .arg(0)
                .arg(5_000);
            if let Some((user, pass)) = self.auth.strip_suffix('@').and_then(|a| a.split_once(':'))
            {
                if user.is_empty() {
                    migrate.arg("AUTH").arg(pass);
                } else {
                    migrate.arg("AUTH2").arg(user).arg(pass);
                }
            }
            let reply: String = migrate
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .unwrap_or_else(|e| panic!("MIGRATE to {}: {e}", target.addr()));
            assert_eq!(reply, "OK", "MIGRATE");
            batches += 1;
            between_batches();
        }
        setslot(&mut tgt, "NODE", Some(&target.id));
        setslot(&mut src, "NODE", Some(&target.id));
        for m in self
            .masters()
            .iter()
            .filter(|m| m.id != source.id && m.id != target.id)
        {
            setslot(&mut self.conn_to(m), "NODE", Some(&target.id));
        }
        batches
    }
}

// ---------------------------------------------------------------------------
// Atomic slot migration (ASM)
// ---------------------------------------------------------------------------

/// The atomic slot migration a server offers, found by asking it (see
/// [`Cluster::atomic_slot_migration`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtomicSlotMigration {
    /// Valkey 9+: `CLUSTER MIGRATESLOTS SLOTSRANGE s s NODE <target>`, sent to
    /// the source; observed with `CLUSTER GETSLOTMIGRATIONS` (jobs end in
    /// `success`, `failed` or `cancelled`).
    Valkey,
    /// Redis 8.4+: `CLUSTER MIGRATION IMPORT s s`, sent to the target;
    /// observed with `CLUSTER MIGRATION STATUS ID <task>` (tasks end in
    /// `completed`, `failed` or `canceled`).
    Redis,
    /// Neither: the server's answers to `CLUSTER MIGRATESLOTS` and to
    /// `CLUSTER MIGRATION` (both "unknown subcommand").
    Unsupported {
        migrateslots: String,
        migration: String,
    },
}

/// What [`Cluster::migrate_slot_atomically`] did.
#[derive(Clone, Debug)]
pub struct SlotMigration {
    pub kind: AtomicSlotMigration,
    /// The job's name (Valkey) or task id (Redis).
    pub task: String,
    pub slot: u16,
    pub source: ClusterNode,
    pub target: ClusterNode,
    /// From the command to every node seeing the target as the slot's owner.
    pub elapsed: Duration,
    /// How long the hand-over was held back while the source streamed the
    /// slot's writes to the target (zero when not held).
    pub held: Duration,
    /// The source's last status of the job (`state`, `message`/`last_error`...).
    pub source_status: BTreeMap<String, String>,
    /// The target's last status of the job.
    pub target_status: BTreeMap<String, String>,
}

/// `CLUSTER <subcommand>` without arguments: `Ok(error text)` when the server
/// knows the subcommand (it answers with an arity error), `Err(error text)`
/// when it does not ("unknown subcommand"). Any other answer is a panic: this
/// must never run a migration, nor mistake another error for "absent".
fn probe_cluster_subcommand(c: &mut redis::Connection, sub: &str) -> Result<String, String> {
    match redis::cmd("CLUSTER").arg(sub).query::<redis::Value>(c) {
        Ok(v) => panic!("CLUSTER {sub} without arguments answered {v:?}"),
        Err(e) => {
            let text = e.to_string();
            let lower = text.to_lowercase();
            if lower.contains("unknown subcommand") {
                Err(text)
            } else if lower.contains("wrong number of arguments") {
                Ok(text)
            } else {
                panic!("unexpected answer to CLUSTER {sub} without arguments: {text}")
            }
        }
    }
}

/// A reply value as text (bulk and simple strings, integers; "" for nil).
fn value_text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Okay => "OK".into(),
        redis::Value::Nil => String::new(),
        other => format!("{other:?}"),
    }
}

/// The entries of a `CLUSTER GETSLOTMIGRATIONS` / `CLUSTER MIGRATION STATUS`
/// reply: an array of field/value lists (RESP2) or maps (RESP3).
pub fn parse_migration_entries(reply: &redis::Value) -> Vec<BTreeMap<String, String>> {
    let redis::Value::Array(entries) = reply else {
        panic!("slot migration status is not an array: {reply:?}");
    };
    entries
        .iter()
        .map(|entry| match entry {
            redis::Value::Array(flat) => flat
                .chunks(2)
                .map(|kv| {
                    (
                        value_text(&kv[0]),
                        kv.get(1).map(value_text).unwrap_or_default(),
                    )
                })
                .collect(),
            redis::Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| (value_text(k), value_text(v)))
                .collect(),
            other => panic!("slot migration entry is not a list or map: {other:?}"),
        })
        .collect()
}

impl Cluster {
    /// Which atomic slot migration the nodes offer, asked of every master
    /// (they must agree): `CLUSTER MIGRATESLOTS` and `CLUSTER MIGRATION`
    /// without arguments, which a server that has them answers with an arity
    /// error, and one that has not with "unknown subcommand".
    pub fn atomic_slot_migration(&self) -> AtomicSlotMigration {
        let mut found: Option<(String, AtomicSlotMigration)> = None;
        for m in self.masters() {
            let mut c = self.conn_to(&m);
            let kind = match (
                probe_cluster_subcommand(&mut c, "MIGRATESLOTS"),
                probe_cluster_subcommand(&mut c, "MIGRATION"),
            ) {
                (Ok(_), Err(_)) => AtomicSlotMigration::Valkey,
                (Err(_), Ok(_)) => AtomicSlotMigration::Redis,
                (Err(migrateslots), Err(migration)) => AtomicSlotMigration::Unsupported {
                    migrateslots,
                    migration,
                },
                (Ok(a), Ok(b)) => panic!(
                    "{} has both CLUSTER MIGRATESLOTS ({a}) and CLUSTER MIGRATION ({b})",
                    m.addr()
                ),
            };
            match &found {
                None => found = Some((m.addr(), kind)),
                Some((addr, k)) if std::mem::discriminant(k) != std::mem::discriminant(&kind) => {
                    panic!("{addr} offers {k:?} but {} offers {kind:?}", m.addr())
                }
                Some(_) => {}
            }
        }
        found.expect("no master").1
    }

    /// Move `slot` from its owner to `target` with the server's own atomic
    /// slot migration (see [`AtomicSlotMigration`]), and poll (no fixed
    /// sleeps) until the job has succeeded on both sides and every running
    /// node sees `target` as the slot's only owner, then until the cluster is
    /// healthy. Panics with the job's status and the node logs if the server
    /// refuses the migration or the job fails.
    pub fn migrate_slot_atomically(&self, slot: u16, target: &ClusterNode) -> SlotMigration {
        self.run_atomic_migration(slot, target, None)
    }

    /// Like [`Cluster::migrate_slot_atomically`], but the hand-over is held
    /// back until `while_streaming` returns: the source has sent the slot's
    /// snapshot and streams every further write of the slot to the target,
    /// while still serving the slot's clients. It is held with the servers'
    /// debug switches (`DEBUG SLOTMIGRATION PREVENT-PAUSE` on Valkey,
    /// `DEBUG ASM-FAILPOINT migrate-main-channel handoff-prep` on Redis;
    /// `enable-debug-command` is on in the nodes this harness starts).
    pub fn migrate_slot_atomically_holding(
        &self,
        slot: u16,
        target: &ClusterNode,
        while_streaming: impl FnOnce(),
    ) -> SlotMigration {
        let mut f = Some(while_streaming);
        let mut call = || (f.take().expect("called once"))();
        self.run_atomic_migration(slot, target, Some(&mut call))
    }

    fn run_atomic_migration(
        &self,
        slot: u16,
        target: &ClusterNode,
        while_streaming: Option<&mut dyn FnMut()>,
    ) -> SlotMigration {
        let kind = self.atomic_slot_migration();
        let dialect = match &kind {
            AtomicSlotMigration::Valkey => &VALKEY,
            AtomicSlotMigration::Redis => &REDIS,
            AtomicSlotMigration::Unsupported {
                migrateslots,
                migration,
            } => panic!(
                "this server has no atomic slot migration: CLUSTER MIGRATESLOTS: \
                 {migrateslots}; CLUSTER MIGRATION: {migration}"
            ),
        };
        let source = self.owner_of_slot(slot);
        assert_ne!(source.id, target.id, "slot {slot} is already on the target");
        assert!(
            target.is_master(),
            "target {} is not a master",
            target.addr()
        );
        let mut sides = Sides {
            src: self.conn_to(&source),
            tgt: self.conn_to(target),
        };
        let mut job = Job {
            cluster: self,
            dialect,
            slot,
            source: &source,
            target,
            name: String::new(),
        };
        let started = Instant::now();
        let outcome = if kind == AtomicSlotMigration::Valkey {
            valkey_migration(&mut job, &mut sides, while_streaming)
        } else {
            redis_migration(&mut job, &mut sides, while_streaming)
        };
        // Every running node's own view: the target serves the slot, nobody else does.
        let what = format!(
            "every node to see {} as the owner of slot {slot}",
            target.addr()
        );
        wait_until(HEALTHY_TIMEOUT, &what, || {
            self.alive_seeds().iter().all(|(h, p)| {
                self.try_topology_of(h, *p).is_ok_and(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n.is_master() && n.serves_slot(slot))
                        .map(|n| n.id.as_str())
                        .eq([target.id.as_str()])
                })
            })
        });
        let elapsed = started.elapsed();
        self.wait_healthy(&what);
        SlotMigration {
            kind,
            task: outcome.task,
            slot,
            source,
            target: target.clone(),
            elapsed,
            held: outcome.held,
            source_status: outcome.source_status,
            target_status: outcome.target_status,
        }
    }

    /// Poll `status` until it returns Some(final entry); panic on timeout.
    fn poll_job(&self, what: &str, mut status: impl FnMut() -> Option<Status>) -> Status {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            if let Some(entry) = status() {
                return entry;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {HEALTHY_TIMEOUT:?} waiting for {what}\n--- node logs ---\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A job's (or task's) status: field -> value.
type Status = BTreeMap<String, String>;

/// A field of a status ("" when absent).
fn field(e: &Status, f: &str) -> String {
    e.get(f).cloned().unwrap_or_default()
}

/// How a server names the states of its migration jobs.
struct Dialect {
    /// The source streams the slot's writes to the target (where a held
    /// migration waits before the hand-over).
    streaming: &'static str,
    /// Done.
    done: &'static str,
    /// Will not finish.
    failed: [&'static str; 2],
}

const VALKEY: Dialect = Dialect {
    streaming: "waiting-to-pause",
    done: "success",
    failed: ["failed", "cancelled"],
};

const REDIS: Dialect = Dialect {
    streaming: "send-stream",
    done: "completed",
    failed: ["failed", "canceled"],
};

/// Direct connections to the slot's source and target.
struct Sides {
    src: redis::Connection,
    tgt: redis::Connection,
}

/// One atomic migration under way.
struct Job<'a> {
    cluster: &'a Cluster,
    dialect: &'static Dialect,
    slot: u16,
    source: &'a ClusterNode,
    target: &'a ClusterNode,
    /// How failure messages name it, once the server has answered.
    name: String,
}

/// What the server-specific part of a migration reports.
struct Outcome {
    task: String,
    held: Duration,
    source_status: Status,
    target_status: Status,
}

impl Job<'_> {
    fn failed(&self, e: &Status) -> bool {
        self.dialect.failed.contains(&field(e, "state").as_str())
    }

    fn fail(&self, side: &str, e: &Status) -> ! {
        panic!(
            "{} of slot {} {} -> {} failed on the {side}: {e:?}\n--- node logs ---\n{}",
            self.name,
            self.slot,
            self.source.addr(),
            self.target.addr(),
            self.cluster.log_tails()
        )
    }

    /// Poll one side's `status` until the job is done there; panic if it fails.
    fn wait_done(
        &self,
        side: &str,
        what: &str,
        mut status: impl FnMut() -> Option<Status>,
    ) -> Status {
        self.cluster.poll_job(what, || {
            let e = status()?;
            if self.failed(&e) {
                self.fail(side, &e);
            }
            (field(&e, "state") == self.dialect.done).then_some(e)
        })
    }

    /// Wait (polling the source's `status`) until the source streams the
    /// slot's writes, held before the hand-over; run `during`; check that the
    /// job stayed held. Returns how long `during` took.
    fn hold(
        &self,
        during: &mut dyn FnMut(),
        mut status: impl FnMut() -> Option<Status>,
    ) -> Duration {
        let e = self
            .cluster
            .poll_job("the migration to stream the slot's writes", || {
                let e = status()?;
                let state = field(&e, "state");
                if state == self.dialect.streaming {
                    Some(e)
                } else if state == self.dialect.done {
                    panic!("the migration was not held: {e:?}")
                } else if self.failed(&e) {
                    self.fail("source", &e)
                } else {
                    None
                }
            });
        let holding = Instant::now();
        during();
        let held = holding.elapsed();
        let still = status().expect("the job");
        assert_eq!(
            field(&still, "state"),
            field(&e, "state"),
            "the migration did not stay held while streaming: {still:?}"
        );
        held
    }
}

/// Valkey: `CLUSTER MIGRATESLOTS` on the source; the job is the new
/// `CLUSTER GETSLOTMIGRATIONS` entry of the source (EXPORT) and of the
/// target (IMPORT, same name).
fn valkey_migration(
    job: &mut Job<'_>,
    c: &mut Sides,
    while_streaming: Option<&mut dyn FnMut()>,
) -> Outcome {
    let jobs = |c: &mut redis::Connection| -> Vec<Status> {
        let reply: redis::Value = redis::cmd("CLUSTER")
            .arg("GETSLOTMIGRATIONS")
            .query(c)
            .expect("CLUSTER GETSLOTMIGRATIONS");
        parse_migration_entries(&reply)
    };
    let debug_hold = |c: &mut redis::Connection, on: bool| {
        let _: () = redis::cmd("DEBUG")
            .arg("SLOTMIGRATION")
            .arg("PREVENT-PAUSE")
            .arg(u8::from(on))
            .query(c)
            .unwrap_or_else(|e| panic!("DEBUG SLOTMIGRATION PREVENT-PAUSE {on}: {e}"));
    };
    let slot = job.slot;
    let known: Vec<String> = jobs(&mut c.src).iter().map(|e| field(e, "name")).collect();
    if while_streaming.is_some() {
        debug_hold(&mut c.src, true);
    }
    let reply: redis::RedisResult<String> = redis::cmd("CLUSTER")
        .arg("MIGRATESLOTS")
        .arg("SLOTSRANGE")
        .arg(slot)
        .arg(slot)
        .arg("NODE")
        .arg(&job.target.id)
        .query(&mut c.src);
    match reply {
        Ok(ok) => assert_eq!(ok, "OK", "CLUSTER MIGRATESLOTS"),
        Err(e) => panic!(
            "{} refused CLUSTER MIGRATESLOTS SLOTSRANGE {slot} {slot} NODE {}: {e}",
            job.source.addr(),
            job.target.id
        ),
    }
    let range = format!("{slot}-{slot}");
    let find = |c: &mut redis::Connection, operation: &str, name: Option<&str>| {
        jobs(c).into_iter().find(|e| {
            field(e, "operation") == operation
                && field(e, "slot_ranges") == range
                && match name {
                    Some(n) => field(e, "name") == n,
                    None => !known.contains(&field(e, "name")),
                }
        })
    };
    let new_job = job
        .cluster
        .poll_job("the EXPORT job of CLUSTER MIGRATESLOTS", || {
            find(&mut c.src, "EXPORT", None)
        });
    let name = field(&new_job, "name");
    job.name = format!("slot migration {name}");
    let job = &*job;
    let mut held = Duration::ZERO;
    if let Some(during) = while_streaming {
        // The snapshot is on the target; the source streams the slot's
        // writes and waits for leave to pause them and hand over.
        held = job.hold(during, || find(&mut c.src, "EXPORT", Some(&name)));
        debug_hold(&mut c.src, false);
    }
    let source_status = job.wait_done("source", "the EXPORT job to succeed", || {
        find(&mut c.src, "EXPORT", Some(&name))
    });
    let target_status = job.wait_done("target", "the IMPORT job to succeed", || {
        find(&mut c.tgt, "IMPORT", Some(&name))
    });
    Outcome {
        task: name,
        held,
        source_status,
        target_status,
    }
}

/// Redis: `CLUSTER MIGRATION IMPORT` on the target, which answers the task
/// id; `CLUSTER MIGRATION STATUS ID <task>` on both sides.
fn redis_migration(
    job: &mut Job<'_>,
    c: &mut Sides,
    while_streaming: Option<&mut dyn FnMut()>,
) -> Outcome {
    let failpoint = |c: &mut redis::Connection, channel: &str, state: &str| {
        let _: () = redis::cmd("DEBUG")
            .arg("ASM-FAILPOINT")
            .arg(channel)
            .arg(state)
            .query(c)
            .unwrap_or_else(|e| panic!("DEBUG ASM-FAILPOINT {channel:?} {state:?}: {e}"));
    };
    let slot = job.slot;
    if while_streaming.is_some() {
        // The source does not enter the hand-over (write pause) while set.
        failpoint(&mut c.src, "migrate-main-channel", "handoff-prep");
    }
    let task: String = redis::cmd("CLUSTER")
        .arg("MIGRATION")
        .arg("IMPORT")
        .arg(slot)
        .arg(slot)
        .query(&mut c.tgt)
        .unwrap_or_else(|e| {
            panic!(
                "{} refused CLUSTER MIGRATION IMPORT {slot} {slot}: {e}",
                job.target.addr()
            )
        });
    job.name = format!("slot migration task {task}");
    let job = &*job;
    let status = |c: &mut redis::Connection| -> Option<Status> {
        let reply: redis::Value = redis::cmd("CLUSTER")
            .arg("MIGRATION")
            .arg("STATUS")
            .arg("ID")
            .arg(&task)
            .query(c)
            .expect("CLUSTER MIGRATION STATUS");
        parse_migration_entries(&reply).into_iter().next()
    };
    let mut held = Duration::ZERO;
    if let Some(during) = while_streaming {
        // Snapshot sent; the source streams the slot's writes.
        held = job.hold(during, || status(&mut c.src));
        failpoint(&mut c.src, "", "");
    }
    let target_status = job.wait_done("target", "the import task to complete", || {
        status(&mut c.tgt)
    });
    let source_status = job.wait_done("source", "the migrate task to complete", || {
        status(&mut c.src)
    });
    Outcome {
        task,
        held,
        source_status,
        target_status,
    }
}
