//! Crash safety of the full apply: `nft -j -f` applying the whole table, and an agent-like process
//! applying through the [`Enforcer`] (this test binary run again as a helper), are killed with
//! SIGKILL at random moments, over and over, and after every kill the table in the kernel must be
//! exactly the old one or exactly the new one (rules, sets and every element), never missing, empty
//! or partial. Runs in its own network namespace; needs root and nft (skipped otherwise).

mod firewall_common;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firewall_common::{can_run, must, policy, run, zone};
use hci_agent::firewall::live::{shape, TableShape};
use hci_agent::firewall::model::{FirewallModel, Interface};
use hci_agent::firewall::nft::NftFirewall;
use hci_agent::firewall::ruleset::full_table;
use hci_agent::firewall::{Enforcer, Firewall};
use hci_shared::resources::Protocol;

const INTERFACES: usize = 3000;
const KILLS: usize = 30;
/// Set for the helper run of this binary: the namespace whose table it applies, forever.
const HELPER_NETNS: &str = "HCI_FIREWALL_CRASH_HELPER_NETNS";

/// Removes the namespace, even when the test fails.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

fn model(variant: u8) -> FirewallModel {
    let zones: Vec<_> = (0..8).map(|z| zone(&format!("z{z}"), &format!("10.{z}.0.0/16"), false, false)).collect();
    let mut policies = vec![policy("z0-z1", "z0", "z1", Protocol::Tcp, &[(443, 443)])];
    if variant == 1 {
        policies.push(policy("z2-z3", "z2", "z3", Protocol::Udp, &[(53, 53)]));
    }
    // Unique addresses: 10.<zone>.<2 * (i / 2000) + variant>.<2 + i / 8 % 250>.
    let interfaces = (0..INTERFACES)
        .map(|i| Interface {
            ifname: format!("v{variant}-{i}"),
            zone: format!("z{}", i % 8),
            ip: Ipv4Addr::new(10, (i % 8) as u8, (i / 2000) as u8 * 2 + variant, (i / 8 % 250) as u8 + 2),
        })
        .collect();
    FirewallModel { zones, policies, interfaces, fabric_ifaces: vec!["fab0".into()] }
}

fn live(firewall: &NftFirewall) -> Option<TableShape> {
    firewall.list().expect("list").map(|listing| shape(&listing).expect("shape"))
}

/// xorshift: random kill moments without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A new namespace (removed on drop) and nft inside it; `None` where the test cannot run.
fn scratch_namespace(tag: &str) -> Option<(Netns, NftFirewall)> {
    if !can_run() {
        return None;
    }
    let netns = Netns(format!("hf{}{tag}", std::process::id()));
    must(&["ip", "netns", "add", &netns.0]);
    let firewall = NftFirewall::in_netns(&netns.0);
    Some((netns, firewall))
}

/// The table of both models as the kernel lists them, applied once each in `netns`.
fn reference_shapes(firewall: &NftFirewall) -> Vec<TableShape> {
    let mut enforcer = Enforcer::new(Arc::new(firewall.clone()));
    [model(0), model(1)]
        .into_iter()
        .map(|m| {
            enforcer.apply(m).expect("apply");
            live(firewall).expect("table")
        })
        .collect()
}

/// Not a test of its own: the agent-like process the next test kills. Without the variable it
/// returns at once.
#[test]
fn helper_applies_both_tables_in_turn_until_killed() {
    let Ok(netns) = std::env::var(HELPER_NETNS) else { return };
    let mut enforcer = Enforcer::new(Arc::new(NftFirewall::in_netns(&netns)));
    for turn in 0.. {
        enforcer.apply(model(turn % 2)).expect("apply");
    }
}

#[test]
fn a_killed_agent_leaves_the_old_or_the_new_table() {
    let Some((netns, firewall)) = scratch_namespace("agent") else { return };
    let shapes = reference_shapes(&firewall);
    let mut seed = (u64::from(std::process::id()) * 7) | 1;
    let mut seen = [0, 0];
    for _ in 0..KILLS / 2 {
        let mut helper = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "helper_applies_both_tables_in_turn_until_killed", "--test-threads", "1"])
            .env(HELPER_NETNS, &netns.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("helper");
        std::thread::sleep(Duration::from_millis(50 + next_random(&mut seed) % 400)); // the kill moment
        let _ = helper.kill();
        let _ = helper.wait();
        // An nft the helper started may still be running: the table must be whole at every moment.
        let after = live(&firewall).expect("the table must never be missing");
        let which = shapes.iter().position(|s| *s == after);
        seen[which.expect("after killing the agent the table is neither of its two tables")] += 1;
    }
    eprintln!("{} agent kills: table 0 {} times, table 1 {} times", KILLS / 2, seen[0], seen[1]);
}

#[test]
fn a_killed_full_apply_leaves_the_old_or_the_new_table() {
    let Some((netns, firewall)) = scratch_namespace("crash") else { return };
    let models = [model(0), model(1)];
    let dir = tempfile::tempdir().expect("tempdir");
    let shapes = reference_shapes(&firewall);
    let mut files = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let file = dir.path().join(format!("table-{i}.json"));
        std::fs::write(&file, serde_json::to_vec(&full_table(m)).expect("json")).expect("write");
        files.push(file);
    }
    assert_ne!(shapes[0], shapes[1]);
    // How long one apply takes here: kills are spread over 1.5 times that.
    let started = Instant::now();
    let apply = |target: usize| {
        Command::new("ip")
            .args(["netns", "exec", &netns.0, "nft", "-j", "-f"])
            .arg(&files[target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nft")
    };
    assert!(apply(0).wait().expect("nft").success());
    let apply_time = started.elapsed();
    let mut current = 0;
    let mut seed = u64::from(std::process::id()) | 1;
    let (mut old, mut new) = (0, 0);
    for _ in 0..KILLS {
        let target = 1 - current;
        let mut nft = apply(target);
        let delay = next_random(&mut seed) % (apply_time.as_micros() as u64 * 3 / 2 + 1);
        std::thread::sleep(Duration::from_micros(delay)); // the kill moment itself is the stimulus
        let _ = nft.kill();
        let _ = nft.wait();
        let after = live(&firewall).expect("the table must never be missing");
        if after == shapes[target] {
            new += 1;
            current = target;
        } else {
            assert_eq!(after, shapes[current], "after a kill the table is neither the old nor the new one");
            old += 1;
        }
    }
    eprintln!(
        "apply of {INTERFACES} interfaces takes {apply_time:?}; {KILLS} kills: {old} left the old table, {new} the new"
    );
}
