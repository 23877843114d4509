//! A network sink's `buffer`: the memory budget, the shares, the disk buffer.

use super::Problems;
use crate::buffer::{BufferSpec, Shares};

/// The smallest memory budget and disk buffer a sink may have.
const MIN_MEMORY_BYTES: u64 = 64 * 1024;
const MIN_DISK_BYTES: u64 = 1024 * 1024;

/// Checks `buffer` (and the older `bufferBytes` beside it) of the sink at `field`.
pub(super) fn check(p: &mut Problems, field: &str, buffer_bytes: Option<i64>, buffer: &BufferSpec) {
    let field = format!("{field}.buffer");
    if let Some(memory) = buffer.memory_bytes {
        if buffer_bytes.is_some() {
            p.error(
                format!("{field}.memoryBytes"),
                "is set beside the sink's bufferBytes: keep one (buffer.memoryBytes replaces bufferBytes)",
            );
        }
        if memory.0 < MIN_MEMORY_BYTES {
            p.error(
                format!("{field}.memoryBytes"),
                format!("is {memory}: must be at least 64Ki; remove it for the default 8Mi"),
            );
        }
    }
    for (kind, share) in Shares::KINDS.iter().zip(buffer.shares.given()) {
        if let Some(share) = share.filter(|&s| s > 100) {
            p.error(
                format!("{field}.shares.{kind}"),
                format!("is {share}: a share is a percent of the memory budget, 0 to 100"),
            );
        }
    }
    if buffer.is_disk() {
        match buffer.path.as_deref().map(str::trim) {
            None | Some("") => p.error(
                format!("{field}.path"),
                "is missing: a disk buffer needs a directory of its own, e.g. path: /var/lib/dynoscope/datadog",
            ),
            Some(path) if !path.starts_with('/') => p.error(
                format!("{field}.path"),
                format!("is {path:?}: give an absolute directory, e.g. /var/lib/dynoscope/datadog"),
            ),
            Some(_) => {}
        }
        if let Some(max) = buffer.max_bytes.filter(|m| m.0 < MIN_DISK_BYTES) {
            p.error(
                format!("{field}.maxBytes"),
                format!(
                    "is {max}: a disk buffer needs at least 1Mi; remove it for the default 256Mi"
                ),
            );
        }
    } else {
        for (name, set) in [
            ("path", buffer.path.is_some()),
            ("maxBytes", buffer.max_bytes.is_some()),
        ] {
            if set {
                p.error(
                    format!("{field}.{name}"),
                    "belongs to a disk buffer: add `type: disk`, or remove it",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::spec;
    use super::super::validate;

    /// (sink's fields, field that must be named, words of the message)
    const CASES: &[(&str, &str, &str)] = &[
        (
            "bufferBytes: 1048576, buffer: {memoryBytes: 2Mi}",
            "spec.sinks[0].buffer.memoryBytes",
            "keep one",
        ),
        (
            "buffer: {memoryBytes: 1Ki}",
            "spec.sinks[0].buffer.memoryBytes",
            "at least 64Ki",
        ),
        (
            "buffer: {shares: {spans: 150}}",
            "spec.sinks[0].buffer.shares.spans",
            "0 to 100",
        ),
        (
            "buffer: {type: disk}",
            "spec.sinks[0].buffer.path",
            "is missing",
        ),
        (
            "buffer: {type: disk, path: buf}",
            "spec.sinks[0].buffer.path",
            "absolute",
        ),
        (
            "buffer: {type: disk, path: /b, maxBytes: 10Ki}",
            "spec.sinks[0].buffer.maxBytes",
            "at least 1Mi",
        ),
        (
            "buffer: {path: /b}",
            "spec.sinks[0].buffer.path",
            "type: disk",
        ),
    ];

    #[test]
    fn each_bad_buffer_names_its_field_and_what_to_do() {
        for (fields, field, words) in CASES {
            let yaml = format!(
                "{{sinks: [{{type: datadog, apiKey: {{fromEnv: DD_API_KEY}}, {fields}}}]}}"
            );
            let problems = validate(&spec(&yaml), None, None);
            assert!(
                problems
                    .iter()
                    .any(|p| p.field == *field && p.message.contains(words)),
                "{fields}: want {field} ({words}) in {problems:?}"
            );
        }
    }

    #[test]
    fn the_readme_example_is_valid_and_reads_as_it_says() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### Buffers").unwrap()..];
        let block = &section[section.find("```yaml\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        let indented: String = block.lines().map(|l| format!("  {l}\n")).collect();
        let spec = {
            let text = format!("apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {{name: shop}}\nspec:\n{indented}");
            crate::manifest::parse_documents(&text, "README.md")
                .unwrap()
                .remove(0)
                .spec
        };
        assert_eq!(validate(&spec, None, None), vec![]);
        let crate::observability::SinkSpec::Datadog {
            buffer: Some(buffer),
            ..
        } = &spec.sinks[0]
        else {
            panic!("{:?}", spec.sinks)
        };
        assert!(buffer.is_disk());
        assert_eq!(buffer.memory_bytes.map(|b| b.0), Some(8 << 20));
        assert_eq!(buffer.max_bytes.map(|b| b.0), Some(256 << 20));
        assert_eq!(buffer.shares.resolved()[0], 30);
    }
}
