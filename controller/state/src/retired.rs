//! Shared-pool volumes deleted through the API, kept per host for its agent to remove.
//!
//! It exists because an agent must never delete a shared-pool (Ceph RBD) volume merely for being
//! absent from its desired state: another host may be using it (a move, an HA restart). So a delete
//! on a shared pool is written down as a retirement on the volume's host, and the host's feed carries
//! it (`retired_volumes`) until it falls out of the bounded list. The agent deletes what it is told
//! and ignores what is already gone, so a retirement seen twice is harmless.

use hci_shared::agent::RetiredVolume;
use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::model::Model;

/// Retirements kept per host. An agent away for longer than this many deletes on its host misses
/// the oldest ones (left behind as unused images, never data in use).
pub const RETIRED_KEPT: usize = 256;

/// One host's retirements, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredOnHost {
    pub host_id: String,
    pub volumes: Vec<RetiredVolume>,
}

/// The change recording `volume`'s deletion on its host, when it lives on a shared pool there.
pub(crate) fn retire(model: &Model, volume: &hci_shared::resources::Volume) -> Option<Change> {
    let host = volume.host.as_deref()?;
    if !model.is_shared_pool(host, &volume.pool) {
        return None;
    }
    let mut retired = model
        .retired
        .get(host)
        .cloned()
        .unwrap_or_else(|| RetiredOnHost { host_id: host.to_string(), volumes: Vec::new() });
    retired.volumes.push(RetiredVolume { pool: volume.pool.clone(), id: volume.id.clone() });
    let excess = retired.volumes.len().saturating_sub(RETIRED_KEPT);
    retired.volumes.drain(..excess);
    Some(Change::PutRetired(retired))
}

impl Model {
    /// The shared-pool volumes deleted on host `id`, oldest first.
    pub fn retired_on(&self, id: &str) -> Vec<RetiredVolume> {
        self.retired.get(id).map(|r| r.volumes.clone()).unwrap_or_default()
    }
}
