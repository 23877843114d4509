use std::time::Duration;

use dynoscope_crds::sidecar_status::{fetch, ReloadResult};

use super::*;

#[tokio::test]
async fn serves_the_typed_status_to_the_one_client() {
    let board = Arc::new(StatusBoard::new("file /etc/dyno.yaml".into()));
    board.set_reload_failed(&std::io::Error::other(
        "dyno.yaml: field `apm.port`: invalid",
    ));
    let stats = Arc::new(Stats::default());
    stats.reloads.failed.inc();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let state = AdminState {
        status: board,
        stats,
    };
    tokio::spawn(serve(listener, state, std::future::pending()));
    let status = tokio::task::spawn_blocking(move || fetch(&addr, Duration::from_secs(5)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.config.source, "file /etc/dyno.yaml");
    assert_eq!(status.counters.get("reloads", "failed"), Some(1));
    let reload = status.last_reload.unwrap_or_default();
    assert_eq!(reload.result, ReloadResult::Error);
    assert_eq!(
        reload.error.as_deref(),
        Some("dyno.yaml: field `apm.port`: invalid")
    );
}
