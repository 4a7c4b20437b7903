//! The libvirt XML of the rbd backend: the `rbd` storage pool it defines (no `<auth>`: the cluster
//! runs without cephx), the raw volumes it creates, and what it reads back from libvirt's pool XML
//! (type, RBD pool name, monitors, UUID). Also the monitor addresses themselves, checked once.
//!
//! It must never build XML from unchecked or unescaped input.

use crate::volumes::libvirt_xml::escape;

/// A Ceph monitor address: `HOST:PORT`, `[IPV6]:PORT` or `HOST` (librados' default port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Monitor {
    pub host: String,
    pub port: Option<u16>,
}

impl Monitor {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("monitor address '{text}': {why}");
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing ']'"))?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or_else(|| bad("expected ':' after ']'"))?)),
                }
            }
            None => match text.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(bad("an IPv6 address needs brackets ([::1]:6789)")),
                None => (text, None),
            },
        };
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')) {
            return Err(bad("the host must be a name or an IP address"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?),
        };
        Ok(Monitor { host: host.to_string(), port })
    }

    /// `host:port` as librados' `mon_host` takes it (IPv6 in brackets).
    pub fn mon_host(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

/// A persistent `rbd` pool over RBD pool `rbd_pool` (with `uuid` when redefining an existing one).
pub fn pool(name: &str, uuid: Option<&str>, rbd_pool: &str, monitors: &[Monitor]) -> String {
    let mut x = String::from("<pool type='rbd'>\n");
    x.push_str(&format!("  <name>{}</name>\n", escape(name)));
    if let Some(uuid) = uuid {
        x.push_str(&format!("  <uuid>{}</uuid>\n", escape(uuid)));
    }
    x.push_str("  <source>\n");
    x.push_str(&format!("    <name>{}</name>\n", escape(rbd_pool)));
    for m in monitors {
        match m.port {
            Some(port) => x.push_str(&format!("    <host name='{}' port='{port}'/>\n", escape(&m.host))),
            None => x.push_str(&format!("    <host name='{}'/>\n", escape(&m.host))),
        }
    }
    x.push_str("  </source>\n</pool>\n");
    x
}

/// A raw RBD volume (image) of `capacity_bytes`.
pub fn volume(name: &str, capacity_bytes: u64) -> String {
    format!(
        "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{capacity_bytes}</capacity>\n  \
         <target>\n    <format type='raw'/>\n  </target>\n</volume>\n",
        escape(name)
    )
}

/// What matters of an existing pool's XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFacts {
    pub pool_type: String,
    pub uuid: Option<String>,
    pub rbd_pool: Option<String>,
    /// Sorted.
    pub monitors: Vec<Monitor>,
}

pub fn pool_facts(xml: &str) -> Result<PoolFacts, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("pool XML: {e}"))?;
    let root = doc.root_element();
    let text = |node: Option<roxmltree::Node<'_, '_>>| node.and_then(|n| n.text()).map(|t| t.trim().to_string());
    let source = child(root, "source");
    let mut monitors = Vec::new();
    for host in source.iter().flat_map(|s| s.children().filter(|c| c.has_tag_name("host"))) {
        let port = match host.attribute("port") {
            None => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| format!("pool XML: bad monitor port '{p}'"))?),
        };
        monitors.push(Monitor { host: host.attribute("name").unwrap_or_default().to_string(), port });
    }
    monitors.sort();
    Ok(PoolFacts {
        pool_type: root.attribute("type").unwrap_or_default().to_string(),
        uuid: text(child(root, "uuid")),
        rbd_pool: text(source.and_then(|s| child(s, "name"))),
        monitors,
    })
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_parse_and_print() {
        let m = Monitor::parse("127.0.0.1:41939").expect("valid");
        assert_eq!((m.host.as_str(), m.port), ("127.0.0.1", Some(41939)));
        assert_eq!(m.mon_host(), "127.0.0.1:41939");
        let v6 = Monitor::parse("[::1]:6789").expect("valid");
        assert_eq!((v6.host.as_str(), v6.port, v6.mon_host()), ("::1", Some(6789), "[::1]:6789".to_string()));
        assert_eq!(Monitor::parse("mon1").expect("valid").port, None);
        for bad in ["", ":1", "::1", "a:0", "a:x", "a b:1", "a'b:1", "[::1", "[::1]x"] {
            assert!(Monitor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_xml_round_trips() {
        let mons = vec![Monitor::parse("127.0.0.1:1234").expect("valid"), Monitor::parse("m2").expect("valid")];
        let xml = pool("hci-h-p", Some("u-1"), "hci", &mons);
        let facts = pool_facts(&xml).expect("valid");
        assert_eq!(facts.pool_type, "rbd");
        assert_eq!(facts.uuid.as_deref(), Some("u-1"));
        assert_eq!(facts.rbd_pool.as_deref(), Some("hci"));
        assert_eq!(facts.monitors, mons);
        assert!(volume("hci-a", 5).contains("<capacity unit='bytes'>5</capacity>"));
        assert!(volume("a&b", 5).contains("<name>a&amp;b</name>"));
    }
}
