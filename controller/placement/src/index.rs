//! The candidate index: which hosts have each static property (posting sets), and the ready hosts
//! of each arch and (arch, site) ordered by load.
//!
//! It exists so a placement tests one bit per host for the static filters and visits hosts best
//! first, stopping at the first that fits, instead of scoring every host. It is derived data: the
//! view keeps it in step with every host change (remove the host's entries, change the host, add
//! them back), and it must always equal `Index::build` of the hosts (the tests check that).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::host::Host;
use crate::hostset::HostSet;
use crate::model::{HostSpec, HostState};

/// The slot of a host in the view's host table.
pub(crate) type Slot = u32;

/// (ordering value, host id, slot): ordered by the value, ties by host id. The slot never decides
/// (ids are unique); it only finds the host.
pub(crate) type CandidateKey = (u64, Arc<str>, Slot);

/// Ready hosts in the two walk orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ordered {
    /// By (load, id): the walk order of spread.
    pub spread: BTreeSet<CandidateKey>,
    /// By (u64::MAX - load, id): the walk order of pack.
    pub pack: BTreeSet<CandidateKey>,
}

impl Ordered {
    fn insert(&mut self, slot: Slot, host: &Host) {
        let load = host.load_ppm();
        self.spread.insert((load, host.key.clone(), slot));
        self.pack.insert((u64::MAX - load, host.key.clone(), slot));
    }

    fn remove(&mut self, slot: Slot, host: &Host) {
        let load = host.load_ppm();
        self.spread.remove(&(load, host.key.clone(), slot));
        self.pack.remove(&(u64::MAX - load, host.key.clone(), slot));
    }
}

/// The ready hosts of one arch: all of them, and per site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ArchOrdered {
    any_site: Ordered,
    by_site: BTreeMap<String, Ordered>,
}

/// Which hosts have each static property; every set holds only live hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Postings {
    pub live: HostSet,
    pub ready: HostSet,
    pub maintenance: HostSet,
    pub offline: HostSet,
    pub fenced: HostSet,
    pub arch: BTreeMap<String, HostSet>,
    pub site: BTreeMap<String, HostSet>,
    pub firmware: BTreeMap<String, HostSet>,
    pub zones: BTreeMap<String, HostSet>,
    pub pools: BTreeMap<String, HostSet>,
}

impl Postings {
    pub fn of_state(&self, state: HostState) -> &HostSet {
        match state {
            HostState::Ready => &self.ready,
            HostState::Maintenance => &self.maintenance,
            HostState::Offline => &self.offline,
            HostState::Fenced => &self.fenced,
        }
    }

    fn of_state_mut(&mut self, state: HostState) -> &mut HostSet {
        match state {
            HostState::Ready => &mut self.ready,
            HostState::Maintenance => &mut self.maintenance,
            HostState::Offline => &mut self.offline,
            HostState::Fenced => &mut self.fenced,
        }
    }

    fn add(&mut self, slot: Slot, spec: &HostSpec) {
        self.live.insert(slot);
        self.of_state_mut(spec.state).insert(slot);
        self.arch.entry(spec.arch.clone()).or_default().insert(slot);
        self.site.entry(spec.site.clone()).or_default().insert(slot);
        for name in &spec.firmware_profiles {
            self.firmware.entry(name.clone()).or_default().insert(slot);
        }
        for name in &spec.zones {
            self.zones.entry(name.clone()).or_default().insert(slot);
        }
        for name in spec.pools.keys() {
            self.pools.entry(name.clone()).or_default().insert(slot);
        }
    }

    fn remove(&mut self, slot: Slot, spec: &HostSpec) {
        self.live.remove(slot);
        self.of_state_mut(spec.state).remove(slot);
        remove_from(&mut self.arch, std::iter::once(&spec.arch), slot);
        remove_from(&mut self.site, std::iter::once(&spec.site), slot);
        remove_from(&mut self.firmware, spec.firmware_profiles.iter(), slot);
        remove_from(&mut self.zones, spec.zones.iter(), slot);
        remove_from(&mut self.pools, spec.pools.keys(), slot);
    }
}

/// Removes `slot` from the named sets, dropping sets that become empty.
fn remove_from<'a>(sets: &mut BTreeMap<String, HostSet>, names: impl Iterator<Item = &'a String>, slot: Slot) {
    for name in names {
        if let Some(set) = sets.get_mut(name) {
            set.remove(slot);
            if set.is_empty() {
                sets.remove(name);
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Index {
    ordered: BTreeMap<String, ArchOrdered>,
    pub postings: Postings,
}

impl Index {
    /// The index of a set of hosts, from scratch.
    pub fn build<'h>(hosts: impl IntoIterator<Item = (Slot, &'h Host)>) -> Self {
        let mut index = Self::default();
        for (slot, host) in hosts {
            index.add(slot, host);
        }
        index
    }

    /// Indexes a host as it is now.
    pub fn add(&mut self, slot: Slot, host: &Host) {
        self.postings.add(slot, &host.spec);
        self.add_ordered(slot, host);
    }

    /// Removes a host's entries; `host` must be unchanged since it was added.
    pub fn remove(&mut self, slot: Slot, host: &Host) {
        self.postings.remove(slot, &host.spec);
        self.remove_ordered(slot, host);
    }

    /// Puts a ready host in the walk orders at its current load.
    pub fn add_ordered(&mut self, slot: Slot, host: &Host) {
        if host.spec.state != HostState::Ready {
            return;
        }
        let arch = self.ordered.entry(host.spec.arch.clone()).or_default();
        arch.any_site.insert(slot, host);
        arch.by_site.entry(host.spec.site.clone()).or_default().insert(slot, host);
    }

    /// Takes a host out of the walk orders; its load must be unchanged since it was added.
    pub fn remove_ordered(&mut self, slot: Slot, host: &Host) {
        let spec = &host.spec;
        if spec.state != HostState::Ready {
            return;
        }
        let Some(arch) = self.ordered.get_mut(&spec.arch) else { return };
        arch.any_site.remove(slot, host);
        if let Some(site) = arch.by_site.get_mut(&spec.site) {
            site.remove(slot, host);
            if site.spread.is_empty() {
                arch.by_site.remove(&spec.site);
            }
        }
        if arch.any_site.spread.is_empty() {
            self.ordered.remove(&spec.arch);
        }
    }

    /// The ready hosts of `arch` (in `site`, if given) in walk order.
    pub fn ordered(&self, arch: &str, site: Option<&str>) -> Option<&Ordered> {
        let arch = self.ordered.get(arch)?;
        match site {
            None => Some(&arch.any_site),
            Some(site) => arch.by_site.get(site),
        }
    }
}
