//! The project's registry as MLflow's model registry: each registered model by name, each
//! version as a model version tagged `lablens.version` (its source the adapter among its run's
//! artifacts), and the aliases pointing where lablens' point. A version MLflow has already
//! (by its tag) is not created again.

use super::client::{MlflowClient, MlflowError};
use super::fields::tag;
use crate::registry::Listing;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// The tag of an MLflow model version naming the lablens version it is.
pub const VERSION_TAG: &str = "lablens.version";

/// What pushing one registered model did.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPushed {
    pub name: String,
    pub created: bool,
    /// lablens version → MLflow version.
    pub versions: BTreeMap<u32, String>,
    pub versions_created: usize,
    pub aliases_set: usize,
    pub aliases_removed: usize,
}

/// Where a version's run is in MLflow: its run id and artifact URI.
pub struct PushedRun {
    pub mlflow_run_id: String,
    pub artifact_uri: String,
}

/// The registered model `name`, created when MLflow has none; its aliases as MLflow has them.
fn ensure_model(
    client: &MlflowClient,
    name: &str,
) -> Result<(bool, BTreeMap<String, String>), MlflowError> {
    let found = match client.get("registered-models/get", &[("name", name)]) {
        Ok(found) => found,
        Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => {
            client.post(
                "registered-models/create",
                &json!({"name": name, "description": "registered with lablens",
                        "tags": [tag("lablens.model", name)]}),
            )?;
            return Ok((true, BTreeMap::new()));
        }
        Err(e) => return Err(e),
    };
    let aliases = found["registered_model"]["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["alias"].as_str()?.into(), a["version"].as_str()?.into())))
        .collect();
    Ok((false, aliases))
}

/// MLflow's versions of the model that carry a lablens version tag: lablens → MLflow version.
fn tagged_versions(
    client: &MlflowClient,
    name: &str,
) -> Result<BTreeMap<u32, String>, MlflowError> {
    let filter = format!("name='{name}'");
    let mut found = BTreeMap::new();
    let mut token = String::new();
    loop {
        let mut query = vec![("filter", filter.as_str()), ("max_results", "1000")];
        if !token.is_empty() {
            query.push(("page_token", token.as_str()));
        }
        let page = client.get("model-versions/search", &query)?;
        for v in page["model_versions"].as_array().into_iter().flatten() {
            let lablens = v["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["key"] == json!(VERSION_TAG))
                .and_then(|t| t["value"].as_str()?.parse::<u32>().ok());
            if let (Some(l), Some(m)) = (lablens, v["version"].as_str()) {
                found.entry(l).or_insert_with(|| m.to_string());
            }
        }
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => return Ok(found),
        }
    }
}

/// Pushes one registered model; `run_of` pushes (or finds) the run of a lablens version.
pub fn push_model(
    client: &MlflowClient,
    listing: &Listing,
    run_of: &mut dyn FnMut(
        &crate::registry::version::VersionRecord,
    ) -> Result<PushedRun, MlflowError>,
) -> Result<ModelPushed, MlflowError> {
    let name = &listing.name;
    let (created, mlflow_aliases) = ensure_model(client, name)?;
    let mut versions = tagged_versions(client, name)?;
    let mut versions_created = 0;
    for record in &listing.versions {
        if versions.contains_key(&record.version) {
            continue;
        }
        let run = run_of(record)?;
        let made = client.post(
            "model-versions/create",
            &json!({"name": name, "source": format!("{}/adapter", run.artifact_uri),
                    "run_id": run.mlflow_run_id,
                    "description": record.note.clone().unwrap_or_default(),
                    "tags": [tag(VERSION_TAG, &record.version.to_string()),
                             tag("lablens.run_id", &record.run),
                             tag("lablens.created", &record.created),
                             tag("lablens.user", &record.user)]}),
        )?;
        let number =
            made["model_version"]["version"]
                .as_str()
                .ok_or_else(|| MlflowError::Response {
                    uri: client.uri().to_string(),
                    route: "model-versions/create".into(),
                    detail: format!("no model_version.version in {made}"),
                })?;
        versions.insert(record.version, number.to_string());
        versions_created += 1;
    }
    let (mut aliases_set, mut aliases_removed) = (0, 0);
    for (alias, version) in &listing.aliases {
        let Some(target) = versions.get(version) else {
            continue;
        };
        if mlflow_aliases.get(alias) != Some(target) {
            client.post(
                "registered-models/alias",
                &json!({"name": name, "alias": alias, "version": target}),
            )?;
            aliases_set += 1;
        }
    }
    for alias in mlflow_aliases.keys() {
        if !listing.aliases.contains_key(alias) {
            client.delete(
                "registered-models/alias",
                &json!({"name": name, "alias": alias}),
            )?;
            aliases_removed += 1;
        }
    }
    Ok(ModelPushed {
        name: name.clone(),
        created,
        versions: versions
            .into_iter()
            .filter(|(v, _)| listing.versions.iter().any(|r| r.version == *v))
            .collect(),
        versions_created,
        aliases_set,
        aliases_removed,
    })
}
