//! What `up` should run: the formation and each dyno's rendered config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dynoscope_crds::procfile::Procfile;
use dynoscope_crds::render::{self, ProcessType, RenderInput};
use dynoscope_crds::DynoConfig;

use super::{UpError, UpOptions};

/// What should run: the formation and each dyno's rendered config.
pub(super) struct Plan {
    pub(super) formation: Vec<ProcessType>,
    pub(super) configs: BTreeMap<String, (PathBuf, DynoConfig)>,
    pub(super) grace: Duration,
}

impl Plan {
    pub(super) fn read(
        options: &UpOptions,
        manifest: &Path,
        rendered_dir: &Path,
    ) -> Result<Option<Plan>, UpError> {
        let file = crate::source::read_file(manifest);
        let Ok(configs) = file.parsed else {
            return Ok(None);
        };
        let Some(config) = configs.first() else {
            return Ok(None);
        };
        let procfile = crate::source::read_procfile(
            Some(&options.app_dir.join("Procfile")),
            &options.app_dir,
        )?
        .unwrap_or_else(Procfile::default);
        let input = RenderInput {
            config,
            procfile: Some(&procfile),
            formation: options.formation.as_ref(),
            heroku_app_name: None,
        };
        let formation = render::resolve_formation(&input);
        let app_dir = rendered_dir.join(render::app_name(config, None));
        let mut configs = BTreeMap::new();
        for kind in &formation {
            for i in 1..=kind.quantity {
                let dyno = format!("{}.{i}", kind.name);
                let path = app_dir.join(format!("{dyno}.yaml"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Ok(config) = DynoConfig::from_yaml(&text, &path.display().to_string()) {
                    configs.insert(dyno, (path, config));
                }
            }
        }
        let grace = configs
            .values()
            .map(|(_, c)| c.grace_period.get())
            .max()
            .unwrap_or(Duration::from_secs(30));
        Ok(Some(Plan {
            formation,
            configs,
            grace,
        }))
    }

    pub(super) fn dyno_names(&self) -> impl Iterator<Item = &str> {
        self.configs.keys().map(String::as_str)
    }

    pub(super) fn command(&self, dyno: &str) -> Option<&str> {
        self.configs
            .get(dyno)
            .and_then(|(_, c)| c.command.as_deref())
    }
}
