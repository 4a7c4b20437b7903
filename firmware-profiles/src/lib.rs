//! Firmware profiles: declarative files (`profiles/*.toml`) that map a profile name such as
//! `x86_64-uefi-secureboot` to what a domain needs: machine type, firmware kind, loader, NVRAM
//! template, SMM, TPM.
//!
//! It exists so that no firmware path is hard-coded in the agent, and so that a profile a host cannot
//! run is refused before anything is created, with an error naming what is missing. It must never
//! talk to libvirt itself: the agent hands it what libvirt reported ([`HostFirmware`]).

mod check;
mod profile;

pub use check::{HostFirmware, Unrunnable};
pub use profile::{FirmwareKind, Loader, Nvram, Profile, ProfileError, Tpm};

use std::collections::BTreeMap;
use std::path::Path;

/// The profiles shipped with hci, compiled in so a host needs no extra files to know them.
const BUILTIN: &[(&str, &str)] = &[
    ("x86_64-bios.toml", include_str!("../profiles/x86_64-bios.toml")),
    ("x86_64-uefi.toml", include_str!("../profiles/x86_64-uefi.toml")),
    ("x86_64-uefi-secureboot.toml", include_str!("../profiles/x86_64-uefi-secureboot.toml")),
    ("ppc64le-pseries.toml", include_str!("../profiles/ppc64le-pseries.toml")),
    ("aarch64-uefi.toml", include_str!("../profiles/aarch64-uefi.toml")),
];

/// Every known profile, by name.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Profiles {
    /// The built-in profiles, validated.
    pub fn builtin() -> Result<Self, ProfileError> {
        let mut profiles = Self::default();
        for (file, text) in BUILTIN {
            profiles.insert(Profile::parse(file, text)?)?;
        }
        Ok(profiles)
    }

    /// The built-in profiles, then every `*.toml` in `dir` (a file may replace a built-in one, e.g. to
    /// point at a distribution's different firmware path).
    pub fn builtin_and_dir(dir: &Path) -> Result<Self, ProfileError> {
        let mut profiles = Self::builtin()?;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ProfileError::Io { path: dir.display().to_string(), error: e.to_string() })?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ProfileError::Io { path: path.display().to_string(), error: e.to_string() })?;
            let profile = Profile::parse(&path.display().to_string(), &text)?;
            profiles.by_name.insert(profile.name.clone(), profile);
        }
        Ok(profiles)
    }

    fn insert(&mut self, profile: Profile) -> Result<(), ProfileError> {
        if self.by_name.contains_key(&profile.name) {
            return Err(ProfileError::Duplicate(profile.name));
        }
        self.by_name.insert(profile.name.clone(), profile);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_name.values()
    }

    /// The names of the profiles this host can run.
    pub fn runnable_on(&self, host: &HostFirmware) -> Vec<String> {
        self.iter().filter(|p| host.check(p).is_ok()).map(|p| p.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_match_the_shared_list() {
        let profiles = Profiles::builtin().expect("built-in profiles are valid");
        let names: Vec<_> = profiles.iter().map(|p| (p.name.as_str(), p.arch.as_str())).collect();
        let mut expected: Vec<_> = hci_shared::validate::FIRMWARE_PROFILES.to_vec();
        expected.sort();
        assert_eq!(names, expected, "profiles/ and shared::validate::FIRMWARE_PROFILES must agree");
    }

    #[test]
    fn a_directory_can_override_a_builtin_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("x86_64-bios.toml"),
            "name = \"x86_64-bios\"\narch = \"x86_64\"\nmachine = \"pc\"\nfirmware = \"bios\"\nacpi = true\n",
        )
        .expect("write");
        let profiles = Profiles::builtin_and_dir(dir.path()).expect("valid");
        assert_eq!(profiles.get("x86_64-bios").map(|p| p.machine.as_str()), Some("pc"));
    }
}
