//! What the compatibility tests (`tests/cl_throttle.rs`, `tests/gcra.rs`)
//! share: the five-integer reply, a pair of servers side by side (ours and
//! a reference), the tally of explained differences, random rates and
//! sequences, and the guard that gives up on a sequence the machine ran too
//! slowly to judge.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::server::{Server, ServerOptions};

/// The reply of `CL.THROTTLE` and `GCRA`: five integers.
pub type Reply = [i64; 5];

/// Runs `cmd`, expecting five integers; `what` names the call in a failure.
pub fn five_integers(c: &mut redis::Connection, cmd: &redis::Cmd, what: &str) -> Reply {
    let v: Vec<i64> = cmd.query(c).unwrap_or_else(|e| panic!("{what}: {e}"));
    v.try_into()
        .unwrap_or_else(|v| panic!("{what} answered {v:?}, not five integers"))
}

/// `a / b` rounded up (towards +infinity).
pub fn ceil_div(a: i128, b: i128) -> i128 {
    a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0)
}

/// A random number in `[lo, hi]`, spread evenly over the orders of magnitude.
pub fn log_uniform(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    let (a, b) = ((lo.max(1) as f64).ln(), (hi as f64 + 1.0).ln());
    let x = a + (b - a) * (rng.below(1 << 40) as f64 / (1u64 << 40) as f64);
    (x.exp() as u64).clamp(lo, hi)
}

/// redis-shield on the server under test, the reference on another server.
pub struct SideBySide {
    _ours: Server,
    _theirs: Server,
    pub ours: redis::Connection,
    pub theirs: redis::Connection,
}

impl SideBySide {
    /// Ours with the default options, the reference with `theirs`.
    pub fn start(theirs: ServerOptions) -> SideBySide {
        let ours = Server::start(ServerOptions::default());
        let theirs = Server::start(theirs);
        SideBySide {
            ours: ours.conn(),
            theirs: theirs.conn(),
            _ours: ours,
            _theirs: theirs,
        }
    }
}

/// Is ours the stricter reply on field `i` (limited, remaining/available,
/// the two waits)? The limits (field 1) never differ.
pub fn ours_stricter(what: &str, i: usize, ours: Reply, theirs: Reply) -> bool {
    match i {
        0 | 3 | 4 => ours[i] > theirs[i],
        2 => ours[i] < theirs[i],
        _ => panic!("{what}: the limits differ: {ours:?} vs {theirs:?}"),
    }
}

/// The explained differences seen, by cause and field: count and first example.
#[derive(Default)]
pub struct Tally {
    pub calls: u64,
    pub differing_calls: u64,
    pub seen: BTreeMap<String, (u64, String)>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.differing_calls += other.differing_calls;
        for (what, (n, example)) in other.seen {
            self.seen.entry(what).or_insert((0, example)).0 += n;
        }
    }

    /// Counts one more difference `what`; `example` is kept if it is the first.
    pub fn note(&mut self, what: String, example: impl FnOnce() -> String) {
        self.seen.entry(what).or_insert_with(|| (0, example())).0 += 1;
    }

    pub fn print(&self, title: &str) {
        eprintln!(
            "{title}: {} calls, {} with an explained difference",
            self.calls, self.differing_calls
        );
        for (what, (n, example)) in &self.seen {
            eprintln!("  {n:6} x {what}\n         e.g. {example}");
        }
    }
}

/// One step of a sequence: seconds of "time passing", then a call's quantity.
pub type Step = (u64, u64);

/// Why a sequence could not be judged: the real time since the bucket's
/// last full moment came too close to the rate's granularity.
pub struct TooSlow(pub Duration);

/// A burst for the random sequences: mostly small, sometimes up to 1000.
pub fn random_burst(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=2 => rng.below(6),
        3..=7 => rng.below(31),
        _ => rng.below(1001),
    }
}

/// 14 random steps on a bucket of `cap` tokens that is full again after
/// `full_s` seconds: no time passing 4 times in 10, else up to `full_s + 1`
/// seconds; then a call for 1 token 10 times in 20 (with `peeks`, 3 of
/// those for 0 tokens), for 1 to `cap` 6 times, `cap` 2 times, and above
/// `cap` 2 times.
pub fn random_steps(rng: &mut Rng, full_s: u64, cap: u64, peeks: bool) -> Vec<Step> {
    (0..14)
        .map(|_| {
            let delta = if rng.below(10) < 4 {
                0
            } else {
                rng.below(full_s + 2)
            };
            let quantity = match rng.below(20) {
                0..=2 if peeks => 0,
                0..=9 => 1,
                10..=15 => 1 + rng.below(cap),
                16..=17 => cap,
                _ => cap + 1 + rng.below(5),
            };
            (delta, quantity)
        })
        .collect()
}

