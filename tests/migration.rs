//! Values written by redis-shield 1.x (an integer token count with a TTL
//! equal to the period) are read as tokens left now, then rewritten.

mod common;

use common::{absorb, Server, ServerOptions};

#[test]
fn legacy_integer_values_are_tokens_left() {
    let s = Server::start(ServerOptions::default());
    let mut c = s.conn();
    let set = |c: &mut redis::Connection, k: &str, v: i64| {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(v)
            .arg("EX")
            .arg(60)
            .query(c)
            .unwrap();
    };
    set(&mut c, "old5", 5);
    assert_eq!(absorb(&mut c, "old5", 10, 60, Some(2)), 3);
    let v: String = redis::cmd("GET").arg("old5").query(&mut c).unwrap();
    assert!(v.starts_with('~'), "rewritten in the 2.x form: {v}");
    assert_eq!(absorb(&mut c, "old5", 10, 60, Some(3)), 0);
    assert_eq!(absorb(&mut c, "old5", 10, 60, None), -1);

    // An exhausted 1.x bucket stays exhausted: a denied call leaves it as is.
    set(&mut c, "old0", 0);
    assert_eq!(absorb(&mut c, "old0", 10, 60, None), -1);
    let v: String = redis::cmd("GET").arg("old0").query(&mut c).unwrap();
    assert_eq!(v, "0");

    // A 1.x value above the capacity is clamped to it.
    set(&mut c, "oldbig", 500);
    assert_eq!(absorb(&mut c, "oldbig", 10, 60, Some(10)), 0);

    // A negative 1.x counter counts as empty.
    set(&mut c, "oldneg", -4);
    assert_eq!(absorb(&mut c, "oldneg", 10, 60, None), -1);
}
