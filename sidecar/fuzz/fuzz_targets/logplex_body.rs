//! Any body posted to the drain: split into octet-counted frames (every
//! message a slice of the body, malformed bytes skipped), each frame's line
//! read and turned into samples, events and records.
#![no_main]

use dynoscope_crds::drain::DrainLogs;
use dynoscope_sidecar::receivers::drain::frames::{frames, Frame};
use dynoscope_sidecar::receivers::drain::metrics::{collect, Batch, Context, Routes};
use dynoscope_sidecar::receivers::drain::{heroku, syslog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let routes = Routes::new(&["/orders/:id".to_owned(), "/static/*".to_owned()]);
    let tags = vec!["env:fuzz".to_owned()];
    let cx = Context { tags: &tags, routes: &routes, logs: DrainLogs::All, service: None, source: None };
    let mut batch = Batch::default();
    let mut message_bytes = 0;
    for frame in frames(data) {
        let Frame::Message(message) = frame else { continue };
        message_bytes += message.len();
        assert!(message_bytes <= data.len());
        if let Ok(line) = syslog::parse(message) {
            collect(&line, &heroku::read(&line), &cx, &mut batch);
        }
    }
    let _ = batch.queued_bytes();
});
