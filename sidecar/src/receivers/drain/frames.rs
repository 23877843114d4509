//! Logplex bodies: octet-counted frames (RFC 6587), `<len> SP <message>`
//! repeated, the message an RFC 5424 line without structured data.
//!
//! Vector's `heroku_logs` source splits on newlines and refuses a body whose
//! count differs from `Logplex-Msg-Count`; here the byte count is honoured
//! (a message may hold newlines) and a malformed frame is skipped and
//! counted while the frames around it are kept: after a bad length the
//! splitter resumes at the next line that starts like a frame (`<len> <`).

/// One frame of a body: its message, or why it was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The message, without a trailing newline.
    Message(&'a [u8]),
    /// Bytes that are not a frame, skipped up to the next frame's start.
    Malformed(MalformedFrame),
}

/// Why bytes of a body were not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedFrame {
    /// No decimal length before the first space.
    NoLength,
    /// The length runs past the end of the body.
    Truncated,
}

impl MalformedFrame {
    /// The counter's label.
    pub fn reason(self) -> &'static str {
        match self {
            MalformedFrame::NoLength => "no_length",
            MalformedFrame::Truncated => "truncated",
        }
    }
}

/// The longest length prefix read: 7 digits, 9.9 MB, more than any body accepted.
const MAX_LENGTH_DIGITS: usize = 7;

/// The frames of `body`, in order.
pub fn frames(body: &[u8]) -> Frames<'_> {
    Frames { rest: body }
}

/// Iterator over a body's frames; see [`frames`].
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        // Whitespace between frames (a trailing newline outside the count) is not a frame.
        let start = self.rest.iter().position(|b| !b.is_ascii_whitespace())?;
        self.rest = &self.rest[start..];
        let Some(length) = length_prefix(self.rest) else {
            self.skip_to_next_frame();
            return Some(Frame::Malformed(MalformedFrame::NoLength));
        };
        let (digits, len) = length;
        let body = &self.rest[digits + 1..];
        if len > body.len() {
            self.skip_to_next_frame();
            return Some(Frame::Malformed(MalformedFrame::Truncated));
        }
        let (message, rest) = body.split_at(len);
        self.rest = rest;
        Some(Frame::Message(
            message.strip_suffix(b"\n").unwrap_or(message),
        ))
    }
}

impl Frames<'_> {
    /// Moves past the current (bad) frame to the next line that starts like one.
    fn skip_to_next_frame(&mut self) {
        let mut from = 0;
        while let Some(nl) = self.rest[from..].iter().position(|&b| b == b'\n') {
            let next = from + nl + 1;
            let line = &self.rest[next..];
            if length_prefix(line).is_some_and(|(digits, _)| line.get(digits + 1) == Some(&b'<')) {
                self.rest = line;
                return;
            }
            from = next;
        }
        self.rest = &[];
    }
}

/// `(digits, value)` of a `<len> ` prefix.
fn length_prefix(bytes: &[u8]) -> Option<(usize, usize)> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_LENGTH_DIGITS || bytes.get(digits) != Some(&b' ') {
        return None;
    }
    let len = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
    Some((digits, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &str) -> String {
        format!("{} {message}", message.len())
    }

    fn messages(body: &[u8]) -> Vec<Result<String, MalformedFrame>> {
        frames(body)
            .map(|f| match f {
                Frame::Message(m) => Ok(String::from_utf8_lossy(m).into_owned()),
                Frame::Malformed(why) => Err(why),
            })
            .collect()
    }

    #[test]
    fn splits_by_byte_count_not_by_newline() {
        let a = "<134>1 2012-07-22T00:06:26+00:00 host app web.1 - one\ntwo\n";
        let b = "<158>1 2012-07-22T00:06:27+00:00 host heroku router - at=info";
        let body = format!("{}{}", frame(a), frame(b));
        assert_eq!(
            messages(body.as_bytes()),
            [
                Ok("<134>1 2012-07-22T00:06:26+00:00 host app web.1 - one\ntwo".to_owned()),
                Ok(b.to_owned())
            ]
        );
    }

    #[test]
    fn a_bad_frame_is_counted_and_the_next_ones_kept() {
        let good = "<134>1 2012-07-22T00:06:26+00:00 host app web.1 - hi\n";
        let body = format!("{}garbage without length\n{}", frame(good), frame(good));
        let found = messages(body.as_bytes());
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].is_ok());
        assert_eq!(found[1], Err(MalformedFrame::NoLength));
        assert!(found[2].is_ok());
    }

    #[test]
    fn a_length_past_the_end_is_truncated() {
        let good = "<134>1 2012-07-22T00:06:26+00:00 host app web.1 - hi\n";
        let body = format!("{}999 <134>1 short\n{}", frame(good), frame(good));
        let found = messages(body.as_bytes());
        assert_eq!(
            found.iter().filter(|f| f.is_ok()).count(),
            2,
            "the frame after a truncated one is found again: {found:?}"
        );
        assert!(found.contains(&Err(MalformedFrame::Truncated)));
        assert_eq!(messages(b"12 <134>1 x"), [Err(MalformedFrame::Truncated)]);
    }

    #[test]
    fn empty_and_whitespace_bodies_have_no_frames() {
        assert!(messages(b"").is_empty());
        assert!(messages(b"\n \n").is_empty());
    }
}
