//! Membership changes through the API: removing a follower and then the leader leaves a working
//! cluster; refusals (unknown member, last voter, already a voter) are clean 4xx answers.

use std::time::Duration;

use hci_tests::{create_tenant, poll, Cluster};
use serde_json::json;

fn voters(c: &Cluster, member: u64) -> Vec<u64> {
    let status = c.status(member).expect("cluster status");
    status.members.iter().filter(|m| m.role != "learner").map(|m| m.id).collect()
}

#[test]
fn remove_follower_then_leader_keeps_serving() {
    let c = Cluster::start(3);
    let api = c.api();
    let leader = c.wait_for_leader(Duration::from_secs(10));
    let follower = c.followers()[0];

    // Adding an existing voter is refused; so are unknown and malformed ids.
    let again = api.post_json(leader, "/v1/cluster/members", &json!({"id": follower, "addr": c.addr(follower)}));
    assert_eq!(again.status, 409, "{again}");
    assert_eq!(api.delete(leader, "/v1/cluster/members/99", None).status, 404);
    let bad = api.delete(leader, "/v1/cluster/members/abc", None);
    assert_eq!(bad.status, 400, "{bad}");

    // Remove a follower, sending the request to the other follower (forwarded to the leader).
    let other = c.ids().into_iter().find(|id| *id != leader && *id != follower).expect("third member");
    api.delete(other, &format!("/v1/cluster/members/{follower}"), None).expect(200, "remove follower");
    poll("two voters", Duration::from_secs(10), || {
        let v = voters(&c, leader);
        if v.len() == 2 && !v.contains(&follower) {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
    create_tenant(api, leader, "after-remove-follower");

    // Remove the leader itself: the last remaining member takes over alone.
    api.delete(leader, &format!("/v1/cluster/members/{leader}"), None).expect(200, "remove leader");
    poll("the remaining member leads alone", Duration::from_secs(15), || {
        let s = c.status(other)?;
        if s.leader_id == Some(other) && voters(&c, other) == vec![other] {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    create_tenant(api, other, "after-remove-leader");
    let names = api.get(other, "/v1/tenants").expect(200, "tenants").names();
    assert!(names.contains(&"after-remove-follower".to_string()) && names.contains(&"after-remove-leader".to_string()));

    // The last voter cannot be removed.
    let last = api.delete(other, &format!("/v1/cluster/members/{other}"), None);
    assert_eq!(last.status, 409, "{last}");
}
