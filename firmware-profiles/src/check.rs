//! Can this host run a profile? Compares a profile with what the host's libvirt reported.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Profile;

/// What the agent learned from libvirt (capabilities and domcapabilities) and the file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFirmware {
    /// Guest architecture → machine types libvirt can create for it (names and canonical names).
    pub machines: BTreeMap<String, Vec<String>>,
    /// Whether an emulated TPM (swtpm) is usable.
    pub swtpm: bool,
}

/// Why a host cannot run a profile: every missing piece, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("firmware profile '{profile}' cannot run on this host: {}", missing.join("; "))]
pub struct Unrunnable {
    pub profile: String,
    pub missing: Vec<String>,
}

impl HostFirmware {
    /// Checks `profile` against this host, with `exists` telling whether a firmware file is present.
    pub fn check_with(&self, profile: &Profile, exists: impl Fn(&Path) -> bool) -> Result<(), Unrunnable> {
        let mut missing = Vec::new();
        match self.machines.get(&profile.arch) {
            None => missing.push(format!("architecture {} is not supported by this host's hypervisor", profile.arch)),
            Some(machines) if !machines.iter().any(|m| m == &profile.machine) => missing.push(format!(
                "machine type {} is absent for {} (have: {})",
                profile.machine,
                profile.arch,
                machines.join(", ")
            )),
            Some(_) => {}
        }
        for file in profile.files() {
            if !exists(file) {
                missing.push(format!("firmware file {} is missing", file.display()));
            }
        }
        if profile.tpm.is_some() && !self.swtpm {
            missing.push("an emulated TPM needs swtpm, which is not installed".to_string());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Unrunnable { profile: profile.name.clone(), missing })
        }
    }

    /// [`check_with`](Self::check_with) against the real file system.
    pub fn check(&self, profile: &Profile) -> Result<(), Unrunnable> {
        self.check_with(profile, |p| p.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profiles;

    fn x86_host() -> HostFirmware {
        HostFirmware {
            machines: BTreeMap::from([("x86_64".to_string(), vec!["pc".to_string(), "q35".to_string()])]),
            swtpm: false,
        }
    }

    #[test]
    fn names_every_missing_piece() {
        let profiles = Profiles::builtin().expect("valid");
        let secure = profiles.get("x86_64-uefi-secureboot").expect("exists");
        let err = x86_host().check_with(secure, |_| false).expect_err("files missing, no swtpm");
        assert_eq!(err.missing.len(), 3, "{err}");
        assert!(err.to_string().contains("OVMF_CODE_4M.secboot.fd is missing"), "{err}");
        assert!(err.to_string().contains("swtpm"), "{err}");
        let ppc = profiles.get("ppc64le-pseries").expect("exists");
        let err = x86_host().check_with(ppc, |_| true).expect_err("no ppc64le");
        assert!(err.to_string().contains("architecture ppc64le"), "{err}");
    }

    #[test]
    fn runnable_when_machine_and_files_are_there() {
        let profiles = Profiles::builtin().expect("valid");
        let uefi = profiles.get("x86_64-uefi").expect("exists");
        assert!(x86_host().check_with(uefi, |_| true).is_ok());
        let mut no_q35 = x86_host();
        no_q35.machines.insert("x86_64".into(), vec!["pc".into()]);
        let err = no_q35.check_with(uefi, |_| true).expect_err("no q35");
        assert!(err.to_string().contains("machine type q35 is absent"), "{err}");
    }
}
