//! A cold move's local volumes: the source agent flattens each into a checksummed export
//! (`POST /agent/v1/volumes/{id}/export`), which the target downloads and verifies.
//!
//! It exists so the URLs and checksums a cold move imports are known before the move is committed
//! (they travel in the command). Exports are deleted on the source when the move finishes.

use std::time::Duration;

use hci_shared::agent::VolumeExport;
use hci_shared::resources::VolumeImport;
use hci_shared::ApiError;

/// Flattening a large volume takes a while; this is per volume.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(600);
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the source agent at `agent_url` to export each of `volumes`.
pub async fn export_all(
    http: &reqwest::Client,
    agent_url: &str,
    volumes: &[String],
) -> Result<Vec<VolumeImport>, ApiError> {
    let mut imports = Vec::with_capacity(volumes.len());
    for volume in volumes {
        imports.push(export_one(http, agent_url, volume).await?);
    }
    Ok(imports)
}

async fn export_one(http: &reqwest::Client, agent_url: &str, volume: &str) -> Result<VolumeImport, ApiError> {
    let base = agent_url.trim_end_matches('/');
    let failed =
        |why: String| ApiError::unavailable(format!("the source host could not export volume '{volume}': {why}"));
    let answer = http
        .post(format!("{base}/agent/v1/volumes/{volume}/export"))
        .timeout(EXPORT_TIMEOUT)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        return Err(if status.is_client_error() {
            ApiError::conflict(format!("the source host refused to export volume '{volume}': {status} {body}"))
        } else {
            failed(format!("{status} {body}"))
        });
    }
    let export: VolumeExport = answer.json().await.map_err(|e| failed(format!("unexpected answer: {e}")))?;
    let export_name = export.url_path.rsplit('/').next().unwrap_or_default().to_string();
    Ok(VolumeImport {
        volume: volume.to_string(),
        url: format!("{base}{}", export.url_path),
        sha256: export.sha256,
        export: export_name,
    })
}

/// Deletes a finished move's export on the source (best effort: a leftover file is only space).
pub async fn delete(http: &reqwest::Client, agent_url: &str, export: &str) {
    let url = format!("{}/agent/v1/exports/{export}", agent_url.trim_end_matches('/'));
    match http.delete(&url).timeout(DELETE_TIMEOUT).send().await {
        Ok(answer) if answer.status().is_success() || answer.status() == reqwest::StatusCode::NOT_FOUND => {}
        Ok(answer) => tracing::warn!(%url, status = %answer.status(), "export not deleted on the source"),
        Err(e) => tracing::warn!(%url, error = %e, "export not deleted on the source"),
    }
}
