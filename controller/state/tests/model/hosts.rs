//! Join tokens, joins and liveness: single use, expiry, credentials, re-joins, and transitions that
//! never touch maintenance or fenced hosts.

use hci_shared::command::{Applied, Command, JoinAuth};
use hci_shared::hosts::{HostInventory, HostJoin, HostPool};
use hci_shared::resources::{Host, HostState};
use hci_shared::{codec, ErrorCode};
use hci_state::Model;

use crate::support::*;

const TOKEN: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const TOKEN2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const CRED: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CRED2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// An hour after [`AT`].
const LATER: &str = "2025-03-01T13:00:00.000Z";

fn bootstrapped() -> Harness {
    let mut h = Harness::new();
    h.ok(Command::Bootstrap { site: "primary".into(), admin_token_sha256: "f".repeat(64) });
    h
}

fn create_token(sha256: &str, expires_at: &str) -> Command {
    Command::CreateJoinToken { sha256: sha256.into(), site: "primary".into(), expires_at: expires_at.into() }
}

fn spec(id: &str, cpus: u32) -> HostJoin {
    HostJoin {
        host_id: id.into(),
        site: "primary".into(),
        arch: "x86_64".into(),
        agent_url: "http://10.0.0.1:7100".into(),
        inventory: HostInventory {
            cpus,
            memory_mib: 4096,
            accelerator: "tcg".into(),
            libvirt_version: "9.0.0".into(),
            pools: vec![HostPool {
                name: "default".into(),
                backend: "dir-qcow2".into(),
                capacity_bytes: 10,
                allocation_bytes: 1,
                available_bytes: 9,
            }],
            firmware_profiles: vec!["x86_64-bios".into()],
            ..Default::default()
        },
    }
}

fn token_join(token: &str, credential: &str, spec: HostJoin) -> Command {
    Command::JoinHost {
        auth: JoinAuth::Token { sha256: token.into() },
        new_credential_sha256: Some(credential.into()),
        spec,
    }
}

fn credential_join(credential: &str, spec: HostJoin) -> Command {
    Command::JoinHost { auth: JoinAuth::Credential { sha256: credential.into() }, new_credential_sha256: None, spec }
}

fn liveness(id: &str, alive: bool) -> Command {
    Command::SetHostLiveness { id: id.into(), alive, reason: if alive { "heartbeat" } else { "lease expired" }.into() }
}

fn as_host(applied: Applied) -> Host {
    match applied {
        Applied::Host(h) => h,
        other => panic!("expected a host, got {other:?}"),
    }
}

#[test]
fn a_token_joins_one_host_once() {
    let mut h = bootstrapped();
    h.ok(create_token(TOKEN, LATER));
    assert!(h.model.join_token(TOKEN).is_some_and(|t| t.used_by.is_none() && t.created_by == "admin"));
    let host = as_host(h.ok(token_join(TOKEN, CRED, spec("h1", 4))));
    assert_eq!((host.state, host.joined_at.as_str(), host.revision), (HostState::Ready, AT, h.index));
    assert_eq!((host.desired_generation, host.inventory.cpus, host.name.as_str()), (h.index, 4, "h1"));
    assert_eq!(h.model.host_for_credential(CRED), Some("h1"));
    assert_eq!(h.model.join_token(TOKEN).and_then(|t| t.used_by.as_deref()), Some("h1"));

    let e = h.refused(token_join(TOKEN, CRED2, spec("h2", 4)));
    assert_refusal(&e, ErrorCode::Forbidden, &["already used by host 'h1'", "create a new one"]);
    assert!(h.model.host("h2").is_none());
    let e = h.refused(token_join(TOKEN2, CRED2, spec("h2", 4)));
    assert_refusal(&e, ErrorCode::Unauthorized, &["unknown join token"]);
}

#[test]
fn an_expired_token_is_refused_and_forgotten_a_day_later() {
    let mut h = bootstrapped();
    h.ok(create_token(TOKEN, LATER));
    h.at = LATER.to_string();
    let e = h.refused(token_join(TOKEN, CRED, spec("h1", 4)));
    assert_refusal(&e, ErrorCode::Forbidden, &["expired at 2025-03-01T13:00:00.000Z"]);
    h.at = "2025-03-02T12:59:59Z".to_string();
    h.ok(create_token(TOKEN2, "2025-03-03T00:00:00Z"));
    assert!(h.model.join_token(TOKEN).is_some(), "kept for a day after expiry");
    h.at = "2025-03-02T13:00:01Z".to_string();
    h.ok(create_token(&"3".repeat(64), "2025-03-03T00:00:00Z"));
    assert!(h.model.join_token(TOKEN).is_none(), "forgotten");
    assert!(h.model.join_token(TOKEN2).is_some());
    let e = h.refused(create_token(&"4".repeat(64), "2025-03-02T13:00:00Z"));
    assert_invalid(&e, "expires_at", &["not in the future"]);
    let e = h.refused(create_token(TOKEN2, "2025-03-04T00:00:00Z"));
    assert_refusal(&e, ErrorCode::Conflict, &["already exists"]);
    let e = h.refused(create_token("ABC", "2025-03-04T00:00:00Z"));
    assert_invalid(&e, "sha256", &["64 lowercase"]);
}

