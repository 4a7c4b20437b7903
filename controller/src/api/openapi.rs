//! The OpenAPI 3 document of the operator API, generated from the handlers' annotations.
//!
//! The checked-in copy (`docs/openapi.json`) must equal what this produces; a test fails on drift.

use utoipa::OpenApi;

use super::{cluster, hosts, misc, tenants, vms, volumes, zones};

#[derive(OpenApi)]
#[openapi(
    info(title = "hci controller API", description = "Operator API of an hci site's controller cluster"),
    paths(
        cluster::get, cluster::add_member, cluster::remove_member,
        tenants::create, tenants::list, tenants::get, tenants::update, tenants::delete,
        zones::create, zones::list, zones::get, zones::delete,
        zones::create_policy, zones::list_policies, zones::get_policy, zones::delete_policy,
        volumes::create, volumes::list, volumes::get, volumes::delete,
        volumes::resize, volumes::snapshot, volumes::clone,
        vms::create, vms::list, vms::get, vms::delete, vms::power, vms::migrate,
        hosts::list_hosts, hosts::get_host, hosts::maintenance, hosts::create_join_token, hosts::join_host, hosts::host_heartbeat,
        hosts::host_desired,
        misc::audit,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON, exactly as checked in.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    // The crate version would make the document drift on every release bump; pin the API version.
    doc.info.version = "1".to_string();
    doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}
