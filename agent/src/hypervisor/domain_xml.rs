//! Renders a [`DomainSpec`] into libvirt domain XML, and reads back the hci metadata element.
//!
//! It exists so that the whole shape of a domain (firmware, devices, console, TPM, ownership
//! metadata) is decided in one pure, unit-testable place. It must never talk to libvirt or the file
//! system, and never embed a string without escaping it: names and paths come from the desired state.

#[cfg(test)]
mod tests;

use hci_firmware_profiles::FirmwareKind;

use super::{DiskSource, DiskSpec, DomainOwner, DomainSpec, NicSpec};

/// The XML namespace of the hci metadata element.
pub const HCI_NAMESPACE: &str = "urn:hci:agent:1";
/// The prefix libvirt stores the metadata element under.
pub const HCI_PREFIX: &str = "hci";

/// Free PCIe root ports a q35 or aarch64 `virt` domain gets for hotplugging devices (disks) while it
/// runs; libvirt places the defined devices first, so these stay free.
pub const HOTPLUG_ROOT_PORTS: usize = 8;

/// Machines whose devices sit behind PCIe root ports.
fn pcie_machine(p: &hci_firmware_profiles::Profile) -> bool {
    p.machine == "q35" || p.machine.starts_with("pc-q35") || (p.arch == "aarch64" && p.machine.starts_with("virt"))
}

/// What a domain's XML needs beyond its [`DomainSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// The UUID of the domain being redefined (libvirt refuses a new UUID for an existing name).
    pub uuid: Option<String>,
    /// A `<name>` other than `spec.name`: a live migration's target XML carries the source's name
    /// (libvirt checks it, then renames the domain to the target's).
    pub name: Option<String>,
}

/// The libvirt domain XML for `spec`.
pub fn render(spec: &DomainSpec) -> String {
    render_with(spec, &RenderOptions::default())
}

