//! Opening the socket of a Redis or Memcached check, plain or TLS.

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;

use super::{tls, CheckError};

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A buffered connection to a server.
pub type Stream = BufReader<Box<dyn Io>>;

/// `host:port`, with brackets around IPv6 addresses.
pub fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port`, wrapping the socket in TLS when `tls` is set.
pub async fn connect(host: &str, port: u16, tls: bool, verify: bool) -> Result<Stream, CheckError> {
    let failed = |reason: String| CheckError::Connect {
        address: address(host, port),
        reason,
    };
    let socket = TcpStream::connect((host, port))
        .await
        .map_err(|error| failed(error.to_string()))?;
    // Requests are small and each waits for its reply.
    let _ = socket.set_nodelay(true);
    let io: Box<dyn Io> = if tls {
        Box::new(
            tls::connect(socket, host, verify)
                .await
                .map_err(|error| failed(error.to_string()))?,
        )
    } else {
        Box::new(socket)
    };
    Ok(BufReader::new(io))
}
