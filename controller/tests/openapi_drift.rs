//! The checked-in OpenAPI document must equal the one generated from the code.
//! Regenerate with: `cargo run -p hci-controller -- openapi > docs/openapi.json`.

#[test]
fn checked_in_openapi_matches_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let checked_in = std::fs::read_to_string(path).expect("docs/openapi.json exists");
    let generated = hci_controller::api::openapi::document();
    assert!(
        checked_in == generated,
        "docs/openapi.json drifted from the code; regenerate with `cargo run -p hci-controller -- openapi > docs/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("valid JSON");
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    for path in ["/v1/tenants", "/v1/zones", "/v1/zone-policies", "/v1/volumes", "/v1/vms", "/v1/cluster"] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the document");
    }
}
