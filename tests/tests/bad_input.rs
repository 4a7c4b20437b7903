//! Bad input over every endpoint: each refusal has the right 4xx status, the error body shape, a
//! message naming the field at fault, and changes nothing. Never a 5xx.

use hci_tests::api::{Auth, Body};
use hci_tests::{Api, Cluster, Resp};
use reqwest::Method;
use serde_json::{json, Value};

struct Case {
    what: String,
    method: Method,
    path: String,
    body: Option<Body>,
    auth: Auth,
    if_match: Option<String>,
    /// Acceptable statuses (usually one).
    want: Vec<u16>,
    /// A substring the error message must contain: the field at fault.
    field: Option<&'static str>,
}

struct Cases(Vec<Case>);

impl Cases {
    fn add(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<Body>,
        want: &[u16],
        field: Option<&'static str>,
    ) -> &mut Case {
        self.0.push(Case {
            what: what.to_string(),
            method,
            path: path.to_string(),
            body,
            auth: Auth::Token,
            if_match: None,
            want: want.to_vec(),
            field,
        });
        self.0.last_mut().expect("just pushed")
    }
    fn post(&mut self, what: &str, path: &str, body: Value, want: u16, field: Option<&'static str>) -> &mut Case {
        self.add(what, Method::POST, path, Some(Body::Json(body)), &[want], field)
    }
    fn post_raw(&mut self, what: &str, path: &str, body: &str, want: u16, field: Option<&'static str>) -> &mut Case {
        self.add(what, Method::POST, path, Some(Body::Raw(body.to_string())), &[want], field)
    }
    fn put(&mut self, what: &str, path: &str, body: Value, want: u16, field: Option<&'static str>) -> &mut Case {
        self.add(what, Method::PUT, path, Some(Body::Json(body)), &[want], field)
    }
    fn get(&mut self, what: &str, path: &str, want: &[u16]) -> &mut Case {
        self.add(what, Method::GET, path, None, want, None)
    }
    fn delete(&mut self, what: &str, path: &str, want: u16) -> &mut Case {
        self.add(what, Method::DELETE, path, None, &[want], None)
    }
}

/// Every list, and the member set: what a refused request must leave untouched.
fn snapshot(api: &Api) -> Value {
    let mut out = serde_json::Map::new();
    for path in ["/v1/tenants", "/v1/zones", "/v1/zone-policies", "/v1/volumes", "/v1/vms"] {
        let r = api.get(1, path).expect(200, &format!("GET {path}"));
        out.insert(path.to_string(), r.json);
    }
    let c = api.get(1, "/v1/cluster").expect(200, "GET /v1/cluster");
    out.insert("/v1/cluster members".into(), c.json["members"].clone());
    Value::Object(out)
}

fn created(r: Resp, what: &str) -> Value {
    r.expect(201, what).json
}