/// The timing guard of a sequence: a call is judged only while the real
/// time since the bucket's last full moment (`origin`: the new one, else the
/// previous one; its simulated time and when it was) is well below the
/// positions that matter (`budget`); `Err` when the bucket is not full
/// (`busy`) and that time is over `budget`.
pub fn check_timing<T>(
    busy: bool,
    origin: Option<(T, Instant)>,
    budget: Duration,
) -> Result<(), TooSlow> {
    match origin.map(|(_, at)| at.elapsed()) {
        Some(t) if busy && t > budget => Err(TooSlow(t)),
        _ => Ok(()),
    }
}

/// Runs sequence `s` under keys `seq<s>.<attempt>` until one is judged
/// (at most 5 attempts), merging its tally; the keys given up on are added
/// to `too_slow`.
pub fn run_until_judged(
    s: usize,
    tally: &mut Tally,
    too_slow: &mut Vec<String>,
    mut run: impl FnMut(&str) -> Result<Tally, TooSlow>,
) {
    let mut attempt = 0;
    loop {
        let key = format!("seq{s}.{attempt}");
        match run(&key) {
            Ok(sequence) => {
                tally.merge(sequence);
                break;
            }
            Err(TooSlow(took)) => {
                too_slow.push(format!("{key} ({took:?})"));
                attempt += 1;
                assert!(attempt < 5, "the machine is too slow: {too_slow:?}");
            }
        }
    }
}

/// Prints the tally of the sequences and those run again.
pub fn print_sequences(tally: &Tally, title: &str, too_slow: &[String]) {
    tally.print(title);
    if !too_slow.is_empty() {
        eprintln!("  sequences run again (too slow to judge): {too_slow:?}");
    }
}

/// Counts a call in `tally` and checks redis-shield's reply against exact
/// arithmetic.
pub fn check_exact(tally: &mut Tally, what: &str, ours: Reply, exact: Reply) {
    tally.calls += 1;
    assert_eq!(
        ours, exact,
        "{what}: redis-shield differs from exact arithmetic (left: redis-shield, right: exact)"
    );
}

/// Where the replies differ: counts the call, and each differing field
/// (named from `fields`) under the difference `explain(i, field,
/// ours_stricter)` returns (it panics where none explains it), with the
/// replies as the example (`reference` names the other implementation).
pub fn note_differences(
    tally: &mut Tally,
    what: &str,
    fields: &[&str; 5],
    (ours, theirs): (Reply, Reply),
    reference: &str,
    mut explain: impl FnMut(usize, &str, bool) -> String,
) {
    if ours == theirs {
        return;
    }
    tally.differing_calls += 1;
    for (i, field) in fields.iter().enumerate() {
        if ours[i] == theirs[i] {
            continue;
        }
        let difference = explain(i, field, ours_stricter(what, i, ours, theirs));
        tally.note(difference, || {
            format!("{what}: redis-shield {ours:?}, {reference} {theirs:?}")
        });
    }
}

/// What one call on a fresh key left: `stored` is the moment the bucket is
/// full again (None: no key), in units of which `ms` make a millisecond and
/// `second` a second. A call that took tokens (`drained`: their exact time)
/// stores the call's whole ms plus exactly that, or at a fast rate (under a
/// second) may have expired already; one that took none (`drained` None)
/// writes no key (`nothing_taken` says which calls those are).
pub fn check_fresh_key(
    what: &str,
    stored: Option<i128>,
    drained: Option<i128>,
    (ms, second): (i128, i128),
    nothing_taken: &str,
) {
    match (drained, stored) {
        (Some(drained), Some(at)) => assert_eq!((at - drained) % ms, 0, "{what}: stored {at}"),
        (Some(drained), None) => assert!(drained < second, "{what}: no key"),
        (None, _) => assert_eq!(stored, None, "{what}: {nothing_taken} wrote a key"),
    }
}
