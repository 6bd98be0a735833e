//! The models a server answers for: the base model, and the adapters on it (runs' and the
//! versions registry aliases name), each listed under its own id in `GET /v1/models` and picked
//! by a request's `model` field.

use super::openai::ApiError;
use crate::eval::job::target::{Target, resolve};
use crate::job::JobError;
use crate::model::loading::{DeviceChoice, ModelSpec, TINY, tiny_model_folder};
use crate::project::OpenProject;
use crate::registry::RegisteredModel;
use crate::registry::aliases::aliased_version;
use crate::train::config::TrainConfig;
use crate::train::run::ADAPTER_DIR;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The longest context a server asks of a model (the model's own is the cap).
const SERVE_CONTEXT: usize = 4096;

/// An adapter served beside the base model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterSource {
    /// A run of the project: its final adapter, else its last checkpoint.
    Run(String),
    /// The version a registry alias names, as `NAME@ALIAS`.
    Registry { name: String, alias: String },
}

impl AdapterSource {
    /// `NAME@ALIAS` of `--registry`.
    pub fn registry(text: &str) -> Result<AdapterSource, JobError> {
        match text.split_once('@') {
            Some((name, alias)) if !name.is_empty() && !alias.is_empty() => {
                Ok(AdapterSource::Registry {
                    name: name.to_string(),
                    alias: alias.to_string(),
                })
            }
            _ => Err(JobError::Usage(format!(
                "--registry: {text:?} is not NAME@ALIAS (like demo@production)"
            ))),
        }
    }
}

/// One model id the server answers for.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModel {
    pub id: String,
    /// The adapter on the base model; `None`: the base model alone.
    pub adapter: Option<PathBuf>,
    /// When its files were made, in seconds since 1970 (OpenAI's `created`).
    pub created: u64,
}

/// What a server loads and the ids it answers for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: ModelSpec,
    pub models: Vec<ServedModel>,
    /// The model of requests that name none: the first adapter when there is one.
    pub default: usize,
}

impl Plan {
    /// The served model `id` names (`None`: the default one).
    pub fn find(&self, id: Option<&str>) -> Result<usize, ApiError> {
        let Some(id) = id else {
            return Ok(self.default);
        };
        self.models.iter().position(|m| m.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
            ApiError {
                status: 404,
                ..ApiError::field(
                    "model",
                    "model_not_found",
                    format!(
                        "model: {id:?} is not served here; the models are {}",
                        known.join(", ")
                    ),
                )
            }
        })
    }

    /// The adapters the worker loads, in the order of `models` (the base model first, then
    /// these).
    pub fn adapters(&self) -> impl Iterator<Item = &Path> {
        self.models.iter().filter_map(|m| m.adapter.as_deref())
    }
}

