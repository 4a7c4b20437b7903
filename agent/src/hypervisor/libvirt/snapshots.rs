//! Disk-only external snapshots through libvirt, with the file layout of [`layers`]: the agent puts
//! the new overlays in place under the disks' own file names, then asks libvirt for a
//! `DISK_ONLY | ATOMIC | REUSE_EXT` snapshot at those same names, which (for a running domain)
//! switches QEMU to them and records the snapshot's metadata. Revert (libvirt 9.0 cannot revert
//! external snapshots) works on the files of a stopped domain and then drops the metadata.
//!
//! It must never undo file steps after libvirt may have switched a running QEMU to the new overlays
//! (that would lose the guest's writes since), and never revert a running domain.

use virt::connect::Connect;
use virt::domain::Domain;
use virt::domain_snapshot::DomainSnapshot;
use virt::error::ErrorNumber;
use virt::sys;

use super::conn::{code_is, maybe_connection_lost, Failure, Step, Subject};
use super::disk_xml;
use super::state::lookup;
use crate::hypervisor::{layers, HypervisorError};

fn fail(domain: &str, snapshot: &str, action: &'static str, message: String) -> Failure {
    Failure::Other(HypervisorError::Snapshot {
        domain: domain.to_string(),
        snapshot: snapshot.to_string(),
        action,
        message,
    })
}

fn find(domain: &Domain, snapshot: &str) -> Result<Option<DomainSnapshot>, Failure> {
    match Domain::lookup_snapshot_by_name(domain, snapshot, 0) {
        Ok(snap) => Ok(Some(snap)),
        Err(e) if code_is(&e, ErrorNumber::NoDomainSnapshot) => Ok(None),
        Err(e) => Err(Failure::About { subject: Subject::Snapshot(snapshot.into()), action: "looking it up", err: e }),
    }
}

/// Removes the `<backingStore>` elements a `REUSE_EXT` snapshot leaves in the persistent definition
/// (they name the new overlay's own file), so it is again what `domain_xml::render` wrote.
fn clean_config(conn: &Connect, domain: &Domain) -> Result<(), Failure> {
    if !domain.is_persistent().step("reading whether it is persistent")? {
        return Ok(());
    }
    let xml = domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).step("reading its persistent XML")?;
    let name = domain.name().step("reading its name")?;
    match disk_xml::strip_backing_stores(&xml) {
        Ok(Some(clean)) => {
            conn.define_domain_xml_flags(&clean, sys::VIR_DOMAIN_DEFINE_VALIDATE)
                .step("redefining it without the snapshot's backing stores")?;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(message) => {
            Err(Failure::Other(HypervisorError::Domain { domain: name, action: "reading its disks", message }))
        }
    }
}

pub(super) fn create(conn: &Connect, name: &str, snapshot: &str) -> Result<(), Failure> {
    layers::check_snapshot_name(snapshot).map_err(|m| fail(name, snapshot, "creating", m))?;
    let domain = lookup(conn, name)?;
    if find(&domain, snapshot)?.is_some() {
        return clean_config(conn, &domain);
    }
    let running = domain.is_active().step("reading its state")?;
    let xml = domain.xml_desc(if running { 0 } else { sys::VIR_DOMAIN_XML_INACTIVE }).step("reading its XML")?;
    let disks = disk_xml::disks(&xml).map_err(|m| fail(name, snapshot, "reading its disks", m))?;
    if disks.is_empty() {
        return Err(fail(name, snapshot, "creating", "the domain has no disks".into()));
    }
    let mut files = Vec::new();
    for disk in &disks {
        match (&disk.source, disk.kind.as_str(), disk.format.as_deref()) {
            (Some(file), "file", Some("qcow2")) => files.push((disk.target.clone(), file.clone())),
            _ => {
                return Err(fail(
                    name,
                    snapshot,
                    "creating",
                    format!(
                        "disk {} is a {} {} disk; only qcow2 files can take a disk-only snapshot (nothing was changed)",
                        disk.target,
                        disk.format.as_deref().unwrap_or("?"),
                        disk.kind
                    ),
                ))
            }
        }
    }
    for (i, (target, file)) in files.iter().enumerate() {
        if let Err(e) = layers::push_layer(std::path::Path::new(file), snapshot) {
            if !running {
                undo(&files[..i], snapshot);
            }
            return Err(fail(name, snapshot, "preparing the overlay", format!("disk {target} ({file}): {e}")));
        }
    }
    let flags = sys::VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        | sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        | sys::VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT;
    if let Err(err) = domain.create_snapshot_xml(&disk_xml::snapshot_request(snapshot, &files), flags) {
        // A running QEMU may already write to the new overlays if libvirt got that far: then the
        // files stay (they read the same data either way) and a retry finishes the snapshot.
        let refused = !running && !maybe_connection_lost(&err) && matches!(find(&domain, snapshot), Ok(None));
        if refused {
            undo(&files, snapshot);
        }
        return Err(Failure::About { subject: Subject::Snapshot(snapshot.into()), action: "creating", err });
    }
    clean_config(conn, &domain)
}

