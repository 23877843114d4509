//! DogStatsD name mappings, as the agent's `dogstatsd_mapper_profiles`:
//! a regular expression over the whole metric name rewrites it into a new
//! name and adds tags, both of which may use the captures (`$1`, `${name}`).
//!
//! The mappings are compiled once per config. A [`RegexSet`] answers "does
//! any mapping match?" in one pass, so names that no mapping touches (nearly
//! all of them) cost one scan rather than one per mapping.

use dynoscope_crds::observability::MappingSpec;
use regex::{Regex, RegexSet};

/// Compiled mappings, applied in order; the first match wins.
#[derive(Clone, Debug)]
pub struct Mapper {
    /// All patterns, anchored, to find the first matching one at once.
    set: RegexSet,
    /// The same patterns, one by one, for their captures.
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    regex: Regex,
    name: String,
    /// `(key, value template)`, in the config's (sorted) order.
    tags: Vec<(String, String)>,
}

/// A name rewritten by a mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The new metric name.
    pub name: String,
    /// `key:value` tags to add.
    pub tags: Vec<String>,
}

/// A mapping that cannot be compiled. Validation of the config rejects
/// these first, so this only fires on a config that skipped validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dogstatsd mapping {index}: {pattern:?} is not a valid regular expression: {reason}")]
pub struct MapperError {
    /// Position of the mapping in the config.
    pub index: usize,
    /// The pattern as written.
    pub pattern: String,
    /// What the regex compiler said.
    pub reason: String,
}

impl Mapper {
    /// No mappings: every name stays as it is.
    pub fn none() -> Self {
        Mapper {
            set: RegexSet::empty(),
            rules: Vec::new(),
        }
    }

    /// Compiles the mappings. Patterns are anchored to the whole name.
    pub fn new(specs: &[MappingSpec]) -> Result<Self, MapperError> {
        let anchored: Vec<String> = specs
            .iter()
            .map(|spec| format!("^(?:{})$", spec.pattern))
            .collect();
        let mut rules = Vec::with_capacity(specs.len());
        for (index, (spec, pattern)) in specs.iter().zip(&anchored).enumerate() {
            let regex = Regex::new(pattern).map_err(|err| MapperError {
                index,
                pattern: spec.pattern.clone(),
                reason: err.to_string(),
            })?;
            rules.push(Rule {
                regex,
                name: spec.name.clone(),
                tags: spec
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
        }
        let set = RegexSet::new(&anchored).map_err(|err| MapperError {
            index: 0,
            pattern: String::new(),
            reason: err.to_string(),
        })?;
        Ok(Self { set, rules })
    }

    /// Whether there is no mapping at all (then [`Mapper::map`] is never needed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rewritten name and added tags, or `None` when no mapping matches.
    pub fn map(&self, name: &str) -> Option<Mapped> {
        if self.rules.is_empty() {
            return None;
        }
        let first = self.set.matches(name).into_iter().next()?;
        let rule = self.rules.get(first)?;
        let captures = rule.regex.captures(name)?;
        let mut new_name = String::new();
        captures.expand(&rule.name, &mut new_name);
        let tags = rule
            .tags
            .iter()
            .map(|(key, template)| {
                let mut tag = format!("{key}:");
                captures.expand(template, &mut tag);
                tag
            })
            .collect();
        Some(Mapped {
            name: new_name,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(pattern: &str, name: &str, tags: &[(&str, &str)]) -> MappingSpec {
        MappingSpec {
            pattern: pattern.to_owned(),
            name: name.to_owned(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn mappings() {
        let mapper = Mapper::new(&[
            spec(
                r"sidekiq\.jobs\.(.*)\.perform",
                "sidekiq.jobs.perform",
                &[("worker", "$1")],
            ),
            spec(
                r"airflow\.(?P<dag>\w+)\.(?P<task>\w+)\.duration",
                "airflow.duration",
                &[("dag", "${dag}"), ("task", "$task")],
            ),
            spec(r"first\.(\w+)", "first.$1", &[]),
            spec(r"first\.(\w+)", "second", &[]),
        ])
        .unwrap();
        type Case<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);
        let cases: &[Case] = &[
            (
                "sidekiq.jobs.HardWorker.perform",
                Some(("sidekiq.jobs.perform", &["worker:HardWorker"])),
            ),
            (
                "airflow.etl.load.duration",
                Some(("airflow.duration", &["dag:etl", "task:load"])),
            ),
            // First match wins.
            ("first.x", Some(("first.x", &[]))),
            // Anchored: a match inside the name is not a match.
            ("my.sidekiq.jobs.A.perform", None),
            ("sidekiq.jobs.A.perform.count", None),
            ("other", None),
        ];
        for (name, want) in cases {
            let got = mapper.map(name);
            let want = want.map(|(n, t)| Mapped {
                name: n.to_owned(),
                tags: t.iter().map(|s| s.to_string()).collect(),
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn empty_mapper_maps_nothing() {
        for mapper in [Mapper::new(&[]).unwrap(), Mapper::none()] {
            assert!(mapper.is_empty());
            assert_eq!(mapper.map("anything"), None);
        }
    }

    #[test]
    fn invalid_pattern_names_the_mapping() {
        let err = Mapper::new(&[spec("ok", "a", &[]), spec("(", "b", &[])]).unwrap_err();
        assert_eq!((err.index, err.pattern.as_str()), (1, "("));
    }
}
