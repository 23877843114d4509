//! The one client of `/status`: a blocking HTTP/1.1 `GET` over loopback.
//!
//! Blocking on purpose: its callers are command lines and tests, and a
//! loopback request to a small document needs no runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::SidecarStatus;

/// A status document larger than this is not a sidecar's answer.
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Why the status could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nothing answered.
    #[error(
        "cannot reach the sidecar at {addr}: {source}; is it running, and is its adminPort {addr}?"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something answered, but not with a status document.
    #[error("{addr} did not answer with a sidecar status: {reason}")]
    Response {
        /// The address tried.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

/// `GET /status` from `addr` (`host:port`, normally `127.0.0.1:<adminPort>`);
/// `timeout` bounds the connect and each read.
pub fn fetch(addr: &str, timeout: Duration) -> Result<SidecarStatus, FetchError> {
    let body = get(addr, "/status", timeout)?;
    serde_json::from_slice(&body).map_err(|err| FetchError::Response {
        addr: addr.to_owned(),
        reason: format!("the JSON does not fit: {err}"),
    })
}

/// The body of a `200` answer to `GET path`.
fn get(addr: &str, path: &str, timeout: Duration) -> Result<Vec<u8>, FetchError> {
    let connect = |source| FetchError::Connect {
        addr: addr.to_owned(),
        source,
    };
    let bad = |reason: String| FetchError::Response {
        addr: addr.to_owned(),
        reason,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(connect)?
        .next()
        .ok_or_else(|| connect(std::io::ErrorKind::NotFound.into()))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.set_write_timeout(Some(timeout)).map_err(connect)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    // One write: a server may answer and close after reading the first segment.
    stream.write_all(request.as_bytes()).map_err(connect)?;
    let mut reader = BufReader::new(stream.take(MAX_BODY));
    let io = |err: std::io::Error| bad(format!("while reading the answer: {err}"));

    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .ok_or_else(|| bad(format!("not HTTP: {:?}", line.trim_end())))?;
    if code != "200" {
        return Err(bad(format!("answered {:?}", line.trim_end())));
    }
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Err(bad("the headers end early".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| bad(format!("bad Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size.trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                break;
            }
            let before = body.len();
            (&mut reader)
                .take(size)
                .read_to_end(&mut body)
                .map_err(io)?;
            if (body.len() - before) as u64 != size {
                return Err(bad("a chunk ends early".into()));
            }
            line.clear();
            reader.read_line(&mut line).map_err(io)?;
        }
    } else if let Some(length) = length {
        (&mut reader)
            .take(length)
            .read_to_end(&mut body)
            .map_err(io)?;
        if body.len() as u64 != length {
            return Err(bad(format!(
                "the body ends after {} of {length} bytes",
                body.len()
            )));
        }
    } else {
        reader.read_to_end(&mut body).map_err(io)?;
    }
    Ok(body)
}
