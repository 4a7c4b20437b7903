//! Reads (and, for one repair, edits) the disk parts of libvirt's domain and snapshot XML: the disks
//! of a definition with their targets, sources and formats, one disk's element for a detach, the
//! `<backingStore>` elements libvirt adds after a snapshot, a snapshot's disks and lineage; and
//! writes the snapshot request.
//!
//! It exists to keep XML handling pure and unit-testable, apart from the libvirt calls. It must never
//! talk to libvirt, and never change anything in a document except the elements it is asked to cut.

use std::ops::Range;

use crate::hypervisor::domain_xml::esc;
use crate::hypervisor::DiskSource;

/// One `<disk>` of a domain XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEntry {
    pub target: String,
    /// The `type` attribute: `file`, `block`, `network`, ...
    pub kind: String,
    /// `<driver type=...>`.
    pub format: Option<String>,
    /// What [`source_key`] gives for the same disk: file path, device path or `pool/image`.
    pub source: Option<String>,
    /// The element's bytes in the document.
    range: Range<usize>,
}

/// How a disk source appears in libvirt's XML, to compare a [`DiskSource`] with a defined disk.
pub fn source_key(source: &DiskSource) -> String {
    match source {
        DiskSource::File { path, .. } | DiskSource::Block { path } => path.to_string_lossy().into_owned(),
        DiskSource::Rbd { pool, image, .. } => format!("{pool}/{image}"),
    }
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse(xml).map_err(|e| format!("libvirt XML does not parse: {e}"))
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(name))
}

/// Every `<disk>` under `<devices>` that has a target, in document order.
pub fn disks(domain_xml: &str) -> Result<Vec<DiskEntry>, String> {
    let doc = parse(domain_xml)?;
    let Some(devices) = child(doc.root_element(), "devices") else { return Ok(Vec::new()) };
    Ok(devices
        .children()
        .filter(|n| n.has_tag_name("disk"))
        .filter_map(|disk| {
            let target = child(disk, "target")?.attribute("dev")?.to_string();
            let source = child(disk, "source")
                .and_then(|s| s.attribute("file").or_else(|| s.attribute("dev")).or_else(|| s.attribute("name")));
            Some(DiskEntry {
                target,
                kind: disk.attribute("type").unwrap_or("file").to_string(),
                format: child(disk, "driver").and_then(|d| d.attribute("type")).map(str::to_string),
                source: source.map(str::to_string),
                range: disk.range(),
            })
        })
        .collect())
}

/// The `<disk>` element at `target`, as text (what a detach request names).
pub fn disk_element(domain_xml: &str, target: &str) -> Result<Option<String>, String> {
    Ok(disks(domain_xml)?.into_iter().find(|d| d.target == target).map(|d| domain_xml[d.range].to_string()))
}

/// The document without the `<backingStore>` children of its disks, or `None` when it has none.
/// After a `REUSE_EXT` snapshot libvirt records the old image as the new one's backing store in the
/// persistent definition, under the same file name; the chain belongs in the image headers.
pub fn strip_backing_stores(domain_xml: &str) -> Result<Option<String>, String> {
    let doc = parse(domain_xml)?;
    let Some(devices) = child(doc.root_element(), "devices") else { return Ok(None) };
    let cuts: Vec<Range<usize>> = devices
        .children()
        .filter(|n| n.has_tag_name("disk"))
        .flat_map(|disk| disk.children().filter(|n| n.has_tag_name("backingStore")).map(|b| b.range()))
        .collect();
    if cuts.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(domain_xml.len());
    let mut at = 0;
    for cut in cuts {
        out.push_str(&domain_xml[at..cut.start]);
        at = cut.end;
    }
    out.push_str(&domain_xml[at..]);
    Ok(Some(out))
}

/// The `virDomainSnapshotCreateXML` request: snapshot `name`, every listed disk (target, file)
/// external and qcow2 at its own file name (the overlay is already there: `REUSE_EXT`).
pub fn snapshot_request(name: &str, disks: &[(String, String)]) -> String {
    let mut x = format!(
        "<domainsnapshot>\n  <name>{}</name>\n  <description>hci disk-only snapshot</description>\n  <disks>\n",
        esc(name)
    );
    for (target, file) in disks {
        x.push_str(&format!(
            "    <disk name='{}' snapshot='external' type='file'>\n      <driver type='qcow2'/>\n      <source file='{}'/>\n    </disk>\n",
            esc(target),
            esc(file)
        ));
    }
    x.push_str("  </disks>\n</domainsnapshot>\n");
    x
}

/// What a snapshot's XML says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: String,
    pub parent: Option<String>,
    pub creation_time: i64,
    /// (target, file) of its external disks.
    pub disks: Vec<(String, String)>,
}