fn tenant(name: &str, vcpus: u64, memory_mib: u64, disk_gib: u64) -> Value {
    json!({"name": name, "description": "", "quota": {"vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib}})
}

#[test]
fn bad_requests_are_refused_cleanly_and_change_nothing() {
    let c = Cluster::start(1);
    let api = c.api();

    // Fixtures: t1 (small quota) owns zones z1 (used by vm1), z2 (named by a policy), z3 (free),
    // ziso (isolated); volumes v1 (attached to vm1) and v2 (free). t2 is empty.
    created(api.post_json(1, "/v1/tenants", &tenant("t1", 8, 8192, 100)), "tenant t1");
    created(api.post_json(1, "/v1/tenants", &tenant("t2", 8, 8192, 100)), "tenant t2");
    for (name, cidr, kind) in [
        ("z1", "10.1.0.0/24", "normal"),
        ("z2", "10.2.0.0/24", "normal"),
        ("z3", "10.3.0.0/24", "normal"),
        ("ziso", "10.4.0.0/24", "isolated"),
    ] {
        created(
            api.post_json(1, "/v1/zones", &json!({"name": name, "tenant": "t1", "kind": kind, "cidr": cidr})),
            &format!("zone {name}"),
        );
    }
    let policy = created(
        api.post_json(1, "/v1/zone-policies", &json!({"name": "p1", "from_zone": "z1", "to_zone": "z2", "protocol": "tcp", "ports": "22", "action": "allow"})),
        "zone policy p1",
    );
    let pid = policy["id"].as_str().expect("policy id").to_string();
    let v1 =
        created(api.post_json(1, "/v1/volumes", &json!({"name": "v1", "tenant": "t1", "size_gib": 10})), "volume v1");
    let v1 = v1["id"].as_str().expect("volume id").to_string();
    let v2 =
        created(api.post_json(1, "/v1/volumes", &json!({"name": "v2", "tenant": "t1", "size_gib": 5})), "volume v2");
    let v2 = v2["id"].as_str().expect("volume id").to_string();
    let vm = created(
        api.post_json(1, "/v1/vms", &json!({"name": "vm1", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "volumes": [v1], "nics": [{"zone": "z1"}]})),
        "vm vm1",
    );
    let vm1 = vm["id"].as_str().expect("vm id").to_string();
    // t2's own zone and volume, for cross-tenant references.
    created(api.post_json(1, "/v1/zones", &json!({"name": "zt2", "tenant": "t2", "cidr": "10.5.0.0/24"})), "zone zt2");
    let vt2 =
        created(api.post_json(1, "/v1/volumes", &json!({"name": "vt2", "tenant": "t2", "size_gib": 1})), "volume vt2");
    let vt2 = vt2["id"].as_str().expect("volume id").to_string();

    let q = |v: i64| json!({"vcpus": v, "memory_mib": 1024, "disk_gib": 10});
    let long = "x".repeat(64);
    let long_desc = "d".repeat(1025);
    let stale_etag = "\"999999\"";
    let mut cs = Cases(Vec::new());

    // ---- tenants
    let t = "/v1/tenants";
    cs.post("tenant name with uppercase and _", t, tenant("Bad_Name", 1, 1, 1), 400, Some("name"));
    cs.post("tenant name empty", t, tenant("", 1, 1, 1), 400, Some("name"));
    cs.post("tenant name 64 chars", t, tenant(&long, 1, 1, 1), 400, Some("name"));
    cs.post("tenant name starting with -", t, tenant("-lead", 1, 1, 1), 400, Some("name"));
    cs.post(
        "tenant description too long",
        t,
        json!({"name": "okname", "description": long_desc, "quota": q(1)}),
        400,
        Some("description"),
    );
    cs.post("tenant quota.vcpus negative", t, json!({"name": "okname", "quota": q(-1)}), 400, Some("vcpus"));
    cs.post("tenant quota.vcpus huge", t, json!({"name": "okname", "quota": q(2_000_000)}), 400, Some("vcpus"));
    cs.post(
        "tenant quota.disk_gib huge",
        t,
        json!({"name": "okname", "quota": {"vcpus": 1, "memory_mib": 1, "disk_gib": 1u64 << 41}}),
        400,
        Some("disk_gib"),
    );
    cs.post(
        "tenant quota.memory_mib huge",
        t,
        json!({"name": "okname", "quota": {"vcpus": 1, "memory_mib": 1u64 << 41, "disk_gib": 1}}),
        400,
        Some("memory_mib"),
    );
    cs.post(
        "tenant quota.memory_mib beyond u64",
        t,
        json!({"name": "okname", "quota": {"vcpus": 1, "memory_mib": 1e30, "disk_gib": 1}}),
        400,
        Some("memory_mib"),
    );
    cs.post(
        "tenant quota.vcpus a string",
        t,
        json!({"name": "okname", "quota": {"vcpus": "many", "memory_mib": 1, "disk_gib": 1}}),
        400,
        Some("vcpus"),
    );
    cs.post("tenant without quota", t, json!({"name": "okname"}), 400, Some("quota"));
    cs.post("tenant without name", t, json!({"quota": q(1)}), 400, Some("name"));
    cs.post("tenant unknown field", t, json!({"name": "okname", "quota": q(1), "colour": "red"}), 400, Some("colour"));
    cs.post(
        "tenant unknown quota field",
        t,
        json!({"name": "okname", "quota": {"vcpus": 1, "memory_mib": 1, "disk_gib": 1, "gpus": 2}}),
        400,
        Some("gpus"),
    );
    cs.post("tenant name a number", t, json!({"name": 5, "quota": q(1)}), 400, Some("name"));
    cs.post_raw("tenant malformed JSON", t, r#"{"name": "okname", "quota": "#, 400, None);
    cs.post_raw("tenant body an array", t, "[]", 400, None);
    cs.post_raw("tenant body null", t, "null", 400, None);
    cs.post_raw("tenant empty body", t, "", 400, None);
    cs.post("tenant name with non-ASCII", t, tenant("café", 1, 1, 1), 400, Some("name"));
    cs.post(
        "tenant description with control characters",
        t,
        json!({"name": "okname", "description": "a\u{7}b", "quota": q(1)}),
        400,
        Some("description"),
    );
    cs.add(
        "tenant body 3 MB",
        Method::POST,
        t,
        Some(Body::Json(json!({"name": "okname", "description": "d".repeat(3 << 20), "quota": q(1)}))),
        &[400, 413],
        None,
    );
    cs.post("tenant duplicate name", t, tenant("t1", 1, 1, 1), 409, None);
    cs.put("tenant PUT unknown field", "/v1/tenants/t1", json!({"colour": "red"}), 400, Some("colour"));
    cs.put(
        "tenant PUT unknown quota field",
        "/v1/tenants/t1",
        json!({"quota": {"vcpus": 8, "memory_mib": 8192, "disk_gib": 100, "gpus": 1}}),
        400,
        Some("gpus"),
    );
    cs.put("tenant PUT quota.vcpus huge", "/v1/tenants/t1", json!({"quota": q(2_000_000)}), 400, Some("vcpus"));
    cs.put(
        "tenant PUT description too long",
        "/v1/tenants/t1",
        json!({"description": "d".repeat(1025)}),
        400,
        Some("description"),
    );
    cs.put("tenant PUT description a number", "/v1/tenants/t1", json!({"description": 7}), 400, Some("description"));
    cs.put("tenant PUT stale If-Match", "/v1/tenants/t1", json!({"description": "new"}), 412, None).if_match =
        Some(stale_etag.into());
    cs.put("tenant PUT unknown tenant", "/v1/tenants/nope", json!({"description": "new"}), 404, None);
    cs.add("tenant PUT malformed JSON", Method::PUT, "/v1/tenants/t1", Some(Body::Raw("{".into())), &[400], None);
    cs.delete("tenant DELETE stale If-Match", "/v1/tenants/t2", 412).if_match = Some(stale_etag.into());
    cs.delete("tenant DELETE unknown", "/v1/tenants/nope", 404);
    cs.delete("tenant DELETE still owning zones, volumes, vms", "/v1/tenants/t1", 409);
    cs.get("tenant GET unknown", "/v1/tenants/nope", &[404]);
    cs.get("tenant GET invalid name", "/v1/tenants/Bad_Name", &[400, 404]);
    cs.get("tenant GET percent-encoded junk", "/v1/tenants/%ff%00", &[400, 404]);
    cs.add(
        "tenant PATCH (no such method)",
        Method::PATCH,
        "/v1/tenants/t1",
        Some(Body::Json(json!({"description": "x"}))),
        &[405],
        None,
    );
    let plain = Body::Typed { content_type: "text/plain".into(), body: tenant("okname", 1, 1, 1).to_string() };
    cs.add("tenant POST as text/plain", Method::POST, t, Some(plain), &[400, 415], None);

    // ---- zones
    let z = "/v1/zones";
    let zone =
        |name: &str, tenant: &str, cidr: Value| json!({"name": name, "tenant": tenant, "kind": "normal", "cidr": cidr});
    cs.post("zone bad name", z, zone("Bad_Name", "t1", json!("10.9.0.0/24")), 400, Some("name"));
    cs.post("zone name too long", z, zone(&long, "t1", json!("10.9.0.0/24")), 400, Some("name"));
    cs.post("zone unknown tenant", z, zone("zn", "nope", json!("10.9.0.0/24")), 400, Some("tenant"));
    cs.post("zone cidr with host bits", z, zone("zn", "t1", json!("10.0.0.1/24")), 400, Some("cidr"));
    cs.post("zone cidr prefix /33", z, zone("zn", "t1", json!("10.0.0.0/33")), 400, Some("cidr"));
    cs.post("zone cidr prefix /30", z, zone("zn", "t1", json!("10.9.0.0/30")), 400, Some("cidr"));
    cs.post("zone cidr not an address", z, zone("zn", "t1", json!("banana")), 400, Some("cidr"));
    cs.post("zone cidr octet 300", z, zone("zn", "t1", json!("300.1.1.0/24")), 400, Some("cidr"));
    cs.post("zone cidr a number", z, zone("zn", "t1", json!(10)), 400, Some("cidr"));
    cs.post("zone cidr empty", z, zone("zn", "t1", json!("")), 400, Some("cidr"));
    cs.post("zone cidr overlapping z1 (wider)", z, zone("zn", "t1", json!("10.1.0.0/16")), 409, Some("cidr"));
    cs.post("zone cidr overlapping z1 (inside)", z, zone("zn", "t1", json!("10.1.0.128/25")), 409, Some("cidr"));
    cs.post("zone cidr equal to z2, other tenant", z, zone("zn", "t2", json!("10.2.0.0/24")), 409, Some("cidr"));
    cs.post("zone duplicate name", z, zone("z1", "t1", json!("10.9.0.0/24")), 409, None);
    cs.post(
        "zone bad kind",
        z,
        json!({"name": "zn", "tenant": "t1", "kind": "dmz", "cidr": "10.9.0.0/24"}),
        400,
        Some("kind"),
    );
    cs.post("zone vni 0", z, json!({"name": "zn", "tenant": "t1", "cidr": "10.9.0.0/24", "vni": 0}), 400, Some("vni"));
    cs.post(
        "zone vni too big",
        z,
        json!({"name": "zn", "tenant": "t1", "cidr": "10.9.0.0/24", "vni": 16_777_216}),
        400,
        Some("vni"),
    );
    cs.post(
        "zone unknown field",
        z,
        json!({"name": "zn", "tenant": "t1", "cidr": "10.9.0.0/24", "bridge": "br0"}),
        400,
        Some("bridge"),
    );
    for (case, vlan) in
        [("zone vlan 0", json!(0)), ("zone vlan 4095", json!(4095)), ("zone vlan not u16", json!(70_000))]
    {
        cs.post(case, z, json!({"name": "zn", "tenant": "t1", "cidr": "10.9.0.0/24", "vlan": vlan}), 400, Some("vlan"));
    }
    for (case, mtu) in
        [("zone mtu too small", json!(575)), ("zone mtu too big", json!(9001)), ("zone mtu text", json!("big"))]
    {
        cs.post(case, z, json!({"name": "zn", "tenant": "t1", "cidr": "10.9.0.0/24", "mtu": mtu}), 400, Some("mtu"));
    }
    cs.post(
        "zone vlan and vni",
        z,
        json!({"name": "zn", "tenant": "t1", "cidr": "10.9.0.0/24", "vlan": 5, "vni": 20_000}),
        400,
        Some("vlan"),
    );
    cs.post("zone without cidr", z, json!({"name": "zn", "tenant": "t1"}), 400, Some("cidr"));
    cs.get("zone GET unknown", "/v1/zones/nope", &[404]);
    cs.delete("zone DELETE unknown", "/v1/zones/nope", 404);
    cs.delete("zone DELETE in use by a VM NIC", "/v1/zones/z1", 409);
    cs.delete("zone DELETE named by a policy", "/v1/zones/z2", 409);
    cs.delete("zone DELETE stale If-Match", "/v1/zones/z3", 412).if_match = Some(stale_etag.into());

    // ---- zone policies
    let p = "/v1/zone-policies";
    let pol = |proto: &str, ports: &str| json!({"from_zone": "z1", "to_zone": "z3", "protocol": proto, "ports": ports, "action": "allow"});
    cs.post("policy port 0", p, pol("tcp", "0"), 400, Some("ports"));
    cs.post("policy port 70000", p, pol("tcp", "70000"), 400, Some("ports"));
    cs.post("policy port 65536", p, pol("udp", "65536"), 400, Some("ports"));
    cs.post("policy reversed range 10-5", p, pol("tcp", "10-5"), 400, Some("ports"));
    cs.post("policy empty ports for tcp", p, pol("tcp", ""), 400, Some("ports"));
    cs.post("policy empty element", p, pol("tcp", "22,,80"), 400, Some("ports"));
    cs.post("policy ports not numbers", p, pol("tcp", "http"), 400, Some("ports"));
    cs.post("policy negative port", p, pol("tcp", "-3"), 400, Some("ports"));
    cs.post("policy ports with icmp", p, pol("icmp", "22"), 400, Some("ports"));
    cs.post("policy ports with any", p, pol("any", "22"), 400, Some("ports"));
    cs.post("policy unknown protocol", p, pol("http", "80"), 400, Some("protocol"));
    cs.post(
        "policy action deny",
        p,
        json!({"from_zone": "z1", "to_zone": "z3", "protocol": "tcp", "ports": "22", "action": "deny"}),
        400,
        Some("action"),
    );
    cs.post(
        "policy unknown from_zone",
        p,
        json!({"from_zone": "nope", "to_zone": "z3", "protocol": "tcp", "ports": "22"}),
        400,
        Some("from_zone"),
    );
    cs.post(
        "policy unknown to_zone",
        p,
        json!({"from_zone": "z1", "to_zone": "nope", "protocol": "tcp", "ports": "22"}),
        400,
        Some("to_zone"),
    );
    cs.post(
        "policy to an isolated zone",
        p,
        json!({"from_zone": "z1", "to_zone": "ziso", "protocol": "any"}),
        400,
        Some("to_zone"),
    );
    cs.post(
        "policy bad name",
        p,
        json!({"name": "Bad_Name", "from_zone": "z1", "to_zone": "z3", "protocol": "tcp", "ports": "22"}),
        400,
        Some("name"),
    );
    cs.post(
        "policy duplicate name",
        p,
        json!({"name": "p1", "from_zone": "z1", "to_zone": "z3", "protocol": "tcp", "ports": "22"}),
        409,
        None,
    );
    cs.post(
        "policy unknown field",
        p,
        json!({"from_zone": "z1", "to_zone": "z3", "protocol": "tcp", "ports": "22", "priority": 1}),
        400,
        Some("priority"),
    );
    cs.post(
        "policy ports a number",
        p,
        json!({"from_zone": "z1", "to_zone": "z3", "protocol": "tcp", "ports": 22}),
        400,
        Some("ports"),
    );
    cs.get("policy GET unknown", "/v1/zone-policies/nope", &[404]);
    cs.delete("policy DELETE unknown", "/v1/zone-policies/nope", 404);
    cs.delete("policy DELETE stale If-Match", &format!("/v1/zone-policies/{pid}"), 412).if_match =
        Some(stale_etag.into());

    // ---- volumes
    let v = "/v1/volumes";
    let vol = |size: Value| json!({"name": "vn", "tenant": "t1", "size_gib": size});
    cs.post("volume size 0", v, vol(json!(0)), 400, Some("size_gib"));
    cs.post("volume size -1", v, vol(json!(-1)), 400, Some("size_gib"));
    cs.post("volume size 65537 GiB", v, vol(json!(65_537)), 400, Some("size_gib"));
    cs.post("volume size 1e30", v, vol(json!(1e30)), 400, Some("size_gib"));
    cs.post("volume size 1.5", v, vol(json!(1.5)), 400, Some("size_gib"));
    cs.post("volume size a string", v, vol(json!("ten")), 400, Some("size_gib"));
    cs.post("volume size over the tenant quota", v, vol(json!(1000)), 409, None);
    cs.post("volume bad name", v, json!({"name": "Bad_Name", "tenant": "t1", "size_gib": 1}), 400, Some("name"));
    cs.post("volume empty name", v, json!({"name": "", "tenant": "t1", "size_gib": 1}), 400, Some("name"));
    cs.post("volume unknown tenant", v, json!({"name": "vn", "tenant": "nope", "size_gib": 1}), 400, Some("tenant"));
    cs.post(
        "volume bad pool",
        v,
        json!({"name": "vn", "tenant": "t1", "size_gib": 1, "pool": "Bad_Pool"}),
        400,
        Some("pool"),
    );
    cs.post(
        "volume unknown image",
        v,
        json!({"name": "vn", "tenant": "t1", "size_gib": 1, "image": "nope"}),
        400,
        Some("image"),
    );
    cs.post("volume duplicate name in tenant", v, json!({"name": "v1", "tenant": "t1", "size_gib": 1}), 409, None);
    cs.post(
        "volume unknown field",
        v,
        json!({"name": "vn", "tenant": "t1", "size_gib": 1, "thin": true}),
        400,
        Some("thin"),
    );
    cs.post("volume resize unknown id", "/v1/volumes/nope/resize", json!({"size_gib": 6}), 404, None);
    cs.post("volume resize to 0", &format!("/v1/volumes/{v2}/resize"), json!({"size_gib": 0}), 400, Some("size_gib"));
    cs.post(
        "volume resize unknown field",
        &format!("/v1/volumes/{v2}/resize"),
        json!({"size_gib": 6, "fast": true}),
        400,
        Some("fast"),
    );
    cs.add(
        "volume resize shrink",
        Method::POST,
        &format!("/v1/volumes/{v2}/resize"),
        Some(Body::Json(json!({"size_gib": 1}))),
        &[400, 409],
        Some("size_gib"),
    );
    cs.post("volume resize over quota", &format!("/v1/volumes/{v2}/resize"), json!({"size_gib": 1000}), 409, None);
    cs.post(
        "volume snapshot bad name",
        &format!("/v1/volumes/{v2}/snapshot"),
        json!({"name": "Bad_Name"}),
        400,
        Some("name"),
    );
    cs.post("volume snapshot unknown id", "/v1/volumes/nope/snapshot", json!({"name": "s1"}), 404, None);
    cs.post(
        "volume clone bad name",
        &format!("/v1/volumes/{v2}/clone"),
        json!({"name": "Bad_Name"}),
        400,
        Some("name"),
    );
    cs.post("volume clone unknown id", "/v1/volumes/nope/clone", json!({"name": "c1"}), 404, None);
    cs.post("volume clone to an existing name", &format!("/v1/volumes/{v2}/clone"), json!({"name": "v1"}), 409, None);
    cs.get("volume GET unknown", "/v1/volumes/nope", &[404]);
    cs.delete("volume DELETE unknown", "/v1/volumes/nope", 404);
    cs.delete("volume DELETE attached to a VM", &format!("/v1/volumes/{v1}"), 409);
    cs.delete("volume DELETE stale If-Match", &format!("/v1/volumes/{v2}"), 412).if_match = Some(stale_etag.into());

    // ---- vms
    let m = "/v1/vms";
    let vmb = |vcpus: Value, mem: Value| json!({"name": "vmn", "tenant": "t1", "vcpus": vcpus, "memory_mib": mem});
    cs.post("vm vcpus 0", m, vmb(json!(0), json!(512)), 400, Some("vcpus"));
    cs.post("vm vcpus 513", m, vmb(json!(513), json!(512)), 400, Some("vcpus"));
    cs.post("vm vcpus -1", m, vmb(json!(-1), json!(512)), 400, Some("vcpus"));
    cs.post("vm vcpus a string", m, vmb(json!("two"), json!(512)), 400, Some("vcpus"));
    cs.post("vm memory 1 MiB", m, vmb(json!(1), json!(1)), 400, Some("memory_mib"));
    cs.post("vm memory huge", m, vmb(json!(1), json!(1u64 << 40)), 400, Some("memory_mib"));
    cs.post("vm vcpus over quota", m, vmb(json!(9), json!(512)), 409, None);
    cs.post("vm memory over quota", m, vmb(json!(1), json!(16384)), 409, None);
    cs.post(
        "vm bad name",
        m,
        json!({"name": "Bad_Name", "tenant": "t1", "vcpus": 1, "memory_mib": 512}),
        400,
        Some("name"),
    );
    cs.post(
        "vm unknown tenant",
        m,
        json!({"name": "vmn", "tenant": "nope", "vcpus": 1, "memory_mib": 512}),
        400,
        Some("tenant"),
    );
    cs.post(
        "vm unknown arch",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "arch": "sparc"}),
        400,
        Some("arch"),
    );
    cs.post(
        "vm firmware of another arch",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "firmware": "ppc64le-pseries"}),
        400,
        Some("firmware"),
    );
    cs.post(
        "vm unknown firmware",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "firmware": "coreboot"}),
        400,
        Some("firmware"),
    );
    cs.post(
        "vm unknown volume",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "volumes": ["nope"]}),
        400,
        Some("volumes"),
    );
    cs.post(
        "vm volume listed twice",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "volumes": [v2, v2]}),
        400,
        Some("volumes"),
    );
    cs.post(
        "vm volume attached elsewhere",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "volumes": [v1]}),
        409,
        None,
    );
    cs.post(
        "vm unknown zone",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "nics": [{"zone": "nope"}]}),
        400,
        Some("nics"),
    );
    cs.post("vm nic with read-only mac", m, json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "nics": [{"zone": "z1", "mac": "52:54:00:00:00:01"}]}), 400, Some("mac"));
    cs.post(
        "vm bad anti-affinity group",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "anti_affinity_group": "Bad_G"}),
        400,
        Some("anti_affinity_group"),
    );
    cs.post(
        "vm read-only host",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "host": "h1"}),
        400,
        Some("host"),
    );
    cs.post(
        "vm volumes not a list",
        m,
        json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "volumes": "v2"}),
        400,
        Some("volumes"),
    );
    cs.add(
        "vm NIC in another tenant's zone",
        Method::POST,
        m,
        Some(Body::Json(
            json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "nics": [{"zone": "zt2"}]}),
        )),
        &[400, 409],
        Some("nics"),
    );
    cs.add(
        "vm with another tenant's volume",
        Method::POST,
        m,
        Some(Body::Json(json!({"name": "vmn", "tenant": "t1", "vcpus": 1, "memory_mib": 512, "volumes": [vt2]}))),
        &[400, 409],
        Some("volumes"),
    );
    cs.post("vm duplicate name", m, json!({"name": "vm1", "tenant": "t1", "vcpus": 1, "memory_mib": 512}), 409, None);
    cs.get("vm GET unknown", "/v1/vms/nope", &[404]);
    cs.delete("vm DELETE unknown", "/v1/vms/nope", 404);
    cs.delete("vm DELETE stale If-Match", &format!("/v1/vms/{vm1}"), 412).if_match = Some(stale_etag.into());
    for action in ["start", "stop", "reboot"] {
        cs.add(&format!("vm {action} unknown"), Method::POST, &format!("/v1/vms/nope/{action}"), None, &[404], None);
    }
    cs.post("vm migrate unknown", "/v1/vms/nope/migrate", json!({"live": true}), 404, None);
    cs.post(
        "vm migrate unknown field",
        &format!("/v1/vms/{vm1}/migrate"),
        json!({"live": true, "speed": 9}),
        400,
        Some("speed"),
    );
    cs.post("vm migrate live not a bool", &format!("/v1/vms/{vm1}/migrate"), json!({"live": "yes"}), 400, Some("live"));
    cs.add(
        "vm migrate to an unknown host",
        Method::POST,
        &format!("/v1/vms/{vm1}/migrate"),
        Some(Body::Json(json!({"host": "nope", "live": true}))),
        &[400, 404, 409],
        Some("host"),
    );

    // ---- cluster membership
    let cm = "/v1/cluster/members";
    cs.post("member id 0", cm, json!({"id": 0, "addr": "127.0.0.1:1"}), 400, Some("id"));
    cs.post("member addr not HOST:PORT", cm, json!({"id": 7, "addr": "nowhere"}), 400, Some("addr"));
    cs.post("member unknown field", cm, json!({"id": 7, "addr": "127.0.0.1:1", "voter": true}), 400, Some("voter"));

    // ---- authentication and routing
    let wrong = Auth::Header("Bearer not-the-token".into());
    cs.get("list without Authorization", "/v1/tenants", &[401]).auth = Auth::None;
    cs.get("list with a wrong token", "/v1/tenants", &[401]).auth = wrong.clone();
    cs.get("list with Basic auth", "/v1/tenants", &[401]).auth = Auth::Header("Basic YWRtaW46YWRtaW4=".into());
    cs.get("list with an empty bearer", "/v1/tenants", &[401]).auth = Auth::Header("Bearer ".into());
    cs.get("cluster status without Authorization", "/v1/cluster", &[401]).auth = Auth::None;
    cs.get("stale cluster status with a wrong token", "/v1/cluster?stale=true", &[401]).auth = wrong.clone();
    cs.post("valid create without Authorization", t, tenant("noauth", 1, 1, 1), 401, None).auth = Auth::None;
    cs.post("valid create with a wrong token", t, tenant("noauth", 1, 1, 1), 401, None).auth = wrong.clone();
    cs.delete("delete with a wrong token", "/v1/tenants/t2", 401).auth = wrong.clone();
    cs.post("member add with a wrong token", cm, json!({"id": 7, "addr": "127.0.0.1:1"}), 401, None).auth =
        wrong.clone();
    cs.get("audit without Authorization", "/v1/audit", &[401]).auth = Auth::None;
    cs.get("unknown /v1 route", "/v1/nothing-here", &[404]);

    let mut before = snapshot(api);
    let mut failures: Vec<String> = Vec::new();
    for case in &cs.0 {
        let headers: Vec<(&str, &str)> = case.if_match.as_deref().map(|e| ("If-Match", e)).into_iter().collect();
        let r = match api.send(case.method.clone(), 1, &case.path, case.body.clone(), case.auth.clone(), &headers) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {} {}: transport error {e}", case.what, case.method, case.path));
                c.wait_healthy(1);
                continue;
            }
        };
        let mut problems = Vec::new();
        if !case.want.contains(&r.status) {
            problems.push(format!("status {} (want {:?})", r.status, case.want));
        }
        if r.status >= 500 {
            problems.push("a 5xx for bad input".to_string());
        }
        match (r.error_code(), r.error_message()) {
            (Some(_), Some(msg)) => {
                if let Some(field) = case.field {
                    if !msg.contains(field) {
                        problems.push(format!("message does not name field '{field}'"));
                    }
                }
            }
            _ => problems.push("body is not {\"error\": {\"code\", \"message\"}}".to_string()),
        }
        let after = snapshot(api);
        if after != before {
            let changed: Vec<String> = before
                .as_object()
                .expect("object")
                .iter()
                .filter(|(k, v)| after.get(k.as_str()) != Some(v))
                .map(|(k, _)| format!("{k} is now {}", after[k.as_str()]))
                .collect();
            problems.push(format!("state changed ({})", changed.join("; ")));
            // Judge later cases against the state as it now is.
            before = after;
        }
        if !problems.is_empty() {
            failures.push(format!(
                "- {}: {} {} → {}\n    response: {}",
                case.what,
                case.method,
                case.path,
                problems.join("; "),
                r
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases misbehaved:\n{}",
        failures.len(),
        cs.0.len(),
        failures.join("\n")
    );
}

#[test]
fn etags_and_if_match() {
    let c = Cluster::start(1);
    let api = c.api();
    created(api.post_json(1, "/v1/tenants", &tenant("etag", 4, 4096, 40)), "tenant etag");
    let got = api.get(1, "/v1/tenants/etag").expect(200, "GET tenant");
    let etag = got.etag.clone().unwrap_or_else(|| panic!("GET /v1/tenants/etag has no ETag header: {got}"));
    let put = api
        .put(1, "/v1/tenants/etag", &json!({"description": "changed"}), Some(&etag))
        .expect(200, "PUT with the current ETag");
    let new_etag = put.etag.clone().unwrap_or_else(|| panic!("PUT response has no ETag header: {put}"));
    assert_ne!(etag, new_etag, "ETag must change when the tenant changes");
    assert_eq!(put.json["description"], "changed", "PUT response body: {put}");
    // The old ETag is now stale.
    let stale = api.put(1, "/v1/tenants/etag", &json!({"description": "again"}), Some(&etag));
    assert_eq!(stale.status, 412, "PUT with the old ETag: {stale}");
    assert_eq!(stale.error_code(), Some("precondition_failed"), "{stale}");
    let del = api.delete(1, "/v1/tenants/etag", Some(&etag));
    assert_eq!(del.status, 412, "DELETE with the old ETag: {del}");
    api.get(1, "/v1/tenants/etag").expect(200, "tenant still there after refused DELETE");
    let del = api.delete(1, "/v1/tenants/etag", Some(&new_etag));
    assert!(del.ok(), "DELETE with the current ETag: {del}");
    api.get(1, "/v1/tenants/etag").expect(404, "tenant gone after DELETE");
}
