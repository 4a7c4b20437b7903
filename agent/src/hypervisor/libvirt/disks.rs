//! Disk hotplug: attach and detach one disk, live (`VIR_DOMAIN_AFFECT_LIVE`) while the domain runs
//! and in the persistent definition (`AFFECT_CONFIG`), each side only where it is not done yet, so
//! every call is idempotent and a half-done one is finished by the next.
//!
//! A live detach is only a request to the guest: libvirt waits 5 s for the guest to release the
//! device and then returns success anyway, so this code polls the live XML until the target is gone,
//! up to a deadline. It must never touch a disk other than the named target, and never leave the
//! persistent definition without a disk the running guest still has (live first, config after).

use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use super::conn::{Failure, Step, Subject};
use super::disk_xml::{self, DiskEntry};
use super::state::lookup;
use crate::hypervisor::{domain_xml, DiskSpec, HypervisorError};

/// How often a detach looks whether the guest has released the disk.
const DETACH_POLL: Duration = Duration::from_millis(100);

fn xml_error<'a>(domain: &'a str, target: &str, action: &'static str) -> impl Fn(String) -> Failure + 'a {
    let target = target.to_string();
    move |message| {
        Failure::Other(HypervisorError::Disk { domain: domain.to_string(), target: target.clone(), action, message })
    }
}

fn live_xml(domain: &Domain) -> Result<String, Failure> {
    domain.xml_desc(0).step("reading its live XML")
}

fn config_xml(domain: &Domain) -> Result<String, Failure> {
    domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).step("reading its persistent XML")
}

/// Whether `disk` is already at its target in `xml`; an error when another disk is.
fn present(name: &str, side: &str, xml: &str, disk: &DiskSpec) -> Result<(bool, bool), Failure> {
    let disks = disk_xml::disks(xml).map_err(xml_error(name, &disk.target, "attaching"))?;
    let wanted = disk_xml::source_key(&disk.source);
    match disks.iter().find(|d| d.target == disk.target) {
        None => Ok((false, disks.is_empty())),
        Some(DiskEntry { source: Some(source), .. }) if *source == wanted => Ok((true, false)),
        Some(other) => Err(Failure::Other(HypervisorError::Disk {
            domain: name.to_string(),
            target: disk.target.clone(),
            action: "attaching",
            message: format!(
                "the {side} definition has another disk there ({}); refusing to replace it with {wanted}",
                other.source.as_deref().unwrap_or("no source")
            ),
        })),
    }
}

pub(super) fn attach(conn: &Connect, name: &str, disk: &DiskSpec) -> Result<(), Failure> {
    let domain = lookup(conn, name)?;
    let subject = Subject::Disk(disk.target.clone());
    if domain.is_active().step("reading its state")? {
        let (done, first) = present(name, "running", &live_xml(&domain)?, disk)?;
        if !done {
            let device = domain_xml::disk_device(disk, first);
            domain
                .attach_device_flags(&device, sys::VIR_DOMAIN_AFFECT_LIVE)
                .step_about(&subject, "attaching to the running guest")?;
        }
    }
    if domain.is_persistent().step("reading whether it is persistent")? {
        let (done, first) = present(name, "persistent", &config_xml(&domain)?, disk)?;
        if !done {
            let device = domain_xml::disk_device(disk, first);
            domain
                .attach_device_flags(&device, sys::VIR_DOMAIN_AFFECT_CONFIG)
                .step_about(&subject, "adding to the persistent definition")?;
        }
    }
    Ok(())
}

pub(super) fn detach(conn: &Connect, name: &str, target: &str, timeout: Duration) -> Result<(), Failure> {
    let domain = lookup(conn, name)?;
    let subject = Subject::Disk(target.to_string());
    let live_element = |domain: &Domain| -> Result<Option<String>, Failure> {
        if !domain.is_active().step("reading its state")? {
            return Ok(None);
        }
        disk_xml::disk_element(&live_xml(domain)?, target).map_err(xml_error(name, target, "detaching"))
    };
    if let Some(element) = live_element(&domain)? {
        let started = Instant::now();
        if let Err(err) = domain.detach_device_flags(&element, sys::VIR_DOMAIN_AFFECT_LIVE) {
            // Released or stopped meanwhile: the next look tells.
            if live_element(&domain)?.is_some() {
                return Err(Failure::About { subject, action: "detaching from the running guest", err });
            }
        }
        while live_element(&domain)?.is_some() {
            if started.elapsed() >= timeout {
                return Err(Failure::Other(HypervisorError::Disk {
                    domain: name.to_string(),
                    target: target.to_string(),
                    action: "detaching from the running guest",
                    message: format!(
                        "the guest did not release it within {timeout:?}; the unplug request stays pending and \
                         the persistent definition still has the disk"
                    ),
                }));
            }
            std::thread::sleep(DETACH_POLL);
        }
    }
    if domain.is_persistent().step("reading whether it is persistent")? {
        let config = config_xml(&domain)?;
        if let Some(element) = disk_xml::disk_element(&config, target).map_err(xml_error(name, target, "detaching"))? {
            domain
                .detach_device_flags(&element, sys::VIR_DOMAIN_AFFECT_CONFIG)
                .step_about(&subject, "removing from the persistent definition")?;
        }
    }
    Ok(())
}
