use super::*;

/// Splits an octet-counted body back into its messages, checking every count.
fn split(mut body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let space = body
            .iter()
            .position(|b| *b == b' ')
            .unwrap_or_else(|| panic!("no count in {body:?}"));
        let count: usize = std::str::from_utf8(&body[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad count {:?}", &body[..space]));
        let frame = &body[space + 1..space + 1 + count];
        assert_eq!(frame.last(), Some(&b'\n'), "a frame ends with its newline");
        out.push(String::from_utf8_lossy(&frame[..count - 1]).into_owned());
        body = &body[space + 1 + count..];
    }
    out
}

#[test]
fn router_message_is_rfc5424_without_structured_data() {
    let at: Timestamp = "2012-07-22T00:06:26.123456Z".parse().unwrap_or_default();
    assert_eq!(
        router_message(at, "at=info method=GET"),
        "<158>1 2012-07-22T00:06:26.123456+00:00 host heroku router - at=info method=GET"
    );
    let whole: Timestamp = "2012-07-22T00:06:26Z".parse().unwrap_or_default();
    assert!(router_message(whole, "x").contains(" 2012-07-22T00:06:26.000000+00:00 "));
}

#[test]
fn body_counts_octets_of_each_frame() {
    // Heroku's own example: 83 octets for this message and its newline.
    let heroku =
        "<40>1 2012-11-30T06:45:29+00:00 host app web.3 - State changed from starting to up";
    assert_eq!(body([heroku]), format!("83 {heroku}\n").into_bytes());
    let messages = ["a", "ünïcödé counts bytes", "", "trailing newline\n"];
    let body = body(messages);
    assert_eq!(
        split(&body),
        ["a", "ünïcödé counts bytes", "", "trailing newline"]
    );
    assert!(body.starts_with(b"2 a\n"));
}

#[test]
fn frame_ids_are_32_uppercase_hex_and_differ() {
    let id = frame_id();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    assert_ne!(id, frame_id());
    assert!(drain_token().starts_with("d."));
}