pub fn parse_snapshot(xml: &str) -> Result<SnapshotInfo, String> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    let text = |node: Option<roxmltree::Node>| node.and_then(|n| n.text()).map(|t| t.trim().to_string());
    let name = text(child(root, "name")).ok_or("snapshot XML has no <name>")?;
    let disks = child(root, "disks")
        .map(|disks| {
            disks
                .children()
                .filter(|d| d.has_tag_name("disk") && d.attribute("snapshot") == Some("external"))
                .filter_map(|d| {
                    let file = child(d, "source")?.attribute("file")?;
                    Some((d.attribute("name")?.to_string(), file.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(SnapshotInfo {
        name,
        parent: text(child(root, "parent").and_then(|p| child(p, "name"))),
        creation_time: text(child(root, "creationTime")).and_then(|t| t.parse().ok()).unwrap_or(0),
        disks,
    })
}

/// Orders snapshots oldest first: by lineage (a parent before its children), then creation time and
/// name.
pub fn oldest_first(snapshots: Vec<SnapshotInfo>) -> Vec<String> {
    let depth = |s: &SnapshotInfo| {
        let mut depth = 0;
        let mut parent = s.parent.clone();
        while let Some(p) = parent.take() {
            depth += 1;
            if depth > snapshots.len() {
                break;
            }
            parent = snapshots.iter().find(|o| o.name == p).and_then(|o| o.parent.clone());
        }
        depth
    };
    let mut keyed: Vec<(usize, i64, String)> =
        snapshots.iter().map(|s| (depth(s), s.creation_time, s.name.clone())).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "<domain><name>d</name><devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/p/hci-a.qcow2'/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file='/p/hci-a.qcow2'/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'><driver type='raw'/><source protocol='rbd' name='rbd/img'/><target dev='vdb'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg/l'/><target dev='vdc'/><backingStore/></disk>
    <interface type='ethernet'/>
  </devices></domain>";

    #[test]
    fn reads_disks_and_cuts_one_element() {
        let disks = disks(DOMAIN).expect("parses");
        let summary: Vec<_> = disks
            .iter()
            .map(|d| (d.target.as_str(), d.kind.as_str(), d.format.as_deref(), d.source.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("vda", "file", Some("qcow2"), Some("/p/hci-a.qcow2")),
                ("vdb", "network", Some("raw"), Some("rbd/img")),
                ("vdc", "block", None, Some("/dev/vg/l")),
            ]
        );
        let vdb = disk_element(DOMAIN, "vdb").expect("parses").expect("present");
        assert!(vdb.starts_with("<disk type='network'") && vdb.ends_with("</disk>"), "{vdb}");
        assert_eq!(disk_element(DOMAIN, "vdz"), Ok(None));
        let rbd = DiskSource::Rbd { pool: "rbd".into(), image: "img".into(), monitors: vec![] };
        assert_eq!(source_key(&rbd), "rbd/img");
    }

    #[test]
    fn strips_backing_stores_only() {
        let stripped = strip_backing_stores(DOMAIN).expect("parses").expect("had some");
        assert!(!stripped.contains("backingStore"), "{stripped}");
        assert_eq!(disks(&stripped).expect("parses").len(), 3);
        assert!(stripped.contains("<source file='/p/hci-a.qcow2'/>") && stripped.contains("<interface"));
        assert_eq!(strip_backing_stores(&stripped), Ok(None));
    }

    #[test]
    fn snapshot_request_and_info_round_trip() {
        let request = snapshot_request("s<1", &[("vda".into(), "/p/a'.qcow2".into())]);
        let info = parse_snapshot(&request).expect("parses");
        assert_eq!(info.name, "s<1");
        assert_eq!(info.disks, [("vda".to_string(), "/p/a'.qcow2".to_string())]);
        let libvirt = "<domainsnapshot><name>s2</name><parent><name>s1</name></parent><creationTime>17</creationTime>\
            <disks><disk name='vda' snapshot='external' type='file'><source file='/f'/></disk><disk name='hdc' snapshot='no'/></disks>\
            <domain><devices><disk><source file='/inner'/><target dev='vda'/></disk></devices></domain></domainsnapshot>";
        let info = parse_snapshot(libvirt).expect("parses");
        assert_eq!((info.parent.as_deref(), info.creation_time), (Some("s1"), 17));
        assert_eq!(info.disks, [("vda".to_string(), "/f".to_string())]);
    }

    #[test]
    fn orders_by_lineage_then_time() {
        let s = |name: &str, parent: Option<&str>, t| SnapshotInfo {
            name: name.into(),
            parent: parent.map(str::to_string),
            creation_time: t,
            disks: vec![],
        };
        // Same second: the lineage decides.
        let list = vec![s("c", Some("b"), 5), s("a", None, 5), s("b", Some("a"), 5)];
        assert_eq!(oldest_first(list), ["a", "b", "c"]);
    }
}
