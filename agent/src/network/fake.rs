//! An in-memory [`NetworkDataPlane`] of the same shape as the real one, for fast tests of
//! convergence: links, owned routes, flood entries and sysctls as plain maps, with the kernel's
//! refusals that matter (a route or sysctl of a device that is not there, adding a device twice).
//! Tests add and remove taps as libvirt would, and tamper with the rest as an operator would.
//! It must never be wired into the real agent binary.

use std::sync::{Mutex, MutexGuard};

use super::plan::{sysctl_forwarding, Link, Observed, Op};
use super::{NetError, NetworkDataPlane};

#[derive(Debug, Default)]
pub struct FakeDataPlane {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    host: Observed,
    applied: Vec<Op>,
    fail_device: Option<String>,
}

impl FakeDataPlane {
    pub fn new() -> Self {
        let fake = Self::default();
        fake.lock().host.sysctls.insert(sysctl_forwarding(), "0".into());
        fake
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A tap appears, down, as libvirt creates it (with its sysctls at the kernel's defaults).
    pub fn add_tap(&self, name: &str) {
        let mut s = self.lock();
        s.host.links.insert(name.into(), Link { up: false, mtu: 1500, ..Link::default() });
        add_device_sysctls(&mut s.host, name);
    }

    /// A device of the operator's (a VLAN trunk), up.
    pub fn add_device(&self, name: &str) {
        self.lock().host.links.insert(name.into(), Link { up: true, mtu: 9000, ..Link::default() });
    }

    /// A device goes away (a domain stopped, or an operator deleted it), with its routes.
    pub fn remove_link(&self, name: &str) {
        let mut s = self.lock();
        remove_device(&mut s.host, name);
    }

    /// Everything as it is now.
    pub fn host(&self) -> Observed {
        self.lock().host.clone()
    }

    /// Runs `f` on the host state (tampering).
    pub fn edit(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut self.lock().host)
    }

    /// Steps applied so far (and forgets them).
    pub fn take_applied(&self) -> Vec<Op> {
        std::mem::take(&mut self.lock().applied)
    }

    /// Every step about `device` fails from now on (`None`: none).
    pub fn fail_device(&self, device: Option<&str>) {
        self.lock().fail_device = device.map(str::to_string);
    }
}

fn add_device_sysctls(host: &mut Observed, dev: &str) {
    host.sysctls.insert(super::plan::sysctl_proxy_arp(dev), "0".into());
    host.sysctls.insert(super::plan::sysctl_proxy_delay(dev), "80".into());
    host.sysctls.insert(super::plan::sysctl_arp_ignore(dev), "0".into());
}

fn remove_device(host: &mut Observed, dev: &str) {
    host.links.remove(dev);
    host.routes.retain(|r| r.dev != dev);
    host.flood.remove(dev);
    host.sysctls.retain(|k, _| k.split('/').nth(3) != Some(dev));
}

fn missing(dev: &str) -> NetError {
    NetError(format!("Cannot find device \"{dev}\""))
}

impl NetworkDataPlane for FakeDataPlane {
    fn observe(&self, sysctls: &[String]) -> Result<Observed, NetError> {
        let s = self.lock();
        let mut out = s.host.clone();
        out.sysctls.retain(|k, _| sysctls.contains(k));
        Ok(out)
    }

    fn apply(&self, op: &Op) -> Result<(), NetError> {
        let mut s = self.lock();
        if op.device().is_some() && op.device() == s.fail_device.as_deref() {
            return Err(NetError(format!("injected failure on {:?}", op.device())));
        }
        s.applied.push(op.clone());
        let host = &mut s.host;
        match op {
            Op::AddVxlan { name, vxlan } => {
                if host.links.contains_key(name) {
                    return Err(NetError("RTNETLINK answers: File exists".into()));
                }
                host.links.insert(name.clone(), Link { up: false, vxlan: Some(vxlan.clone()), vlan: None, mtu: 1500 });
                host.flood.insert(name.clone(), Default::default());
                add_device_sysctls(host, name);
            }
            Op::AddVlan { name, vlan } => {
                if host.links.contains_key(name) {
                    return Err(NetError("RTNETLINK answers: File exists".into()));
                }
                if !host.links.contains_key(&vlan.lower) {
                    return Err(missing(&vlan.lower));
                }
                let mtu = host.links[&vlan.lower].mtu;
                host.links.insert(name.clone(), Link { up: false, vxlan: None, vlan: Some(vlan.clone()), mtu });
                add_device_sysctls(host, name);
            }
            Op::DeleteLink { name } => {
                if !host.links.contains_key(name) {
                    return Err(missing(name));
                }
                remove_device(host, name);
            }
            Op::SetUp { name } => host.links.get_mut(name).ok_or_else(|| missing(name))?.up = true,
            Op::SetMtu { name, mtu } => host.links.get_mut(name).ok_or_else(|| missing(name))?.mtu = *mtu,
            Op::Sysctl { key, value } => {
                let slot = host.sysctls.get_mut(key).ok_or_else(|| NetError(format!("no sysctl {key}")))?;
                *slot = value.clone();
            }
            Op::AddFlood { dev, dst } => {
                host.flood.get_mut(dev).ok_or_else(|| missing(dev))?.insert(*dst);
            }
            Op::DeleteFlood { dev, dst } => {
                host.flood.get_mut(dev).ok_or_else(|| missing(dev))?.remove(dst);
            }
            Op::ReplaceRoute(route) => {
                if !host.links.get(&route.dev).is_some_and(|l| l.up) {
                    return Err(NetError(format!("route via {}: device missing or down", route.dev)));
                }
                host.routes.retain(|r| r.dst != route.dst);
                host.routes.insert(route.clone());
            }
            Op::DeleteRoute(route) => {
                if !host.routes.remove(route) {
                    return Err(NetError("RTNETLINK answers: No such process".into()));
                }
            }
            Op::AddLocal(address) => {
                host.local_addresses.insert(*address);
            }
            Op::DeleteLocal(address) => {
                if !host.local_addresses.remove(address) {
                    return Err(NetError("RTNETLINK answers: No such process".into()));
                }
            }
        }
        Ok(())
    }
}
