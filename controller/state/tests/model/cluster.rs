//! Bootstrap and the audit record.

use hci_shared::command::{Applied, Command};
use hci_shared::ErrorCode;
use hci_state::{Role, ADMIN_CALLER};

use crate::support::*;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn bootstrap(site: &str, hash: &str) -> Command {
    Command::Bootstrap { site: site.to_string(), admin_token_sha256: hash.to_string() }
}

#[test]
fn bootstrap_stores_site_and_admin_token() {
    let mut h = Harness::new();
    assert!(!h.model.is_bootstrapped());
    assert_eq!(h.ok(bootstrap("dc-north", HASH)), Applied::Bootstrapped);
    assert!(h.model.is_bootstrapped());
    assert_eq!(h.model.site(), Some("dc-north"));
    assert_eq!(h.model.caller_for_token(HASH), Some(ADMIN_CALLER));
    assert_eq!(h.model.token(HASH).map(|t| t.role), Some(Role::Admin));
    assert_eq!(h.model.caller_for_token(&"0".repeat(64)), None);
}

#[test]
fn second_bootstrap_is_a_conflict() {
    let mut h = Harness::new();
    h.ok(bootstrap("dc-north", HASH));
    let e = h.refused(bootstrap("dc-south", &"a".repeat(64)));
    assert_refusal(&e, ErrorCode::Conflict, &["already bootstrapped", "dc-north"]);
    assert_eq!(h.model.site(), Some("dc-north"));
}

#[test]
fn bootstrap_refuses_a_malformed_hash_or_site() {
    let mut h = Harness::new();
    let e = h.refused(bootstrap("dc-north", "ABC"));
    assert_invalid(&e, "admin_token_sha256", &["64 lowercase"]);
    let e = h.refused(bootstrap("Bad Site", HASH));
    assert_invalid(&e, "site", &[]);
    assert!(!h.model.is_bootstrapped());
}

#[test]
fn refusals_are_audited_with_their_code() {
    let mut h = Harness::new();
    // The harness decodes the audit record and checks seq, time, caller, action, target, outcome.
    let e = h.refused(Command::DeleteVm { id: "nope".to_string(), if_match: None });
    assert_refusal(&e, ErrorCode::NotFound, &["vm 'nope' does not exist"]);
    assert_eq!(h.index, 1);
    assert_eq!(h.record_writes(), 0);
}
