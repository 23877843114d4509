//! Ports of dynos that share one host: foreman's `PORT` scheme for the app,
//! and a block of ten ports per dyno for its sidecar's listeners.

use dynoscope_crds::observability::SinkSpec;
use dynoscope_crds::render::{ProcessType, Rendered};
use dynoscope_crds::DynoConfig;

/// Ports of one dyno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynoPorts {
    /// `PORT` for the app: base + 100 × process-type index + instance − 1 (foreman).
    pub app: u16,
    /// First port of the sidecar's block: traces, +1 DogStatsD, +2 admin, +3… Prometheus.
    pub agent: u16,
}

/// The ports of `dyno` (`web.2`) in `formation`, or `None` when it is not part of it.
pub fn ports(
    formation: &[ProcessType],
    dyno: &str,
    app_base: u16,
    agent_base: u16,
) -> Option<DynoPorts> {
    let (kind, instance) = dyno.split_once('.')?;
    let instance: u16 = instance.parse().ok()?;
    let index = u16::try_from(formation.iter().position(|t| t.name == kind)?).ok()?;
    let offset = 100u16
        .checked_mul(index)?
        .checked_add(instance.checked_sub(1)?)?;
    Some(DynoPorts {
        app: app_base.checked_add(offset)?,
        agent: agent_base.checked_add(offset.checked_mul(10)?)?,
    })
}

/// Gives every dyno of `rendered` its own listener ports and re-seals its hash.
pub fn assign(rendered: &mut Rendered, agent_base: u16) {
    let formation = rendered.formation.clone();
    for config in &mut rendered.dynos {
        if let Some(ports) = ports(&formation, &config.dyno, 0, agent_base) {
            apply(config, ports.agent);
        }
    }
}

fn apply(config: &mut DynoConfig, first: u16) {
    config.apm.port = first;
    config.dogstatsd.port = first.saturating_add(1);
    config.admin_port = first.saturating_add(2);
    let mut next = first.saturating_add(3);
    for sink in &mut config.sinks {
        if let SinkSpec::Prometheus { listen, .. } = sink {
            *listen = Some(format!("127.0.0.1:{next}"));
            next = next.saturating_add(1);
        }
    }
    *config = config.clone().seal();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formation() -> Vec<ProcessType> {
        ["web", "worker"]
            .iter()
            .map(|n| ProcessType {
                name: (*n).into(),
                quantity: 2,
                command: None,
            })
            .collect()
    }

    #[test]
    fn foreman_port_scheme() {
        let f = formation();
        let cases = [
            ("web.1", 5000, 18000),
            ("web.2", 5001, 18010),
            ("worker.1", 5100, 19000),
            ("worker.2", 5101, 19010),
        ];
        for (dyno, app, agent) in cases {
            assert_eq!(
                ports(&f, dyno, 5000, 18000),
                Some(DynoPorts { app, agent }),
                "{dyno}"
            );
        }
        assert_eq!(ports(&f, "clock.1", 5000, 18000), None);
        assert_eq!(ports(&f, "web.0", 5000, 18000), None);
        assert_eq!(ports(&f, "web.x", 5000, 18000), None);
    }
}
