//! Reads the pieces of libvirt's XML documents the agent needs: the host's architecture and machine
//! types (capabilities), whether an emulated TPM is offered (domcapabilities), a domain's disk
//! targets (domain XML).
//!
//! It exists to keep XML reading pure and unit-testable, apart from the connection handling. It must
//! never talk to libvirt itself, and never fail on elements it does not know.

use std::collections::BTreeMap;

/// What the capabilities XML says about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCaps {
    pub arch: String,
    /// Guest architecture → machine type names and canonical names, sorted, without duplicates.
    pub machines: BTreeMap<String, Vec<String>>,
}

/// Parses `virConnectGetCapabilities` output.
pub fn parse_capabilities(xml: &str) -> Result<HostCaps, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("capabilities XML: {e}"))?;
    let root = doc.root_element();
    let arch = root
        .children()
        .find(|n| n.has_tag_name("host"))
        .and_then(|host| host.children().find(|n| n.has_tag_name("cpu")))
        .and_then(|cpu| cpu.children().find(|n| n.has_tag_name("arch")))
        .and_then(|arch| arch.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or("capabilities XML has no <host><cpu><arch>")?;
    let mut machines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for guest in root.children().filter(|n| n.has_tag_name("guest")) {
        for guest_arch in guest.children().filter(|n| n.has_tag_name("arch")) {
            let Some(name) = guest_arch.attribute("name") else { continue };
            let list = machines.entry(name.to_string()).or_default();
            // Machines are listed per <arch> and again per <domain type=...>.
            for machine in guest_arch.descendants().filter(|n| n.has_tag_name("machine")) {
                list.extend(machine.text().map(|t| t.trim().to_string()));
                list.extend(machine.attribute("canonical").map(str::to_string));
            }
        }
    }
    for list in machines.values_mut() {
        list.retain(|m| !m.is_empty());
        list.sort();
        list.dedup();
    }
    Ok(HostCaps { arch, machines })
}

/// From domcapabilities: `Some(true)` when `<tpm supported='yes'>` offers the emulator backend,
/// `Some(false)` when the TPM element says otherwise, `None` when the XML does not say (old libvirt).
pub fn tpm_emulator(domcaps_xml: &str) -> Option<bool> {
    let doc = roxmltree::Document::parse(domcaps_xml).ok()?;
    let tpm = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("devices"))?
        .children()
        .find(|n| n.has_tag_name("tpm"))?;
    if tpm.attribute("supported") != Some("yes") {
        return Some(false);
    }
    let emulator = tpm
        .children()
        .filter(|n| n.has_tag_name("enum") && n.attribute("name") == Some("backendModel"))
        .flat_map(|e| e.children().filter(|v| v.has_tag_name("value")))
        .any(|v| v.text().map(str::trim) == Some("emulator"));
    Some(emulator)
}

/// The `<target dev=...>` of every disk of a domain XML, in order.
pub fn disk_targets(domain_xml: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(domain_xml) else { return Vec::new() };
    let Some(devices) = doc.root_element().children().find(|n| n.has_tag_name("devices")) else {
        return Vec::new();
    };
    devices
        .children()
        .filter(|n| n.has_tag_name("disk"))
        .filter_map(|disk| disk.children().find(|n| n.has_tag_name("target")))
        .filter_map(|target| target.attribute("dev").map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: &str = "<capabilities>
  <host><uuid>u</uuid><cpu><arch>x86_64</arch><model>Broadwell</model></cpu></host>
  <guest><os_type>hvm</os_type>
    <arch name='x86_64'><wordsize>64</wordsize>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'><machine canonical='pc-q35-8.0'>q35</machine></domain>
    </arch>
  </guest>
  <guest><os_type>hvm</os_type>
    <arch name='ppc64le'><machine canonical='pseries-7.2' maxCpus='4096'>pseries</machine><domain type='qemu'/></arch>
  </guest>
</capabilities>";

    #[test]
    fn reads_arch_and_machines_with_canonical_names() {
        let caps = parse_capabilities(CAPS).expect("parses");
        assert_eq!(caps.arch, "x86_64");
        assert_eq!(caps.machines["x86_64"], ["pc", "pc-i440fx-7.2", "pc-q35-7.2", "pc-q35-8.0", "q35"]);
        assert_eq!(caps.machines["ppc64le"], ["pseries", "pseries-7.2"]);
        assert!(parse_capabilities("<capabilities/>").is_err());
        assert!(parse_capabilities("nope").is_err());
    }

    #[test]
    fn reads_the_tpm_emulator_from_domcapabilities() {
        let yes = "<domainCapabilities><devices><tpm supported='yes'><enum name='model'><value>tpm-crb</value></enum>\
                   <enum name='backendModel'><value>passthrough</value><value>emulator</value></enum></tpm></devices></domainCapabilities>";
        let no_emulator = "<domainCapabilities><devices><tpm supported='yes'><enum name='backendModel'><value>passthrough</value></enum></tpm></devices></domainCapabilities>";
        let unsupported = "<domainCapabilities><devices><tpm supported='no'/></devices></domainCapabilities>";
        assert_eq!(tpm_emulator(yes), Some(true));
        assert_eq!(tpm_emulator(no_emulator), Some(false));
        assert_eq!(tpm_emulator(unsupported), Some(false));
        assert_eq!(tpm_emulator("<domainCapabilities><devices/></domainCapabilities>"), None);
    }

    #[test]
    fn lists_disk_targets_in_order() {
        let xml = "<domain><devices><disk><target dev='vda'/></disk><interface/><disk><target dev='vdb'/></disk></devices></domain>";
        assert_eq!(disk_targets(xml), ["vda", "vdb"]);
        assert!(disk_targets("<domain/>").is_empty());
    }
}
