//! An OTLP/HTTP request body → its message: gzip undone within a byte
//! limit, then protobuf or JSON (the OTLP JSON mapping: hex ids, enums as
//! numbers, 64-bit integers as strings or numbers).

use std::io::Read;

use serde::de::DeserializeOwned;

/// How the body is encoded, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (what the SDKs send by default).
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding of a media type (lower case, without parameters); `None` for others.
    pub fn of(media_type: &str) -> Option<Self> {
        match media_type {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The media type answers are written in.
    pub fn media_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// `Content-Encoding` other than gzip or identity.
    #[error("content encoding {0:?} is not supported: send gzip or no encoding")]
    Encoding(String),
    /// Not gzip, or a gzip stream cut short.
    #[error("the body is not valid gzip: {0}")]
    Gzip(std::io::Error),
    /// Decompressed, over the limit.
    #[error("the body decompresses to more than {0} bytes")]
    TooLarge(usize),
    /// The in-flight budget cannot hold the decompressed body now.
    #[error("the sidecar holds its budget of request bytes; retry later")]
    Busy,
    /// Not the protobuf message of this path.
    #[error("not an OTLP protobuf message: {0}")]
    Protobuf(prost::DecodeError),
    /// Not the JSON message of this path.
    #[error("not an OTLP JSON message: {0}")]
    Json(serde_json::Error),
}

impl DecodeError {
    /// The reason it is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Encoding(_) => "unsupported_encoding",
            DecodeError::Gzip(_) => "bad_gzip",
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::Busy => "in_flight_budget",
            DecodeError::Protobuf(_) => "bad_protobuf",
            DecodeError::Json(_) => "bad_json",
        }
    }
}

/// Undoes `content_encoding` (lower case; empty for none) on `body`, never
/// past `limit` bytes, calling `reserve(n)` before the output grows by `n`
/// (a `false` stops with [`DecodeError::Busy`]). `None`: the body is not compressed.
pub fn decompress(
    body: &[u8],
    content_encoding: &str,
    limit: usize,
    mut reserve: impl FnMut(usize) -> bool,
) -> Result<Option<Vec<u8>>, DecodeError> {
    match content_encoding {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => {
            let mut decoder = flate2::read::MultiGzDecoder::new(body);
            let mut out = Vec::new();
            let mut chunk = [0u8; 16 << 10];
            loop {
                let n = decoder.read(&mut chunk).map_err(DecodeError::Gzip)?;
                if n == 0 {
                    return Ok(Some(out));
                }
                if out.len() + n > limit {
                    return Err(DecodeError::TooLarge(limit));
                }
                if !reserve(n) {
                    return Err(DecodeError::Busy);
                }
                out.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        }
        other => Err(DecodeError::Encoding(other.to_owned())),
    }
}

/// Decodes a message of type `T` from `bytes`.
pub fn decode<T>(bytes: &[u8], encoding: Encoding) -> Result<T, DecodeError>
where
    T: prost::Message + Default + DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => T::decode(bytes).map_err(DecodeError::Protobuf),
        Encoding::Json => serde_json::from_slice(bytes).map_err(DecodeError::Json),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap_or_default();
        encoder.finish().unwrap_or_default()
    }

    #[test]
    fn gzip_is_undone_within_the_limit_and_charged() {
        let body = gzip(&[7u8; 100_000]);
        let mut charged = 0;
        let out = decompress(&body, "gzip", 200_000, |n| {
            charged += n;
            true
        });
        assert_eq!(out.ok().flatten().map(|v| v.len()), Some(100_000));
        assert_eq!(charged, 100_000);
        let bomb = decompress(&body, "gzip", 50_000, |_| true);
        assert!(
            matches!(bomb, Err(DecodeError::TooLarge(50_000))),
            "{bomb:?}"
        );
        let busy = decompress(&body, "gzip", 200_000, |_| false);
        assert!(matches!(busy, Err(DecodeError::Busy)), "{busy:?}");
    }

    #[test]
    fn bad_bodies_say_why() {
        let err = |result: Result<ExportTraceServiceRequest, DecodeError>| {
            result.err().map(|e| e.reason())
        };
        assert_eq!(
            err(decode(b"\xff\xff\xff", Encoding::Protobuf)),
            Some("bad_protobuf")
        );
        assert_eq!(
            err(decode(b"{\"resourceSpans\": 3}", Encoding::Json)),
            Some("bad_json")
        );
        let not_gzip = decompress(b"plain", "gzip", 100, |_| true);
        assert_eq!(not_gzip.err().map(|e| e.reason()), Some("bad_gzip"));
        let br = decompress(b"x", "br", 100, |_| true);
        assert_eq!(br.err().map(|e| e.reason()), Some("unsupported_encoding"));
    }

    #[test]
    fn json_and_protobuf_decode_to_the_same_message() {
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"GET /cart","kind":2,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000}]}]}]}"#;
        let from_json: ExportTraceServiceRequest =
            decode(json.as_bytes(), Encoding::Json).unwrap_or_default();
        let span = &from_json.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        let wire = from_json.encode_to_vec();
        let from_wire: ExportTraceServiceRequest =
            decode(&wire, Encoding::Protobuf).unwrap_or_default();
        assert_eq!(from_wire, from_json);
    }
}
