//! The running agent: holds the persisted state, accepts new desired states, and runs reconcile
//! passes (on every change and periodically, to repair drift) one at a time.
//!
//! A desired state is written to disk before it is acknowledged, so an agent killed right after
//! acknowledging still converges to it after a restart. Passes run on a blocking thread: libvirt's API
//! is synchronous.
//!
//! It also holds what self-fencing needs across the agent: the controller contact the heartbeat loop
//! records, and the fenced VMs (in the persisted state), which it powers off and lifts.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hci_shared::agent::{HostDesired, HostReport, IncomingOffer, IncomingRequest};
use hci_shared::hosts::HeartbeatAck;
use hci_shared::resources::HostState;

use crate::controller::contact::Contact;
use crate::controller::fence::{now_unix_ms, rfc3339};
use crate::controller::fence_watch::FenceMetrics;
use crate::metrics::AgentMetrics;
use crate::reconciler::{domain_name, reconcile_guarded, HostResources, OfferRefusal};
use crate::store::{AcceptError, AgentState, StateFile, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error(transparent)]
    Refused(#[from] AcceptError),
    #[error("persisting the desired state: {0}")]
    Store(#[from] StoreError),
}

pub struct Agent {
    pub res: Arc<HostResources>,
    pub site: String,
    pub data_dir: std::path::PathBuf,
    pub metrics: AgentMetrics,
    pub fence_metrics: FenceMetrics,
    /// When the controllers last acknowledged a heartbeat (written by the heartbeat loop).
    pub contact: Contact,
    /// When this process fenced (acknowledgements of heartbeats sent before it do not count).
    fenced_at: Mutex<Option<Instant>>,
    state: Mutex<AgentState>,
    file: StateFile,
    report: Mutex<Option<HostReport>>,
    /// Serializes passes.
    pass_lock: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("host_id", &self.res.host_id).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    /// Loads the persisted state from `data_dir` (an empty state on first start).
    pub fn open(
        res: HostResources,
        site: String,
        data_dir: std::path::PathBuf,
        metrics: AgentMetrics,
    ) -> Result<Arc<Self>, StoreError> {
        let file = StateFile::new(&data_dir);
        let state = file.load()?;
        let fence_metrics = FenceMetrics::new();
        if let Some(fenced) = &state.fenced {
            fence_metrics.fenced_vms.set(fenced.vms.len() as i64);
            tracing::warn!(vms = ?fenced.vms, since = %rfc3339(fenced.at_unix_ms), "HA VMs stay fenced until the controller takes this host back");
        }
        Ok(Arc::new(Self {
            res: Arc::new(res),
            site,
            data_dir,
            metrics,
            fence_metrics,
            contact: Contact::new(),
            fenced_at: Mutex::new(None),
            state: Mutex::new(state),
            file,
            report: Mutex::new(None),
            pass_lock: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }))
    }

    pub fn desired(&self) -> Option<HostDesired> {
        lock(&self.state).desired.clone()
    }

    pub fn last_report(&self) -> Option<HostReport> {
        lock(&self.report).clone()
    }

    /// Accepts `desired` if it is newer than what is held, persists it, then wakes the reconciler.
    /// Returns the generation now held.
    pub fn offer(&self, desired: HostDesired) -> Result<u64, OfferError> {
        let mut state = lock(&self.state);
        let mut next = state.clone();
        if next.accept(&self.res.host_id, desired)? {
            let lifted = next.unfence_if_cleared();
            self.file.save(&next)?;
            *state = next;
            self.wake.notify_one();
            if let Some(lifted) = lifted {
                self.fence_metrics.fenced_vms.set(0);
                tracing::info!(vms = ?lifted.vms, generation = state.generation(), "fencing lifted: the controller took this host back");
            }
        }
        Ok(state.generation())
    }

    /// The VMs held fenced.
    pub fn fenced_vms(&self) -> BTreeSet<String> {
        lock(&self.state).fenced.as_ref().map(|f| f.vms.clone()).unwrap_or_default()
    }

    /// A heartbeat sent at `sent` was acknowledged: recorded as contact, and, when fenced, as the
    /// controller's word on whether this host is back (`ready`), which may lift the fencing.
    pub fn acknowledged(&self, sent: Instant, ack: &HeartbeatAck) {
        self.contact.acknowledged(sent, ack.state);
        if lock(&self.fenced_at).is_some_and(|at| sent < at) {
            return;
        }
        let mut state = lock(&self.state);
        if state.fenced.is_none() {
            return;
        }
        let mut next = state.clone();
        if !next.note_ack(ack.state == HostState::Ready, ack.desired_generation) {
            return;
        }
        let lifted = next.unfence_if_cleared();
        if let Err(e) = self.file.save(&next) {
            tracing::error!(error = %e, "persisting the fencing record");
            return;
        }
        *state = next;
        if let Some(lifted) = lifted {
            self.fence_metrics.fenced_vms.set(0);
            self.wake.notify_one();
            tracing::info!(vms = ?lifted.vms, "fencing lifted: the controller took this host back");
        }
    }

    /// Self-fencing: records `vms` as fenced (persisted first, so a restart keeps them off), then
    /// powers each off at once, hard (no guest shutdown: the controller is about to start them
    /// elsewhere). Returns the VMs newly fenced.
    pub async fn fence(self: &Arc<Self>, vms: Vec<String>, why: &str) -> Vec<String> {
        let added = {
            let mut state = lock(&self.state);
            let mut next = state.clone();
            let added = next.fence(&vms, now_unix_ms());
            if added.is_empty() {
                return added;
            }
            if let Err(e) = self.file.save(&next) {
                // Powering off matters more than the record; the fence watcher fences again after a restart.
                tracing::error!(error = %e, "persisting the fencing record; powering off anyway");
            }
            self.fence_metrics.fenced_vms.set(next.fenced.as_ref().map_or(0, |f| f.vms.len() as i64));
            *state = next;
            added
        };
        *lock(&self.fenced_at) = Some(Instant::now());
        self.fence_metrics.events.inc();
        tracing::warn!(vms = ?added, reason = why, "fencing: powering off HA VMs");
        let agent = self.clone();
        let names = added.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || agent.power_off(&names)).await {
            tracing::error!(error = %e, "the power-off task failed");
        }
        self.wake.notify_one();
        added
    }

    /// Hard power-off of each VM's domain, all at once (a zero-timeout shutdown forces the stop).
    fn power_off(&self, vms: &[String]) {
        std::thread::scope(|scope| {
            for vm in vms {
                scope.spawn(move || {
                    let name = domain_name(&self.res.host_id, vm);
                    match self.res.hypervisor.shutdown(&name, Duration::ZERO) {
                        Ok(()) => tracing::warn!(vm = %vm, domain = %name, "fenced: powered off"),
                        Err(e) => {
                            tracing::warn!(vm = %vm, error = %e, "fenced: power-off failed (the next pass retries)")
                        }
                    }
                });
            }
        });
    }

    /// Runs one pass now (waiting for a running one to finish first) and returns its report.
    /// The target's answer to a source host about an incoming VM (see `reconciler::incoming_offer`).
    pub async fn incoming_offer(
        self: &Arc<Self>,
        vm_id: String,
        request: IncomingRequest,
    ) -> Result<IncomingOffer, OfferRefusal> {
        let agent = self.clone();
        let state = lock(&self.state).clone();
        tokio::task::spawn_blocking(move || crate::reconciler::incoming_offer(&agent.res, &state, &vm_id, &request))
            .await
            .unwrap_or_else(|e| Err(OfferRefusal::Internal(format!("the offer task failed: {e}"))))
    }

    pub async fn pass(self: &Arc<Self>) -> HostReport {
        let _guard = self.pass_lock.lock().await;
        let agent = self.clone();
        let joined = tokio::task::spawn_blocking(move || agent.pass_blocking()).await;
        match joined {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "reconcile pass panicked");
                self.last_report().unwrap_or_else(|| self.empty_report())
            }
        }
    }

    fn empty_report(&self) -> HostReport {
        HostReport {
            host_id: self.res.host_id.clone(),
            desired_generation: lock(&self.state).generation(),
            converged_generation: None,
            vms: vec![],
            volumes: vec![],
            foreign_domains: vec![],
        }
    }

    fn pass_blocking(&self) -> HostReport {
        let started = Instant::now();
        let mut working = lock(&self.state).clone();
        // A fencing that lands during the pass is seen before any start (the pass's copy predates it).
        let fenced_now = |vm: &str| lock(&self.state).is_fenced(vm);
        let outcome = reconcile_guarded(&self.res, &mut working, &fenced_now);
        if outcome.state_changed {
            // Keep a desired state that arrived during the pass; take only what the pass applied.
            let mut state = lock(&self.state);
            let mut next = state.clone();
            next.applied = working.applied;
            match self.file.save(&next) {
                Ok(()) => *state = next,
                Err(e) => tracing::error!(error = %e, "persisting applied state"),
            }
        }
        self.metrics.reconcile_passes.inc();
        self.metrics.reconcile_errors.inc_by(outcome.errors as u64);
        self.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.record_report(&outcome.report);
        *lock(&self.report) = Some(outcome.report.clone());
        outcome.report
    }

    /// Flattens volume `id` into a downloadable export; refused while a running VM uses it.
    pub fn export(&self, id: &str) -> Result<crate::export::Export, crate::export::ExportError> {
        use crate::export::ExportError;
        let running_user = self
            .desired()
            .and_then(|d| d.vms.into_iter().find(|vm| vm.disks.iter().any(|disk| disk == id)).map(|vm| vm.id));
        if let Some(vm) = running_user {
            let name = crate::reconciler::domain_name(&self.res.host_id, &vm);
            let running = self.res.hypervisor.list().ok().into_iter().flatten().any(|d| {
                d.name == name
                    && !matches!(
                        d.state,
                        hci_shared::agent::VmRunState::Stopped | hci_shared::agent::VmRunState::Crashed
                    )
            });
            if running {
                return Err(ExportError::InUse { volume: id.to_string(), vm });
            }
        }
        let disk = self
            .res
            .pools
            .values()
            .find_map(|pool| pool.list().ok()?.into_iter().find(|v| v.id == id).map(|v| v.disk))
            .ok_or_else(|| ExportError::NoSuchVolume(id.to_string()))?;
        crate::export::export_volume(id, &disk, &crate::export::exports_dir(&self.data_dir))
    }

    /// Reconciles on every accepted change and every `interval` (drift repair), forever.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            let report = self.pass().await;
            tracing::debug!(converged = ?report.converged_generation, "reconcile pass done");
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
