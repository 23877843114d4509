//! Dyno sizes under `up`: dynos share one host and its cgroup, so each one's memory
//! is its own process tree, measured by its sidecar against its size's quota.

use dynoscope_crds::defaults;
use dynoscope_crds::dyno::{MemoryFrom, SizeConfig};
use dynoscope_crds::render::Rendered;
use dynoscope_crds::size::{self, SizeOverrides};

/// Gives every dyno of `rendered` the size `--size` names for its type, else the
/// manifest's, else [`defaults::LOCAL_DYNO_SIZE`]; has its sidecar measure its process
/// tree; re-seals its hash.
pub fn apply(rendered: &mut Rendered, overrides: &SizeOverrides) {
    let default = size::parse(defaults::LOCAL_DYNO_SIZE)
        .ok()
        .map(SizeConfig::of);
    for config in &mut rendered.dynos {
        if let Some(size) = overrides.for_type(&config.dyno_type) {
            config.size = Some(SizeConfig::of(size));
        }
        if config.size.is_none() {
            config.size.clone_from(&default);
        }
        config.process_metrics.memory_from = MemoryFrom::ProcessTree;
        *config = config.clone().seal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynoscope_crds::manifest::parse_documents;
    use dynoscope_crds::render::{render, RenderInput};

    #[test]
    fn overrides_win_over_the_manifest_and_every_dyno_measures_its_tree() {
        let text = "apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\n\
                    metadata: {name: shop}\nspec:\n  formation:\n    web: {quantity: 1, size: performance-m}\n    \
                    worker: {quantity: 1, size: standard-2x}\n    clock: {quantity: 1}\n";
        let config = parse_documents(text, "t.yaml")
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0);
        let mut rendered = render(&RenderInput {
            config: &config,
            procfile: None,
            formation: None,
            heroku_app_name: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let overrides =
            SizeOverrides::parse("web=standard-1x,basic").unwrap_or_else(|e| panic!("{e}"));
        let mut plain = rendered.clone();
        apply(&mut rendered, &overrides);
        let sizes: Vec<(&str, Option<&str>)> = rendered
            .dynos
            .iter()
            .map(|d| (d.dyno.as_str(), d.size.as_ref().map(|s| s.name.as_str())))
            .collect();
        assert_eq!(
            sizes,
            [
                ("web.1", Some("standard-1x")),
                ("clock.1", Some("basic")),
                ("worker.1", Some("basic")),
            ]
        );
        for dyno in &rendered.dynos {
            assert_eq!(dyno.process_metrics.memory_from, MemoryFrom::ProcessTree);
            assert_eq!(dyno.config_hash, dyno.compute_hash(), "re-sealed");
        }
        // Without `--size`: the manifest's, else a standard-1X.
        apply(&mut plain, &SizeOverrides::default());
        let sizes: Vec<Option<&str>> = plain
            .dynos
            .iter()
            .map(|d| d.size.as_ref().map(|s| s.name.as_str()))
            .collect();
        assert_eq!(
            sizes,
            [
                Some("performance-m"),
                Some("standard-1x"),
                Some("standard-2x")
            ]
        );
    }
}
