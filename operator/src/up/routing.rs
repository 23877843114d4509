//! The router in front of `up`'s web dynos, and the drain it posts to.

use std::path::Path;

use super::output::Output;
use super::plan::Plan;
use super::state::DynoState;
use super::{drain, ports, UpError, UpOptions};

/// Starts `dynoscope-sidecar drain` as `drain.1` when the sidecar has it;
/// returns it and the URL the router posts to.
pub(super) fn start_drain(
    options: &UpOptions,
    manifest: &Path,
    console_endpoint: Option<&str>,
    output: &Output,
) -> Option<(drain::DrainProcess, crate::router::drain::DrainUrl)> {
    if !drain::available(&options.sidecar) {
        output.system(
            "dynoscope",
            "no drain: this dynoscope-sidecar has no `drain` subcommand; router lines go to this output only",
        );
        return None;
    }
    let port = drain::ports_of(options.agent_port)?.app;
    let config = match drain::render_config(options, manifest, console_endpoint) {
        Ok(config) => config,
        Err(err) => {
            output.system("dynoscope", &format!("no drain: {err}"));
            return None;
        }
    };
    let url =
        crate::router::drain::DrainUrl::parse(&format!("http://127.0.0.1:{port}/logs")).ok()?;
    let process = drain::DrainProcess::start(options, config, port, output);
    Some((process, url))
}

/// Starts the router on `--port`, printing where it listens.
pub(super) fn start_router(
    options: &UpOptions,
    router_options: crate::router::RouterOptions,
    output: &Output,
    console: Option<crate::console::Console>,
) -> Result<crate::router::Router, UpError> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], options.port));
    let listener = crate::router::bind(addr)?;
    let drain = router_options
        .drain_url
        .as_ref()
        .map_or(String::new(), |url| {
            format!(", lines to the drain at {}", url.authority)
        });
    let router = crate::router::spawn(
        listener,
        router_options,
        crate::router::LineTarget::Up(output.clone(), console),
    )?;
    output.system(
        "dynoscope",
        &format!(
            "router on http://{addr} in front of the web dynos (PORT {} and up){drain}",
            options.app_port_base()
        ),
    );
    Ok(router)
}

/// The web dynos as the router sees them: where each listens and whether it runs.
pub(super) fn web_backends(
    dynos: &[DynoState],
    plan: &Plan,
    app_base: u16,
) -> Vec<crate::router::Backend> {
    use crate::router::{Backend, DynoHealth};
    dynos
        .iter()
        .filter(|d| d.name.starts_with("web."))
        .filter_map(|d| {
            let port = ports::ports(&plan.formation, &d.name, app_base, 0)?.app;
            Some(Backend {
                dyno: d.name.clone(),
                addr: format!("127.0.0.1:{port}"),
                health: match d.state.as_str() {
                    "up" => DynoHealth::Up,
                    "crashed" => DynoHealth::Crashed,
                    _ => DynoHealth::Down,
                },
            })
        })
        .collect()
}