/// [`render`] with the UUID of an existing domain.
pub fn render_with(spec: &DomainSpec, options: &RenderOptions) -> String {
    let p = &spec.profile;
    let x86 = p.arch == "x86_64";
    let kvm = spec.domain_type == "kvm";
    let smbios = !spec.oem_strings.is_empty() && (x86 || p.arch == "aarch64");
    let mut x = String::with_capacity(4096);
    x.push_str(&format!("<domain type='{}'>\n", esc(&spec.domain_type)));
    x.push_str(&format!("  <name>{}</name>\n", esc(options.name.as_ref().unwrap_or(&spec.name))));
    if let Some(uuid) = &options.uuid {
        x.push_str(&format!("  <uuid>{}</uuid>\n", esc(uuid)));
    }
    x.push_str("  <metadata>\n");
    x.push_str(&format!("    {}\n", metadata_element(spec)));
    x.push_str("  </metadata>\n");
    x.push_str(&format!("  <memory unit='MiB'>{}</memory>\n", spec.memory_mib));
    x.push_str(&format!("  <currentMemory unit='MiB'>{}</currentMemory>\n", spec.memory_mib));
    x.push_str(&format!("  <vcpu placement='static'>{}</vcpu>\n", spec.vcpus));
    if smbios {
        x.push_str("  <sysinfo type='smbios'>\n    <oemStrings>\n");
        for entry in &spec.oem_strings {
            x.push_str(&format!("      <entry>{}</entry>\n", esc(entry)));
        }
        x.push_str("    </oemStrings>\n  </sysinfo>\n");
    }

    x.push_str("  <os>\n");
    x.push_str(&format!("    <type arch='{}' machine='{}'>hvm</type>\n", esc(&p.arch), esc(&p.machine)));
    if p.firmware == FirmwareKind::Uefi {
        if let Some(loader) = &p.loader {
            x.push_str(&format!(
                "    <loader readonly='yes' secure='{}' type='pflash'>{}</loader>\n",
                yes_no(loader.secure),
                esc(&loader.path.to_string_lossy())
            ));
        }
        if let Some(nvram) = &p.nvram {
            let template = esc(&nvram.template.to_string_lossy());
            match &spec.nvram_path {
                Some(path) => {
                    x.push_str(&format!("    <nvram template='{template}'>{}</nvram>\n", esc(&path.to_string_lossy())))
                }
                // libvirt picks /var/lib/libvirt/qemu/nvram/NAME_VARS.fd.
                None => x.push_str(&format!("    <nvram template='{template}'/>\n")),
            }
        }
    }
    if smbios {
        x.push_str("    <smbios mode='sysinfo'/>\n");
    }
    x.push_str("  </os>\n");

    let mut features = String::new();
    if p.acpi {
        features.push_str("    <acpi/>\n");
    }
    if x86 {
        features.push_str("    <apic/>\n");
    }
    if p.smm {
        features.push_str("    <smm state='on'/>\n");
    }
    if !features.is_empty() {
        x.push_str("  <features>\n");
        x.push_str(&features);
        x.push_str("  </features>\n");
    }
    if kvm {
        x.push_str("  <cpu mode='host-passthrough'/>\n");
    } else if p.arch == "aarch64" {
        // QEMU's default CPU for the virt machine is a 32-bit cortex-a15 under TCG.
        x.push_str("  <cpu mode='maximum'/>\n");
    }
    x.push_str("  <clock offset='utc'/>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n");
    x.push_str("  <on_reboot>restart</on_reboot>\n");
    x.push_str("  <on_crash>destroy</on_crash>\n");

    x.push_str("  <devices>\n");
    if pcie_machine(p) {
        // A device can only be hotplugged into a free PCIe root port, and libvirt adds just one
        // beyond those the defined devices take (disks, NICs, its USB controller, RNG, balloon).
        let ports = spec.disks.len() + spec.nics.len() + 3 + HOTPLUG_ROOT_PORTS;
        x.push_str("    <controller type='pci' index='0' model='pcie-root'/>\n");
        x.push_str(&"    <controller type='pci' model='pcie-root-port'/>\n".repeat(ports));
    }
    for (index, disk) in spec.disks.iter().enumerate() {
        x.push_str(&disk_xml(disk, index == 0));
    }
    for nic in &spec.nics {
        x.push_str(&nic_xml(nic));
    }
    // A pty (for `virsh console`) whose output virtlogd appends to the console log.
    x.push_str("    <serial type='pty'>\n");
    x.push_str(&format!("      <log file='{}' append='on'/>\n", esc(&spec.console_log.to_string_lossy())));
    x.push_str("    </serial>\n");
    if p.tpm.is_some() {
        let model = match p.arch.as_str() {
            "x86_64" => "tpm-crb",
            "ppc64le" => "tpm-spapr",
            _ => "tpm-tis",
        };
        // libvirt keeps the swtpm state under /var/lib/libvirt/swtpm/<uuid>; libvirt 9.0 has no way
        // to place it elsewhere, so spec.tpm_state_dir is not rendered.
        x.push_str(&format!("    <tpm model='{model}'>\n      <backend type='emulator' version='2.0'/>\n    </tpm>\n"));
    }
    x.push_str("    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n");
    x.push_str("    <memballoon model='virtio'>\n      <stats period='10'/>\n    </memballoon>\n");
    x.push_str("  </devices>\n");
    x.push_str("</domain>\n");
    x
}

/// `<hci:vm xmlns:hci=... host= id= generation= digest=/>`: who owns the domain and what it was
/// defined from.
pub fn metadata_element(spec: &DomainSpec) -> String {
    format!(
        "<{HCI_PREFIX}:vm xmlns:{HCI_PREFIX}='{HCI_NAMESPACE}' host='{}' id='{}' generation='{}' digest='{}'/>",
        esc(&spec.host_id),
        esc(&spec.vm_id),
        spec.generation,
        esc(&spec.digest())
    )
}

/// Reads the hci metadata element. `virDomainGetMetadata` (looked up by [`HCI_NAMESPACE`]) returns it
/// without its namespace (`<vm host=.../>`); the namespaced form is accepted too. `None` when it is
/// another element or an attribute is missing or malformed.
pub fn parse_owner(xml: &str) -> Option<DomainOwner> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let vm = doc.root_element();
    let namespace = vm.tag_name().namespace();
    if vm.tag_name().name() != "vm" || !(namespace.is_none() || namespace == Some(HCI_NAMESPACE)) {
        return None;
    }
    owner_from(vm)
}

