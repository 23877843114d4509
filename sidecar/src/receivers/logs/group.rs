//! Lines into records: the maximum line size, and multi-line grouping (a
//! `multiLine.pattern` that starts a record; Python tracebacks and Ruby, Java
//! and Node stack traces joined to the line before them).
//!
//! A pure state machine per stream: [`Grouper::push`] takes one line and gives
//! back the record it closes, if any; [`Grouper::flush`] closes the open one
//! (the caller does when the stream has been quiet for a moment, and at exit).

use regex::Regex;

/// What marks a line cut at the maximum size, as the Datadog Agent marks it.
pub const TRUNCATED: &str = "...TRUNCATED...";

/// The most lines one record groups; the next line starts a new record.
const MAX_GROUP_LINES: u32 = 1000;

/// How lines are grouped.
#[derive(Clone, Debug)]
pub struct GroupRules {
    /// A line matching it starts a record; others join the open one.
    pub start: Option<Regex>,
    /// Join stack traces to the line before them.
    pub stack_traces: bool,
    /// The longest line (and record) kept whole, in bytes.
    pub max_bytes: usize,
}

/// One record's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The lines without their newlines, joined by `\n`.
    pub text: String,
    /// How many lines.
    pub lines: u32,
    /// Unix milliseconds of its first line.
    pub at_ms: i64,
    /// Lines of it cut at the maximum size.
    pub truncated: u32,
}

/// Where a stack trace is, for the lines that cannot be told apart alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Trace {
    /// No Python traceback open.
    #[default]
    None,
    /// Inside a Python traceback: its `File …` lines and code.
    Python,
    /// After a traceback's closing `ValueError: …` line: a blank line and
    /// `During handling of the above exception…` still belong to it.
    PythonEnded,
}

/// The grouping state of one stream.
#[derive(Debug, Default)]
pub struct Grouper {
    open: Option<Group>,
    trace: Trace,
}

impl Grouper {
    /// Takes one line (its newline, if any, is dropped); returns the record it
    /// closes. `same_write`: the line came in the same read as the one before,
    /// which is how a traceback logged with its message arrives.
    pub fn push(
        &mut self,
        line: &[u8],
        at_ms: i64,
        same_write: bool,
        rules: &GroupRules,
    ) -> Option<Group> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (text, truncated) = cut(line, rules.max_bytes);
        let joins = match &self.open {
            Some(open) => {
                open.lines < MAX_GROUP_LINES
                    && open.text.len() + 1 + text.len() <= rules.max_bytes
                    && self.continues(&text, same_write, rules)
            }
            None => false,
        };
        if joins {
            if let Some(open) = self.open.as_mut() {
                open.text.push('\n');
                open.text.push_str(&text);
                open.lines += 1;
                open.truncated += u32::from(truncated);
            }
            return None;
        }
        self.trace = Trace::None;
        if rules.stack_traces && text.starts_with("Traceback (most recent call last):") {
            self.trace = Trace::Python;
        }
        self.open.replace(Group {
            text,
            lines: 1,
            at_ms,
            truncated: u32::from(truncated),
        })
    }

    /// Closes the open record, if any.
    pub fn flush(&mut self) -> Option<Group> {
        self.trace = Trace::None;
        self.open.take()
    }

    /// Whether a record is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether `line` belongs to the open record; updates the traceback state.
    fn continues(&mut self, line: &str, same_write: bool, rules: &GroupRules) -> bool {
        if let Some(start) = &rules.start {
            return !start.is_match(line);
        }
        if !rules.stack_traces {
            return false;
        }
        let indented = line.starts_with([' ', '\t']);
        if line.starts_with("Traceback (most recent call last):") {
            let joins = same_write || self.trace == Trace::PythonEnded;
            if joins {
                self.trace = Trace::Python;
            }
            return joins;
        }
        match self.trace {
            Trace::Python if !indented && !line.is_empty() => {
                // `ValueError: boom`, `KeyboardInterrupt`: the traceback's last line.
                self.trace = Trace::PythonEnded;
                return true;
            }
            Trace::PythonEnded
                if line.is_empty()
                    || line.starts_with("During handling of the above exception")
                    || line.starts_with("The above exception was the direct cause") =>
            {
                return true;
            }
            Trace::PythonEnded => {
                self.trace = Trace::None;
            }
            _ => {}
        }
        // Java's `\tat …` and `Caused by:`, Node's `    at …`, Ruby's `\tfrom …`.
        (indented && !line.trim().is_empty())
            || line.starts_with("Caused by: ")
            || (same_write && line.starts_with("Traceback"))
    }
}

/// The line as text, at most `max` bytes (cut on a character boundary, with
/// [`TRUNCATED`] after it); and whether it was cut. Invalid UTF-8 becomes
/// U+FFFD, which counts with its three bytes.
pub fn cut(line: &[u8], max: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(&line[..line.len().min(max)]);
    if line.len() <= max && text.len() <= max {
        return (text.into_owned(), false);
    }
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = text[..end].to_owned();
    cut.push_str(TRUNCATED);
    (cut, true)
}
