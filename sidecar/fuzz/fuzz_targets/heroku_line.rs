//! One drained line, header and all: the RFC 5424 header, what the line is
//! (router, runtime, add-on, …) and the samples it makes, whose values are
//! finite and whose names are `heroku.*`.
#![no_main]

use dynoscope_crds::drain::DrainLogs;
use dynoscope_sidecar::receivers::drain::metrics::{collect, Batch, Context, Routes};
use dynoscope_sidecar::receivers::drain::{heroku, syslog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = syslog::parse(data) else { return };
    let routes = Routes::new(&["/a/:b/*".to_owned()]);
    let cx = Context { tags: &[], routes: &routes, logs: DrainLogs::App, service: None, source: None };
    let mut batch = Batch::default();
    collect(&line, &heroku::read(&line), &cx, &mut batch);
    for sample in &batch.samples {
        assert!(sample.name.starts_with("heroku."), "{}", sample.name);
        assert!(sample.value.is_finite(), "{sample:?}");
    }
});
