//! The few libvirt storage XML documents the dir-qcow2 backend writes, and the few facts it reads
//! back out of libvirt's own XML (pool type and target path, a volume's format and sizes).
//!
//! Kept as plain string work because libvirt's output is regular and only a handful of elements
//! matter; every value written is escaped. It must never build XML from unescaped input.

use std::path::Path;

/// Escapes text for XML content and quoted attributes: the one escaper of the agent.
pub use crate::hypervisor::domain_xml::esc as escape;

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&apos;", "'").replace("&quot;", "\"").replace("&amp;", "&")
}

/// A persistent directory pool.
pub fn dir_pool(name: &str, directory: &Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        escape(name),
        escape(&directory.to_string_lossy())
    )
}

/// Where a new qcow2 volume's contents come from.
#[derive(Debug, Clone, Copy)]
pub enum Backing<'a> {
    None,
    /// A qcow2 overlay over `path`, read as `format`.
    File {
        path: &'a Path,
        format: &'a str,
    },
}

/// A qcow2 volume (compat 1.1: libvirt would otherwise write the old 0.10 header).
pub fn qcow2_volume(name: &str, capacity_bytes: u64, backing: Backing<'_>) -> String {
    let backing = match backing {
        Backing::None => String::new(),
        Backing::File { path, format } => format!(
            "  <backingStore>\n    <path>{}</path>\n    <format type='{}'/>\n  </backingStore>\n",
            escape(&path.to_string_lossy()),
            escape(format)
        ),
    };
    format!(
        "<volume type='file'>\n  <name>{}</name>\n  <capacity unit='bytes'>{capacity_bytes}</capacity>\n  \
         <allocation unit='bytes'>0</allocation>\n  <target>\n    <format type='qcow2'/>\n    \
         <compat>1.1</compat>\n  </target>\n{backing}</volume>\n",
        escape(name)
    )
}

/// The text between `<open…>` and `</close>` of the first `tag` element, if any.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>")).or_else(|| xml.find(&format!("<{tag} ")))?;
    let body_start = start + xml[start..].find('>')? + 1;
    let end = body_start + xml[body_start..].find(&format!("</{tag}>"))?;
    Some(&xml[body_start..end])
}

/// The value of attribute `attr` on the first `<tag …>` in `xml`.
fn attribute(xml: &str, tag: &str, attr: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag} "))?;
    let open = &xml[start..start + xml[start..].find('>')?];
    for quote in ['\'', '"'] {
        let key = format!("{attr}={quote}");
        if let Some(at) = open.find(&key) {
            let value = &open[at + key.len()..];
            return Some(unescape(&value[..value.find(quote)?]));
        }
    }
    None
}

/// The pool's type (`dir`, `logical`, ...).
pub fn pool_type(xml: &str) -> Option<String> {
    attribute(xml, "pool", "type")
}

/// The `<target><path>` of a pool or volume.
pub fn target_path(xml: &str) -> Option<String> {
    element(element(xml, "target")?, "path").map(|p| unescape(p.trim()))
}

/// The `<target><format type=…>` of a volume, as libvirt probed it (`qcow2`, `raw`, ...).
pub fn target_format(xml: &str) -> Option<String> {
    attribute(element(xml, "target")?, "format", "type")
}

/// A volume's `<capacity>` and `<allocation>` in bytes (libvirt writes them with `unit='bytes'`).
pub fn sizes(xml: &str) -> Option<(u64, u64)> {
    let bytes = |tag: &str| -> Option<u64> {
        let unit = attribute(xml, tag, "unit");
        if unit.as_deref().is_some_and(|u| u != "bytes" && u != "B") {
            return None;
        }
        element(xml, tag)?.trim().parse().ok()
    };
    Some((bytes("capacity")?, bytes("allocation")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: &str = "<volume type='file'>\n  <name>hci-a.qcow2</name>\n  <target>\n    \
        <path>/p/hci-a.qcow2</path>\n    <format type='qcow2'/>\n  </target>\n  <backingStore>\n    \
        <path>/img/x&amp;y.raw</path>\n    <format type='raw'/>\n  </backingStore>\n</volume>\n";

    #[test]
    fn reads_what_libvirt_writes() {
        assert_eq!(target_path(VOL).as_deref(), Some("/p/hci-a.qcow2"));
        assert_eq!(target_format(VOL).as_deref(), Some("qcow2"));
        assert_eq!(
            element(VOL, "backingStore").and_then(|b| element(b, "path")).map(unescape).as_deref(),
            Some("/img/x&y.raw")
        );
        assert_eq!(pool_type("<pool type='dir'>\n<name>x</name></pool>").as_deref(), Some("dir"));
        assert_eq!(target_format("<volume><target><path>/a</path></target></volume>"), None);
        let sized = "<volume><capacity unit='bytes'>1073741824</capacity>\n<allocation unit='bytes'>196608</allocation></volume>";
        assert_eq!(sizes(sized), Some((1 << 30, 196_608)));
        assert_eq!(sizes("<volume><capacity unit='KiB'>1</capacity><allocation>0</allocation></volume>"), None);
    }

    #[test]
    fn written_values_are_escaped() {
        let xml = qcow2_volume("hci-a.qcow2", 5, Backing::File { path: Path::new("/i/<a>&'b"), format: "raw" });
        assert!(xml.contains("<path>/i/&lt;a&gt;&amp;&apos;b</path>"), "{xml}");
        assert!(xml.contains("<format type='raw'/>\n  </backingStore>"), "{xml}");
        assert!(xml.contains("<compat>1.1</compat>"));
        assert_eq!(target_path(&dir_pool("hci-h-p", Path::new("/d/x&y"))).as_deref(), Some("/d/x&y"));
    }
}
