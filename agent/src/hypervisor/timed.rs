//! A [`Hypervisor`] decorator that records the latency of every call in the agent's metrics, so the
//! real implementation stays free of instrumentation.

use std::time::{Duration, Instant};

use hci_shared::agent::VmStats;
use prometheus::HistogramVec;

use super::{Capabilities, DiskSpec, DomainInfo, DomainSpec, Hypervisor, HypervisorError, MigrationTarget};

pub struct Timed<H> {
    inner: H,
    seconds: HistogramVec,
}

impl<H> Timed<H> {
    pub fn new(inner: H, seconds: HistogramVec) -> Self {
        Self { inner, seconds }
    }

    fn time<T>(&self, call: &str, f: impl FnOnce(&H) -> T) -> T {
        let started = Instant::now();
        let out = f(&self.inner);
        self.seconds.with_label_values(&[call]).observe(started.elapsed().as_secs_f64());
        out
    }
}

impl<H: Hypervisor> Hypervisor for Timed<H> {
    fn capabilities(&self) -> Result<Capabilities, HypervisorError> {
        self.time("capabilities", |h| h.capabilities())
    }
    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        self.time("list", |h| h.list())
    }
    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.time("define", |h| h.define(spec))
    }
    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.time("start", |h| h.start(name))
    }
    fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), HypervisorError> {
        self.time("shutdown", |h| h.shutdown(name, timeout))
    }
    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.time("reboot", |h| h.reboot(name))
    }
    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.time("undefine", |h| h.undefine(name))
    }
    fn stats(&self, name: &str) -> Result<VmStats, HypervisorError> {
        self.time("stats", |h| h.stats(name))
    }
    fn attach_disk(&self, domain: &str, disk: &DiskSpec) -> Result<(), HypervisorError> {
        self.time("attach_disk", |h| h.attach_disk(domain, disk))
    }
    fn detach_disk(&self, domain: &str, target: &str) -> Result<(), HypervisorError> {
        self.time("detach_disk", |h| h.detach_disk(domain, target))
    }
    fn snapshot_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError> {
        self.time("snapshot_disks", |h| h.snapshot_disks(domain, name))
    }
    fn list_snapshots(&self, domain: &str) -> Result<Vec<String>, HypervisorError> {
        self.time("list_snapshots", |h| h.list_snapshots(domain))
    }
    fn revert_disks(&self, domain: &str, name: &str) -> Result<(), HypervisorError> {
        self.time("revert_disks", |h| h.revert_disks(domain, name))
    }
    fn uuid(&self, domain: &str) -> Result<String, HypervisorError> {
        self.time("uuid", |h| h.uuid(domain))
    }
    fn migrate_live(&self, domain: &str, target: &MigrationTarget) -> Result<(), HypervisorError> {
        self.time("migrate_live", |h| h.migrate_live(domain, target))
    }
}
