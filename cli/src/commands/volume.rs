//! `hcictl volume`: block volumes, their snapshots and clones.

use clap::Subcommand;
use hci_shared::api::{VolumeClone, VolumeCreate, VolumeResize, VolumeSnapshotCreate};
use hci_shared::resources::{DiskFormat, ImageSource, Volume};
use reqwest::Method;

use crate::client::{Call, Client, Reply};
use crate::commands::{etag_arg, label, Target};
use crate::error::CliError;
use crate::output::{of_tenant, Format, Output};
use crate::resolve::{resolve, VOLUME};

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume (with --image: a bootable copy of that image, grown to --size-gib)
    Create {
        /// The volume's name (unique within the tenant)
        name: String,
        /// The tenant that owns the volume
        #[arg(long)]
        tenant: String,
        /// Size in GiB
        #[arg(long)]
        size_gib: u64,
        /// Storage pool
        #[arg(long, default_value = "default")]
        pool: String,
        /// Image to make the volume bootable from
        #[arg(long)]
        image: Option<String>,
        /// Make it a bootable copy of the image at this URL (file:///..., http(s)://...)
        #[arg(long, value_name = "URL", requires = "source_sha256")]
        source_url: Option<String>,
        /// The SHA-256 the image at --source-url must have
        #[arg(long, value_name = "HEX", requires = "source_url")]
        source_sha256: Option<String>,
        /// The image's format: qcow2 or raw
        #[arg(long, value_name = "FORMAT", default_value = "qcow2", value_parser = ["qcow2", "raw"])]
        source_format: String,
    },
    /// List volumes
    List {
        /// Only this tenant's volumes
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one volume
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a volume (it must not be attached)
    Delete {
        #[command(flatten)]
        target: Target,
        /// Only delete if the volume's ETag is still this
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Grow a volume
    Resize {
        #[command(flatten)]
        target: Target,
        /// The new size
        #[arg(long)]
        size_gib: u64,
        /// Only resize if the volume's ETag is still this
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Take a point-in-time snapshot
    Snapshot {
        #[command(flatten)]
        target: Target,
        /// The snapshot's name
        #[arg(long)]
        name: String,
    },
    /// Make a new volume from this one
    Clone {
        #[command(flatten)]
        target: Target,
        /// The new volume's name
        #[arg(long)]
        name: String,
    },
}

fn id_of(client: &Client, target: &Target) -> Result<String, CliError> {
    resolve(client, VOLUME, &target.id, target.tenant.as_deref())
}

pub fn run(cmd: VolumeCmd, client: &Client, out: &mut Output) -> Result<(), CliError> {
    match cmd {
        VolumeCmd::Create { name, tenant, size_gib, pool, image, source_url, source_sha256, source_format } => {
            let format = if source_format == "raw" { DiskFormat::Raw } else { DiskFormat::Qcow2 };
            let source = match (source_url, source_sha256) {
                (Some(url), Some(sha256)) => Some(ImageSource { url, sha256, format }),
                _ => None,
            };
            let body = VolumeCreate { name, tenant, size_gib, pool, image, source };
            out.one::<Volume>(&client.post(&["v1", "volumes"], &body)?, false)
        }
        VolumeCmd::List { tenant } => {
            out.list::<Volume>(&client.get(&["v1", "volumes"])?, &of_tenant(tenant.as_deref()))
        }
        VolumeCmd::Show { target } => {
            let id = id_of(client, &target)?;
            out.one::<Volume>(&client.get(&["v1", "volumes", &id])?, true)
        }
        VolumeCmd::Delete { target, if_match } => {
            let id = id_of(client, &target)?;
            client.delete(&["v1", "volumes", &id], etag_arg(if_match))?;
            out.done(&format!("deleted volume {}", label(&target.id, &id)))
        }
        VolumeCmd::Resize { target, size_gib, if_match } => {
            let id = id_of(client, &target)?;
            let call = Call::new(Method::POST, &["v1", "volumes", &id, "resize"])
                .json(&VolumeResize { size_gib })?
                .if_match(etag_arg(if_match));
            volume_or_any(out, &client.send(call)?)
        }
        VolumeCmd::Snapshot { target, name } => {
            let id = id_of(client, &target)?;
            let reply = client.post(&["v1", "volumes", &id, "snapshot"], &VolumeSnapshotCreate { name })?;
            volume_or_any(out, &reply)
        }
        VolumeCmd::Clone { target, name } => {
            let id = id_of(client, &target)?;
            out.one::<Volume>(&client.post(&["v1", "volumes", &id, "clone"], &VolumeClone { name })?, false)
        }
    }
}

/// Resize and snapshot answers are not pinned down by the contract: show a volume when it is one.
fn volume_or_any(out: &mut Output, reply: &Reply) -> Result<(), CliError> {
    if out.format == Format::Table && reply.decode::<Volume>().is_ok() {
        return out.one::<Volume>(reply, false);
    }
    out.generic(reply)
}
