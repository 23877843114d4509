use std::time::Duration;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use hyper::body::Frame;

use super::*;

/// A body of the given chunks; with `stall`, one that then never ends.
struct Chunks {
    chunks: VecDeque<Bytes>,
    stall: bool,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None if self.stall => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

fn announcing(length: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers
}

fn chunked(chunks: &[usize]) -> Body {
    Body::new(Chunks {
        chunks: chunks.iter().map(|&n| Bytes::from(vec![b'x'; n])).collect(),
        stall: false,
    })
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn an_announced_body_is_charged_whole_and_given_back_when_dropped() {
    let budget = BodyBudget::new(1000);
    let held = read_body(
        &budget,
        &announcing(600),
        Body::from(vec![1u8; 600]),
        800,
        SECOND,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held.bytes.len(), 600);
    assert_eq!(budget.available(), 400);
    // A second one does not fit beside it: refused at once, not queued.
    let busy = read_body(
        &budget,
        &announcing(600),
        Body::from(vec![1u8; 600]),
        800,
        SECOND,
    )
    .await;
    assert_eq!(busy.err(), Some(BodyError::Busy));
    drop(held);
    assert_eq!(budget.available(), 1000);
}

#[tokio::test]
async fn a_chunked_body_is_charged_chunk_by_chunk() {
    let budget = BodyBudget::new(1000);
    let held = read_body(
        &budget,
        &HeaderMap::new(),
        chunked(&[100, 200, 300]),
        800,
        SECOND,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held.bytes.len(), 600);
    assert_eq!(budget.available(), 400);
    let busy = read_body(
        &budget,
        &HeaderMap::new(),
        chunked(&[300, 300]),
        800,
        SECOND,
    )
    .await;
    assert_eq!(busy.err(), Some(BodyError::Busy));
    // What the refused body had charged is given back.
    assert_eq!(budget.available(), 400);
}

#[tokio::test]
async fn over_the_limit_is_too_large_announced_or_not() {
    let budget = BodyBudget::new(10_000);
    let announced = read_body(
        &budget,
        &announcing(900),
        Body::from(vec![0u8; 900]),
        800,
        SECOND,
    )
    .await;
    assert_eq!(announced.err(), Some(BodyError::TooLarge(800)));
    let streamed = read_body(
        &budget,
        &HeaderMap::new(),
        chunked(&[500, 500]),
        800,
        SECOND,
    )
    .await;
    assert_eq!(streamed.err(), Some(BodyError::TooLarge(800)));
    assert_eq!(budget.available(), 10_000);
}

#[tokio::test]
async fn a_slow_body_times_out_and_gives_its_charge_back() {
    let budget = BodyBudget::new(1000);
    let slow = Body::new(Chunks {
        chunks: VecDeque::from([Bytes::from_static(b"[")]),
        stall: true,
    });
    let read = read_body(
        &budget,
        &announcing(500),
        slow,
        800,
        Duration::from_millis(50),
    )
    .await;
    let err = read.err().unwrap_or_else(|| panic!("a timeout"));
    assert_eq!(err, BodyError::Timeout(Duration::from_millis(50)));
    assert_eq!(err.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(err.reason(), "body_timeout");
    assert_eq!(budget.available(), 1000);
}

#[test]
fn refusals_have_the_statuses_the_tracers_expect() {
    assert_eq!(BodyError::Busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        BodyError::TooLarge(1).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(BodyError::Incomplete.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn timeouts_are_the_defaults_unless_a_test_overrides_them() {
    assert_eq!(Limits::from_env(|_| None), Limits::default());
    let env = |name: &str| match name {
        IDLE_TIMEOUT_ENV => Some("250".to_owned()),
        BODY_TIMEOUT_ENV => Some("zero".to_owned()),
        _ => None,
    };
    let limits = Limits::from_env(env);
    assert_eq!(limits.idle, Duration::from_millis(250));
    assert_eq!(limits.body, BODY_TIMEOUT);
    assert_eq!(
        Limits::from_env(|_| Some("0".to_owned())),
        Limits::default()
    );
}