#[test]
fn bad_bodies_and_sites_are_refused_without_using_the_token() {
    let mut h = bootstrapped();
    h.ok(Command::CreateJoinToken { sha256: TOKEN.into(), site: "dr".into(), expires_at: LATER.into() });
    let e = h.refused(token_join(TOKEN, CRED, spec("h1", 4)));
    assert_invalid(&e, "site", &["for site 'dr'"]);
    let e = h.refused(token_join(TOKEN, CRED, spec("h1", 0)));
    assert_invalid(&e, "inventory.cpus", &[]);
    let e = h.refused(Command::JoinHost {
        auth: JoinAuth::Token { sha256: TOKEN.into() },
        new_credential_sha256: None,
        spec: HostJoin { site: "dr".into(), ..spec("h1", 4) },
    });
    assert_invalid(&e, "new_credential_sha256", &[]);
    assert!(h.model.join_token(TOKEN).is_some_and(|t| t.used_by.is_none()), "still unused");
    h.ok(token_join(TOKEN, CRED, HostJoin { site: "dr".into(), ..spec("h1", 4) }));
}

#[test]
fn a_credential_rejoins_and_updates_only_its_own_host() {
    let mut h = bootstrapped();
    h.ok(create_token(TOKEN, LATER));
    h.ok(create_token(TOKEN2, LATER));
    h.ok(token_join(TOKEN, CRED, spec("h1", 4)));
    h.ok(token_join(TOKEN2, CRED2, spec("h2", 4)));
    let first = h.model.host("h1").cloned().expect("h1");
    assert_eq!(first.desired_generation, h.index, "a new host is a new peer of h1");

    let same = as_host(h.ok(credential_join(CRED, spec("h1", 4))));
    assert_eq!(same, first, "nothing changed");
    assert_eq!(h.record_writes(), 0);
    let grown = as_host(h.ok(credential_join(CRED, spec("h1", 8))));
    assert_eq!((grown.inventory.cpus, grown.revision, grown.joined_at.as_str()), (8, h.index, AT));
    assert_eq!(grown.desired_generation, first.desired_generation, "a re-join keeps the desired generation");

    let e = h.refused(credential_join(CRED, spec("h2", 4)));
    assert_refusal(&e, ErrorCode::Forbidden, &["belongs to host 'h1'"]);
    let e = h.refused(credential_join(&"c".repeat(64), spec("h1", 4)));
    assert_refusal(&e, ErrorCode::Unauthorized, &["unknown host credential"]);
    let e = h.refused(credential_join(CRED, HostJoin { site: "dr".into(), ..spec("h1", 4) }));
    assert_invalid(&e, "site", &["cannot change site"]);
}

#[test]
fn a_token_join_of_a_known_host_replaces_its_credential() {
    let mut h = bootstrapped();
    h.ok(create_token(TOKEN, LATER));
    h.ok(create_token(TOKEN2, LATER));
    h.ok(token_join(TOKEN, CRED, spec("h1", 4)));
    h.ok(token_join(TOKEN2, CRED2, spec("h1", 4)));
    assert_eq!(h.model.host_for_credential(CRED), None, "the old credential stops working");
    assert_eq!(h.model.host_for_credential(CRED2), Some("h1"));
    assert_eq!(h.model.hosts().count(), 1);
}

#[test]
fn liveness_moves_only_between_ready_and_offline() {
    let mut h = bootstrapped();
    h.ok(create_token(TOKEN, LATER));
    h.ok(token_join(TOKEN, CRED, spec("h1", 4)));
    let offline = as_host(h.ok(liveness("h1", false)));
    assert_eq!(
        (offline.state, offline.state_reason.as_str(), offline.revision),
        (HostState::Offline, "lease expired", h.index)
    );
    h.ok(liveness("h1", false));
    assert_eq!(h.record_writes(), 0, "already offline");
    let back = as_host(h.ok(credential_join(CRED, spec("h1", 4))));
    assert_eq!((back.state, back.state_reason.as_str()), (HostState::Ready, "re-joined"));
    h.ok(liveness("h1", false));
    assert_eq!(as_host(h.ok(liveness("h1", true))).state, HostState::Ready);

    for state in [HostState::Maintenance, HostState::Fenced] {
        let key = b"host/h1".to_vec();
        let mut host: Host = codec::decode(&h.store[&key]).expect("decodes");
        host.state = state;
        h.store.insert(key, codec::encode(&host).expect("encodes"));
        h.model = Model::load(h.store.clone()).expect("loads");
        for alive in [false, true] {
            assert_eq!(as_host(h.ok(liveness("h1", alive))).state, state);
            assert_eq!(h.record_writes(), 0);
        }
        assert_eq!(as_host(h.ok(credential_join(CRED, spec("h1", 4)))).state, state, "a re-join keeps {state:?}");
    }
    assert_eq!(h.refused(liveness("h9", false)).code, ErrorCode::NotFound);
    let e = h.refused(Command::SetHostLiveness { id: "h1".into(), alive: false, reason: "a\nb".into() });
    assert_invalid(&e, "reason", &[]);
}
