//! `up`'s console: listens before the first render, so the dynos' configs
//! name it only when it runs.

use std::net::{SocketAddr, TcpListener};

use crate::console::Console;

/// Starts the console on `addr`; returns it, the endpoint the dynos' console
/// sinks post to, and the line `up` prints about it. A taken port is not
/// fatal: the formation runs without a console and says so.
pub(super) fn start(addr: Option<SocketAddr>) -> (Option<Console>, Option<String>, String) {
    let Some(addr) = addr else {
        return (None, None, "console off (--no-console)".to_owned());
    };
    let served = TcpListener::bind(addr).and_then(|listener| {
        let local = listener.local_addr()?;
        Ok((Console::serve(listener)?, local))
    });
    match served {
        Ok((console, local)) => {
            console.poll_statuses();
            let url = format!("http://{local}");
            let message = format!("console on {url}");
            (Some(console), Some(url), message)
        }
        Err(err) => (
            None,
            None,
            format!("console not started: cannot listen on {addr}: {err}; pass --console 127.0.0.1:PORT with a free port, or --no-console"),
        ),
    }
}
