//! Live migration of one domain to another host's libvirt, peer-to-peer: this host's libvirtd
//! connects to the target's and drives the whole migration itself, so it completes (or is rolled
//! back) even when the agent dies halfway, and the agent, when it comes back, finds the domain either
//! still here (and retries) or gone (and reports it departed).
//!
//! It exists to keep libvirt's migration flags and parameters in one place. It must never start the
//! domain anywhere: libvirt's migration pauses the source only for the switch-over and stops it once
//! the target runs, which is what guarantees the VM never runs on two hosts.

use virt::connect::Connect;
use virt::domain::MigrateParameters;
use virt::sys;

use super::conn::{Failure, Step};
use super::state::lookup;
use crate::hypervisor::{HypervisorError, MigrationTarget};

/// Live, peer-to-peer, persistent on the target and undefined here on success; an I/O error on the
/// source during the migration cancels it instead of pausing the guest.
const FLAGS: u32 = sys::VIR_MIGRATE_LIVE
    | sys::VIR_MIGRATE_PEER2PEER
    | sys::VIR_MIGRATE_PERSIST_DEST
    | sys::VIR_MIGRATE_UNDEFINE_SOURCE
    | sys::VIR_MIGRATE_ABORT_ON_ERROR;

pub(super) fn migrate(conn: &Connect, name: &str, target: &MigrationTarget) -> Result<(), Failure> {
    let domain = lookup(conn, name)?;
    if !domain.is_active().step("reading its state")? {
        return Err(Failure::Other(HypervisorError::Migration {
            domain: name.to_string(),
            target: target.libvirt_uri.clone(),
            message: "it is not running; live migration needs a running domain".into(),
        }));
    }
    // Local disks are mirrored to the target's volumes over NBD while the guest runs; incremental: the
    // target's volumes already hold the image they were made from.
    let flags = if target.copy_disks.is_empty() { FLAGS } else { FLAGS | sys::VIR_MIGRATE_NON_SHARED_INC };
    let params = MigrateParameters {
        dest_name: Some(target.domain_name.clone()),
        dest_xml: Some(target.domain_xml.clone()),
        // What the target persists (PERSIST_DEST); without it libvirt would persist the source's
        // definition, with the source's files and hci owner.
        persist_xml: Some(target.domain_xml.clone()),
        uri: target.migration_uri.clone(),
        migrate_disks: target.copy_disks.clone(),
        ..MigrateParameters::default()
    };
    domain.migrate_to_uri3(Some(&target.libvirt_uri), params, flags).map_err(|e| {
        Failure::Other(HypervisorError::Migration {
            domain: name.to_string(),
            target: target.libvirt_uri.clone(),
            message: e.message().to_string(),
        })
    })
}
