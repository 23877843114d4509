//! Any body to the OTLP decoders (the first byte picks traces, metrics or
//! logs, protobuf or JSON, gzip or not), then to the conversions.
#![no_main]

use dynoscope_sidecar::receivers::otlp::decode::{decode, decompress, Encoding};
use dynoscope_sidecar::receivers::otlp::delta::{DeltaState, MAX_STATE_BYTES};
use dynoscope_sidecar::receivers::otlp::{logs, metrics, spans};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = if selector & 1 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let gunzipped = if selector & 2 != 0 {
        match decompress(body, "gzip", 1 << 20, |_| true) {
            Ok(Some(bytes)) => bytes,
            _ => return,
        }
    } else {
        body.to_vec()
    };
    match (selector >> 2) % 3 {
        0 => {
            if let Ok(request) = decode::<ExportTraceServiceRequest>(&gunzipped, encoding) {
                let _ = spans::convert(&request);
            }
        }
        1 => {
            if let Ok(request) = decode::<ExportMetricsServiceRequest>(&gunzipped, encoding) {
                let mut state = DeltaState::new(MAX_STATE_BYTES, 0);
                let _ = metrics::convert(&request, &mut state);
                let _ = metrics::convert(&request, &mut state);
            }
        }
        _ => {
            if let Ok(request) = decode::<ExportLogsServiceRequest>(&gunzipped, encoding) {
                let _ = logs::records(&request);
            }
        }
    }
});
