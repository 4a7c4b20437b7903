//! `hcictl zone`: security zones, the networks VMs attach to.

use clap::{Subcommand, ValueEnum};
use hci_shared::api::ZoneCreate;
use hci_shared::resources::{IntraZone, Zone, ZoneKind};

use crate::client::Client;
use crate::commands::etag_arg;
use crate::error::CliError;
use crate::output::{of_tenant, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Reachable as zone policies allow
    Normal,
    /// Nothing in or out (DR drill bubbles)
    Isolated,
}

impl From<KindArg> for ZoneKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Normal => ZoneKind::Normal,
            KindArg::Isolated => ZoneKind::Isolated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IntraZoneArg {
    /// The zone's NICs may talk to each other
    Allow,
    /// Traffic between the zone's own NICs is dropped
    Deny,
}

impl From<IntraZoneArg> for IntraZone {
    fn from(arg: IntraZoneArg) -> Self {
        match arg {
            IntraZoneArg::Allow => IntraZone::Allow,
            IntraZoneArg::Deny => IntraZone::Deny,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ZoneCmd {
    /// Create a zone
    Create {
        /// The zone's name (unique in the site)
        name: String,
        /// The tenant that owns the zone
        #[arg(long)]
        tenant: String,
        /// IPv4 network, e.g. 10.10.0.0/24
        #[arg(long)]
        cidr: String,
        /// What may enter or leave the zone
        #[arg(long, value_enum, default_value_t = KindArg::Normal)]
        kind: KindArg,
        /// VXLAN network identifier (default: the lowest free one from 10000)
        #[arg(long)]
        vni: Option<u32>,
        /// Carry the zone between hosts on this 802.1Q VLAN (1-4094) instead of a VXLAN
        #[arg(long, conflicts_with = "vni")]
        vlan: Option<u16>,
        /// MTU of the zone's network, 576-9000 (default 1450 on a VXLAN, 1500 on a VLAN)
        #[arg(long)]
        mtu: Option<u16>,
        /// Traffic between the zone's own NICs
        #[arg(long, value_enum, default_value_t = IntraZoneArg::Allow)]
        intra_zone: IntraZoneArg,
    },
    /// List zones
    List {
        /// Only this tenant's zones
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one zone
    Show {
        /// The zone's name
        name: String,
    },
    /// Delete a zone (no NIC may use it)
    Delete {
        /// The zone's name
        name: String,
        /// Only delete if the zone's ETag is still this
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
}

pub fn run(cmd: ZoneCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        ZoneCmd::Create { name, tenant, cidr, kind, vni, vlan, mtu, intra_zone } => {
            let body =
                ZoneCreate { name, tenant, kind: kind.into(), cidr, vni, vlan, mtu, intra_zone: intra_zone.into() };
            out.one::<Zone>(&client.post(&["v1", "zones"], &body)?, false)
        }
        ZoneCmd::List { tenant } => out.list::<Zone>(&client.get(&["v1", "zones"])?, &of_tenant(tenant.as_deref())),
        ZoneCmd::Show { name } => out.one::<Zone>(&client.get(&["v1", "zones", &name])?, true),
        ZoneCmd::Delete { name, if_match } => {
            client.delete(&["v1", "zones", &name], etag_arg(if_match))?;
            out.done(&format!("deleted zone {name}"))
        }
    }
}