/// Best effort: puts back what `push_layer` did for `files` of a stopped domain.
fn undo(files: &[(String, String)], snapshot: &str) {
    for (target, file) in files {
        if let Err(e) = layers::pop_layer(std::path::Path::new(file), snapshot) {
            tracing::warn!(target, file, snapshot, error = %e, "could not undo a snapshot overlay");
        }
    }
}

pub(super) fn list(conn: &Connect, name: &str) -> Result<Vec<String>, Failure> {
    let domain = lookup(conn, name)?;
    let mut infos = Vec::new();
    for snap in domain.list_all_snapshots(0).step("listing its snapshots")? {
        let xml = match snap.xml_desc(0) {
            Ok(xml) => xml,
            // Deleted since the listing.
            Err(e) if code_is(&e, ErrorNumber::NoDomainSnapshot) => continue,
            Err(e) => return Err(Failure::Libvirt { action: "reading a snapshot", err: e }),
        };
        infos.push(disk_xml::parse_snapshot(&xml).map_err(|m| {
            Failure::Other(HypervisorError::Domain { domain: name.into(), action: "reading a snapshot", message: m })
        })?);
    }
    Ok(disk_xml::oldest_first(infos))
}

pub(super) fn revert(conn: &Connect, name: &str, snapshot: &str) -> Result<(), Failure> {
    let domain = lookup(conn, name)?;
    if domain.is_active().step("reading its state")? {
        return Err(fail(
            name,
            snapshot,
            "reverting",
            "the domain is running; external snapshots are reverted only while it is stopped".into(),
        ));
    }
    let Some(snap) = find(&domain, snapshot)? else {
        return Err(Failure::Other(HypervisorError::NoSuchSnapshot { domain: name.into(), snapshot: snapshot.into() }));
    };
    let subject = Subject::Snapshot(snapshot.into());
    let info = disk_xml::parse_snapshot(&snap.xml_desc(0).step_about(&subject, "reading it")?)
        .map_err(|m| fail(name, snapshot, "reading it", m))?;
    let config = domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).step("reading its persistent XML")?;
    let disks = disk_xml::disks(&config).map_err(|m| fail(name, snapshot, "reading its disks", m))?;
    for (target, file) in &info.disks {
        if !disks.iter().any(|d| d.target == *target && d.source.as_deref() == Some(file.as_str())) {
            return Err(fail(
                name,
                snapshot,
                "reverting",
                format!("its disk {target} ({file}) is no longer attached at {target}; nothing was changed"),
            ));
        }
    }
    let later = snap
        .list_all_children(sys::VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS)
        .step_about(&subject, "listing the later snapshots")?;
    for (target, file) in &info.disks {
        let deleted = layers::revert_layer(std::path::Path::new(file), snapshot)
            .map_err(|e| fail(name, snapshot, "reverting a disk", format!("disk {target} ({file}): {e}")))?;
        tracing::info!(domain = name, snapshot, target, ?deleted, "disk reverted");
    }
    for child in later {
        match child.delete(sys::VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY) {
            Err(e) if !code_is(&e, ErrorNumber::NoDomainSnapshot) => {
                return Err(Failure::About { subject, action: "forgetting a later snapshot", err: e })
            }
            _ => {}
        }
    }
    snap.delete(sys::VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY).step_about(&subject, "forgetting it")?;
    clean_config(conn, &domain)
}
