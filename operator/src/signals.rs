//! The stop signals (SIGINT, SIGTERM) of the operator's long-running commands.

/// Calls `on_signal` on a thread of its own for every SIGINT or SIGTERM, until it returns `false`.
///
/// A thread with its own small runtime: the commands that need this (`watch`,
/// `up`) are synchronous loops, and the handler must not depend on them.
pub fn on_stop_signals(mut on_signal: impl FnMut() -> bool + Send + 'static) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::error!("cannot handle SIGINT/SIGTERM: no runtime for the signal thread");
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                tracing::error!("cannot install the SIGINT/SIGTERM handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if !on_signal() {
                    return;
                }
            }
        });
    });
}
