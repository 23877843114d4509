use std::time::Instant;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const IDLE: Duration = Duration::from_millis(200);

/// A server of `GET /` → `ok` with `limits`; its address and the shutdown trigger.
async fn start(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(
        listener,
        router,
        limits,
        async {
            let _ = stopped.await;
        },
        || {},
    ));
    (addr, stop)
}

fn limits(max_connections: usize) -> Limits {
    Limits {
        idle_timeout: IDLE,
        max_connections,
        drain: Duration::from_millis(100),
        ..Limits::new()
    }
}

/// Reads until the server closes; what it said and how long that took.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut said = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut said)).await;
    assert!(read.is_ok(), "still open after 5 s");
    (String::from_utf8_lossy(&said).into_owned(), start.elapsed())
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (addr, _stop) = start(limits(8)).await;
    let mut silent = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, took) = until_closed(&mut silent).await;
    assert!(
        took >= IDLE / 2 && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let (addr, _stop) = start(limits(8)).await;
    let mut slow = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = slow.write_all(b"GET / HTTP/1.1\r\nHo").await;
    let (said, took) = until_closed(&mut slow).await;
    assert!(!said.contains("200 OK"), "{said}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_is_answered_then_closed_when_idle() {
    let (addr, _stop) = start(limits(8)).await;
    let mut client = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = client.write_all(REQUEST).await;
    let (said, _) = until_closed(&mut client).await;
    assert!(said.starts_with("HTTP/1.1 200 OK"), "{said}");
    assert!(said.ends_with("ok"), "{said}");
}

#[tokio::test]
async fn past_the_limit_a_connection_waits_for_a_free_slot() {
    let (addr, _stop) = start(limits(1)).await;
    let _holder = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Let the server take the holder's slot first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let mut waiting = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = waiting.write_all(REQUEST).await;
    let mut head = [0u8; 15];
    let read = tokio::time::timeout(Duration::from_secs(5), waiting.read_exact(&mut head)).await;
    assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    // Served only once the idle holder was closed.
    assert!(start.elapsed() >= IDLE / 2, "{:?}", start.elapsed());
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let (addr, stop) = start(Limits {
        idle_timeout: Duration::from_secs(30),
        ..limits(8)
    })
    .await;
    let mut idle = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop.send(());
    let (_, took) = until_closed(&mut idle).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}
