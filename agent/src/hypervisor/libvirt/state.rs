//! Reading and stopping one domain: its run state, its hci owner metadata, a forced stop.
//!
//! It exists to keep libvirt's state and metadata quirks (crash reasons, namespace-less metadata,
//! transient domains) out of the trait implementation. It must never change a domain other than
//! through [`destroy`], which only the shutdown and undefine paths call.

use hci_shared::agent::VmRunState;
use virt::connect::Connect;
use virt::domain::{Domain, DomainShutoffReason, DomainState, DomainStateReason};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use super::conn::{code_is, not_running, Failure, Step};
use crate::hypervisor::domain_xml::{self, HCI_NAMESPACE};
use crate::hypervisor::DomainOwner;

pub(super) fn lookup(conn: &Connect, name: &str) -> Result<Domain, Failure> {
    conn.lookup_domain_by_name(name).step("looking it up")
}

/// The hci metadata of the domain's persistent definition (what the next start runs), or of the
/// live one for a transient domain; `None` without (valid) hci metadata.
pub(super) fn owner_of(domain: &Domain) -> Result<Option<DomainOwner>, VirtError> {
    let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
    let xml = match domain.metadata(kind, Some(HCI_NAMESPACE), sys::VIR_DOMAIN_AFFECT_CONFIG) {
        Ok(xml) => xml,
        Err(e) if code_is(&e, ErrorNumber::NoDomainMetadata) => return Ok(None),
        Err(e) if code_is(&e, ErrorNumber::OperationInvalid) => {
            // Transient domains have no persistent definition.
            match domain.metadata(kind, Some(HCI_NAMESPACE), 0) {
                Ok(xml) => xml,
                Err(e) if code_is(&e, ErrorNumber::NoDomainMetadata) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let owner = domain_xml::parse_owner(&xml);
    if owner.is_none() {
        tracing::warn!(metadata = %xml, "domain has an hci metadata element that does not parse; treating it as not owned");
    }
    Ok(owner)
}

pub(super) fn run_state(domain: &Domain) -> Result<VmRunState, VirtError> {
    let info = domain.info()?;
    Ok(match info.state {
        Enum::Known(DomainState::Running | DomainState::Blocked) => VmRunState::Running,
        Enum::Known(DomainState::Paused | DomainState::PMSuspended) => VmRunState::Paused,
        Enum::Known(DomainState::Shutdown) => VmRunState::ShuttingDown,
        Enum::Known(DomainState::Crashed) => VmRunState::Crashed,
        Enum::Known(DomainState::Shutoff) => {
            // on_crash=destroy leaves a crashed guest shut off with reason "crashed".
            let crashed = matches!(
                domain.state(),
                Ok((_, Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Crashed)))))
            );
            if crashed {
                VmRunState::Crashed
            } else {
                VmRunState::Stopped
            }
        }
        Enum::Known(DomainState::NoState) | Enum::Unknown(_) => {
            if domain.is_active()? {
                VmRunState::Running
            } else {
                VmRunState::Stopped
            }
        }
    })
}

/// Stops a running domain at once; a domain that stopped meanwhile is fine.
pub(super) fn destroy(domain: &Domain) -> Result<(), Failure> {
    match domain.destroy() {
        Ok(()) => Ok(()),
        Err(e) if not_running(&e) => Ok(()),
        Err(e) => Err(Failure::Libvirt { action: "destroying (forced stop)", err: e }),
    }
}
