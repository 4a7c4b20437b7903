//! One profile file: its format and the rules a profile must follow on its own (before any host is
//! considered).

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirmwareKind {
    /// SeaBIOS (x86 legacy boot); QEMU's default, no loader file.
    Bios,
    /// UEFI from a pflash loader plus a per-VM NVRAM copied from a template.
    Uefi,
    /// SLOF, the pseries machine's Open Firmware; QEMU's default for pseries.
    Slof,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loader {
    /// Read-only firmware code image (pflash).
    pub path: PathBuf,
    /// Secure Boot capable image (needs SMM on x86).
    #[serde(default)]
    pub secure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nvram {
    /// Variable store copied to a per-VM file on first start.
    pub template: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tpm {
    /// `2.0` (emulated by swtpm; its state lives with the VM and is deleted with it).
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub arch: String,
    /// Machine type as domcapabilities names it (`q35`, `pseries`, `virt`, ...).
    pub machine: String,
    pub firmware: FirmwareKind,
    #[serde(default)]
    pub acpi: bool,
    #[serde(default)]
    pub smm: bool,
    #[serde(default)]
    pub loader: Option<Loader>,
    #[serde(default)]
    pub nvram: Option<Nvram>,
    #[serde(default)]
    pub tpm: Option<Tpm>,
    /// Other files that must exist on the host (e.g. SLOF for pseries).
    #[serde(default)]
    pub requires_files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("{file}: {error}")]
    Parse { file: String, error: String },
    #[error("{file}: profile '{name}': {why}")]
    Invalid { file: String, name: String, why: String },
    #[error("profile '{0}' is defined twice")]
    Duplicate(String),
    #[error("reading {path}: {error}")]
    Io { path: String, error: String },
}

impl Profile {
    pub fn parse(file: &str, text: &str) -> Result<Self, ProfileError> {
        let profile: Profile =
            toml::from_str(text).map_err(|e| ProfileError::Parse { file: file.to_string(), error: e.to_string() })?;
        profile.validate().map_err(|why| ProfileError::Invalid {
            file: file.to_string(),
            name: profile.name.clone(),
            why,
        })?;
        Ok(profile)
    }

    fn validate(&self) -> Result<(), String> {
        hci_shared::names::check_name(&self.name.replace('_', "-")).map_err(|e| format!("name {e}"))?;
        if !hci_shared::validate::ARCHES.contains(&self.arch.as_str()) {
            return Err(format!("arch '{}' is not one of {}", self.arch, hci_shared::validate::ARCHES.join(", ")));
        }
        if self.machine.is_empty() {
            return Err("machine must not be empty".into());
        }
        match self.firmware {
            FirmwareKind::Uefi if self.loader.is_none() || self.nvram.is_none() => {
                return Err("uefi needs [loader] and [nvram]".into())
            }
            FirmwareKind::Bios | FirmwareKind::Slof if self.loader.is_some() || self.nvram.is_some() => {
                return Err("bios and slof use QEMU's built-in firmware: no [loader] or [nvram]".into())
            }
            FirmwareKind::Bios if self.arch != "x86_64" => return Err("bios is x86_64 only".into()),
            FirmwareKind::Slof if self.arch != "ppc64le" => return Err("slof is ppc64le only".into()),
            _ => {}
        }
        if self.loader.as_ref().is_some_and(|l| l.secure) && self.arch == "x86_64" && !self.smm {
            return Err("a secure loader on x86_64 needs smm = true".into());
        }
        if let Some(tpm) = &self.tpm {
            if tpm.version != "2.0" {
                return Err(format!("tpm version '{}' is not supported (2.0)", tpm.version));
            }
        }
        let paths = self
            .loader
            .iter()
            .map(|l| &l.path)
            .chain(self.nvram.iter().map(|n| &n.template))
            .chain(&self.requires_files);
        for path in paths {
            if !path.is_absolute() {
                return Err(format!("{} is not an absolute path", path.display()));
            }
        }
        Ok(())
    }

    /// Every file the host must have for this profile.
    pub fn files(&self) -> Vec<&std::path::Path> {
        self.loader
            .iter()
            .map(|l| l.path.as_path())
            .chain(self.nvram.iter().map(|n| n.template.as_path()))
            .chain(self.requires_files.iter().map(|p| p.as_path()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse("test.toml", text)
    }

    #[test]
    fn refuses_inconsistent_profiles_naming_the_problem() {
        let cases = [
            ("name = \"a\"\narch = \"sparc\"\nmachine = \"m\"\nfirmware = \"bios\"", "arch 'sparc'"),
            ("name = \"a\"\narch = \"x86_64\"\nmachine = \"q35\"\nfirmware = \"uefi\"", "uefi needs"),
            ("name = \"a\"\narch = \"aarch64\"\nmachine = \"virt\"\nfirmware = \"bios\"", "x86_64 only"),
            (
                "name = \"a\"\narch = \"x86_64\"\nmachine = \"q35\"\nfirmware = \"uefi\"\n[loader]\npath = \"/c\"\nsecure = true\n[nvram]\ntemplate = \"/v\"",
                "smm",
            ),
            (
                "name = \"a\"\narch = \"x86_64\"\nmachine = \"q35\"\nfirmware = \"uefi\"\n[loader]\npath = \"c\"\n[nvram]\ntemplate = \"/v\"",
                "absolute",
            ),
            ("name = \"a\"\narch = \"x86_64\"\nmachine = \"q35\"\nfirmware = \"bios\"\nbogus = 1", "unknown field"),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }
}
