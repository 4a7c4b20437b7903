//! Live migration between fakes: a fake registers the fakes it can reach by their libvirt URI
//! ([`super::FakeHypervisor::add_peer`]); a migration moves the domain record from one to the other
//! in one step (the real switch-over also leaves exactly one running instance), renamed and owned as
//! the target's domain XML says.
//!
//! It exists so reconciler tests can drive a migration between two simulated hosts without libvirt.
//! It must keep libvirt's contract: the domain must be running, and on failure it stays on the source.

use super::FakeDomain;
use crate::hypervisor::domain_xml::parse_owner_in_domain;
use crate::hypervisor::{HypervisorError, MigrationTarget};

/// A UUID for a fake domain, stable across hosts: derived from the VM id (or the name of a foreign one).
pub(super) fn uuid_of(name: &str, domain: &FakeDomain) -> String {
    use sha2::{Digest, Sha256};
    let key = domain.metadata.as_ref().map_or(name, |o| o.vm_id.as_str());
    let hex = hex::encode(Sha256::digest(format!("fake-uuid/{key}").as_bytes()));
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn refused(domain: &str, target: &MigrationTarget, message: impl Into<String>) -> HypervisorError {
    HypervisorError::Migration {
        domain: domain.to_string(),
        target: target.libvirt_uri.clone(),
        message: message.into(),
    }
}

/// Checks that `domain` (named `name`) can leave for `target`.
pub(super) fn check_departure(
    name: &str,
    domain: &FakeDomain,
    target: &MigrationTarget,
) -> Result<(), HypervisorError> {
    if !domain.active() {
        return Err(refused(name, target, "it is not running; live migration needs a running domain"));
    }
    if parse_owner_in_domain(&target.domain_xml).is_none() {
        return Err(refused(name, target, "the target's domain XML has no hci metadata"));
    }
    Ok(())
}

/// `domain` as it arrives on the target: renamed, owned and defined as the target's XML says, still
/// running the definition it ran.
pub(super) fn arrived(mut domain: FakeDomain, target: &MigrationTarget) -> FakeDomain {
    let owner = parse_owner_in_domain(&target.domain_xml);
    if let (Some(spec), Some(owner)) = (domain.spec.as_mut(), owner.as_ref()) {
        spec.name = target.domain_name.clone();
        spec.host_id = owner.host_id.clone();
        spec.generation = owner.generation;
    }
    domain.metadata = owner;
    domain
}
