//! The etcd test kit itself (`tests/support/etcd.rs`): a real three-member etcd cluster on
//! loopback keeps serving reads and writes through the loss of one member, and the member,
//! restarted on its own data, catches up and serves what was written while it was down.
//!
//! Ignored by default: it needs Debian's etcd-server and etcd-client, which `.ci/run`
//! installs before running `cargo test -- --ignored`; run without them it fails, saying so.
mod support;

use std::time::Instant;

use support::etcd::{EtcdCluster, output_text};

#[test]
#[ignore = "needs etcd-server and etcd-client (apt-get install etcd-server etcd-client; .ci/run does)"]
fn a_three_member_cluster_keeps_a_quorum_through_the_loss_of_one_member() {
    let t0 = Instant::now();
    let mut etcd = EtcdCluster::start(3);
    let started = t0.elapsed();
    assert_eq!(etcd.endpoints().len(), 3);
    let list = etcd.toml_list();
    assert!(list.starts_with("[\"http://127.0.0.1:") && list.ends_with("\"]"), "{list}");
    assert_eq!(list.matches("http://127.0.0.1:").count(), 3, "{list}");

    assert_eq!(etcd.get("/flowgate/kit/a"), None);
    etcd.put("/flowgate/kit/a", "one");
    assert_eq!(etcd.get("/flowgate/kit/a").as_deref(), Some("one"));

    let t1 = Instant::now();
    etcd.kill(2);
    assert!(!etcd.is_live(2) && etcd.is_live(0) && etcd.is_live(1));
    assert_eq!(etcd.endpoints().len(), 3, "killed members keep their endpoint");
    etcd.put("/flowgate/kit/b", "two, written with m2 down");
    assert_eq!(etcd.get("/flowgate/kit/b").as_deref(), Some("two, written with m2 down"));
    assert_eq!(etcd.get("/flowgate/kit/a").as_deref(), Some("one"));
    let degraded = t1.elapsed();

    let t2 = Instant::now();
    etcd.restart(2);
    let restarted = t2.elapsed();
    // Through the restarted member alone: it serves what was written while it was down.
    assert_eq!(etcd.get_at(2, "/flowgate/kit/b").as_deref(), Some("two, written with m2 down"));
    assert_eq!(etcd.get_at(2, "/flowgate/kit/a").as_deref(), Some("one"));
    // The raw etcdctl, through that member alone: `member list` is answered from its own
    // state, and shows all three members started again.
    let out = etcd.etcdctl_at(2, &["member", "list"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(list.matches(", started, ").count(), 3, "{list}");
    for (name, endpoint) in ["m0", "m1", "m2"].iter().zip(etcd.endpoints()) {
        assert!(list.contains(&format!(", started, {name}, ")) && list.contains(&endpoint), "{list}");
    }

    eprintln!(
        "etcd kit: 3 members healthy in {started:?}; put+get with one down {degraded:?}; \
         restart healthy in {restarted:?}; whole test {:?}",
        t0.elapsed()
    );
}