/// The owner in a whole domain XML (its `<metadata>`'s hci element), e.g. a migration target's.
pub fn parse_owner_in_domain(xml: &str) -> Option<DomainOwner> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let vm =
        doc.descendants().find(|n| n.tag_name().name() == "vm" && n.tag_name().namespace() == Some(HCI_NAMESPACE))?;
    owner_from(vm)
}

fn owner_from(vm: roxmltree::Node<'_, '_>) -> Option<DomainOwner> {
    Some(DomainOwner {
        host_id: vm.attribute("host")?.to_string(),
        vm_id: vm.attribute("id")?.to_string(),
        generation: vm.attribute("generation")?.parse().ok()?,
        digest: vm.attribute("digest")?.to_string(),
    })
}

/// The `<disk>` element [`render`] writes for `disk` (for hotplug); `boot` as for the first disk.
pub fn disk_device(disk: &DiskSpec, boot: bool) -> String {
    disk_xml(disk, boot)
}

fn disk_xml(disk: &DiskSpec, boot: bool) -> String {
    // File images use the host page cache (writeback; the guest's flushes are honoured): O_DIRECT
    // (cache='none') fails on tmpfs. Block devices (LVM) bypass it.
    let (kind, driver, source) = match &disk.source {
        DiskSource::File { path, format } => (
            "file",
            format!("<driver name='qemu' type='{}' cache='writeback' discard='unmap'/>", esc(format)),
            format!("<source file='{}'/>", esc(&path.to_string_lossy())),
        ),
        DiskSource::Block { path } => (
            "block",
            "<driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/>".to_string(),
            format!("<source dev='{}'/>", esc(&path.to_string_lossy())),
        ),
        DiskSource::Rbd { pool, image, monitors } => {
            let mut source = format!("<source protocol='rbd' name='{}/{}'>", esc(pool), esc(image));
            for monitor in monitors {
                let (host, port) = split_host_port(monitor);
                match port {
                    Some(port) => source.push_str(&format!("<host name='{}' port='{}'/>", esc(host), esc(port))),
                    None => source.push_str(&format!("<host name='{}'/>", esc(host))),
                }
            }
            source.push_str("</source>");
            ("network", "<driver name='qemu' type='raw' cache='writeback' discard='unmap'/>".to_string(), source)
        }
    };
    let mut x = format!("    <disk type='{kind}' device='disk'>\n      {driver}\n      {source}\n");
    x.push_str(&format!("      <target dev='{}' bus='virtio'/>\n", esc(&disk.target)));
    if let Some(serial) = disk_serial(&disk.volume_id) {
        x.push_str(&format!("      <serial>{serial}</serial>\n"));
    }
    if boot {
        x.push_str("      <boot order='1'/>\n");
    }
    x.push_str("    </disk>\n");
    x
}

/// The volume id as the disk's serial (the guest sees /dev/disk/by-id/virtio-<id>), when it fits
/// virtio-blk's 20 bytes and libvirt's serial alphabet; otherwise no serial.
fn disk_serial(volume_id: &str) -> Option<&str> {
    let ok = !volume_id.is_empty()
        && volume_id.len() <= 20
        && volume_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'));
    ok.then_some(volume_id)
}

/// `host:port`, `[v6]:port`, `host` or a bare IPv6 address.
fn split_host_port(monitor: &str) -> (&str, Option<&str>) {
    if let Some(rest) = monitor.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').filter(|p| !p.is_empty()));
        }
    }
    match monitor.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (monitor, None),
    }
}

fn nic_xml(nic: &NicSpec) -> String {
    // No managed='no': libvirt creates the tap under this name at start (unattached, up) and
    // deletes it when the domain stops, so no host setup is needed before start.
    format!(
        "    <interface type='ethernet'>\n      <mac address='{}'/>\n      <target dev='{}'/>\n      <model type='virtio'/>\n    </interface>\n",
        esc(&nic.mac),
        esc(&nic.tap)
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Escapes text for XML content and single- or double-quoted attributes. Characters XML 1.0 cannot
/// carry at all (most control characters) become U+FFFD, so the document always stays well-formed.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