fn created(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The base model's id: `tiny`, or its folder's or file's name.
fn base_id(spec: &ModelSpec) -> String {
    if spec.path.as_os_str() == TINY {
        return TINY.to_string();
    }
    spec.path.file_name().map_or_else(
        || spec.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The registry version `alias` of model `name` names: its base model and its adapter folder,
/// refused when a file of the version changed since it was registered.
fn registered(
    project: &OpenProject,
    name: &str,
    alias: &str,
) -> Result<(ModelSpec, PathBuf), JobError> {
    let model = RegisteredModel::existing(&project.dir, name)?;
    let (version, record) = aliased_version(&model, alias).map_err(|e| match e {
        JobError::Usage(m) => JobError::Usage(format!("--registry: {m}")),
        e => e,
    })?;
    let dir = model.version_dir(version);
    let cfg: TrainConfig = serde_json::from_value(record.training.clone()).map_err(|e| {
        JobError::file(
            &dir.join("version.json"),
            format!("field \"training\": {e}"),
        )
    })?;
    let mut spec = ModelSpec::new(&cfg.model);
    spec.dequantize = cfg.dequantize;
    spec.device = DeviceChoice::parse(&cfg.device).map_err(|e| JobError::Usage(e.to_string()))?;
    Ok((spec, dir.join(ADAPTER_DIR)))
}

/// What a source serves: its id, the base model it was trained on, and its adapter folder.
fn resolve_source(
    project: &OpenProject,
    source: &AdapterSource,
) -> Result<(String, ModelSpec, PathBuf), JobError> {
    match source {
        AdapterSource::Run(run) => {
            let resolved = resolve(project, &Target::Run(run.clone()), None, 0)?;
            let dir = resolved.adapter.ok_or_else(|| {
                JobError::Usage(format!("--run {run}: the run has no adapter yet"))
            })?;
            Ok((run.clone(), resolved.spec, dir))
        }
        AdapterSource::Registry { name, alias } => {
            let (spec, dir) = registered(project, name, alias)?;
            Ok((format!("{name}@{alias}"), spec, dir))
        }
    }
}

/// The plan for `project`: its model (or `base`) alone, or the adapters of `sources` on the
/// model they were trained on, which must be the same for all of them.
pub fn plan(
    project: &OpenProject,
    base: Option<&Path>,
    sources: &[AdapterSource],
) -> Result<Plan, JobError> {
    let mut adapters: Vec<(String, PathBuf)> = Vec::new();
    let mut spec: Option<(String, ModelSpec)> = None;
    for source in sources {
        let (id, trained_on, dir) = resolve_source(project, source)?;
        if adapters.iter().any(|(known, _)| *known == id) {
            return Err(JobError::Usage(format!("{id} is asked for twice")));
        }
        if let Some((first, spec)) = &spec
            && (spec.path != trained_on.path || spec.dequantize != trained_on.dequantize)
        {
            return Err(JobError::Usage(format!(
                "{id} was trained on {}, {first} on {}: one server serves the adapters of one \
                 base model",
                trained_on.path.display(),
                spec.path.display()
            )));
        }
        spec.get_or_insert((id.clone(), trained_on));
        adapters.push((id, dir));
    }
    let mut spec = match spec {
        Some((_, spec)) => spec,
        None => {
            let mut spec = resolve(project, &Target::Base, None, 0)?.spec;
            if let Some(path) = base {
                spec.path = path.to_path_buf();
            }
            spec
        }
    };
    spec.max_len = spec.max_len.max(SERVE_CONTEXT);
    let files = match spec.path.as_os_str() == TINY && !spec.path.exists() {
        true => tiny_model_folder(),
        false => spec.path.clone(),
    };
    let mut models = vec![ServedModel {
        id: base_id(&spec),
        adapter: None,
        created: created(&files),
    }];
    models.extend(adapters.into_iter().map(|(id, dir)| ServedModel {
        id,
        created: created(&dir),
        adapter: Some(dir),
    }));
    Ok(Plan {
        spec,
        default: usize::from(models.len() > 1),
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(ids: &[&str]) -> Plan {
        Plan {
            spec: ModelSpec::new(TINY),
            models: ids
                .iter()
                .map(|id| ServedModel {
                    id: id.to_string(),
                    adapter: None,
                    created: 0,
                })
                .collect(),
            default: ids.len() - 1,
        }
    }

    #[test]
    fn a_request_picks_its_model_by_id() {
        let plan = plan_of(&["tiny", "run-1"]);
        assert_eq!(plan.find(None), Ok(1));
        assert_eq!(plan.find(Some("tiny")), Ok(0));
        let e = plan.find(Some("gpt-4")).expect_err("unknown");
        assert_eq!((e.status, e.code), (404, "model_not_found"));
        assert!(e.message.contains("tiny, run-1"), "{}", e.message);
    }

    #[test]
    fn registry_names_are_name_at_alias() {
        assert_eq!(
            AdapterSource::registry("demo@production").expect("valid"),
            AdapterSource::Registry {
                name: "demo".into(),
                alias: "production".into()
            }
        );
        assert!(AdapterSource::registry("demo").is_err());
        assert!(AdapterSource::registry("@x").is_err());
    }
}
