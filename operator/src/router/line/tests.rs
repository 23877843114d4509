use super::*;

fn info() -> RouterLine {
    RouterLine {
        method: "GET".into(),
        path: "/cart?id=3".into(),
        host: "localhost:5000".into(),
        request_id: "407b828f-ec16-4fef-8ff3-25e749e57945".into(),
        fwd: "127.0.0.1".into(),
        dyno: Some("web.1".into()),
        connect_ms: Some(1),
        service_ms: Some(23),
        status: 200,
        bytes: Some(1234),
        protocol: "http",
        ..RouterLine::default()
    }
}

#[test]
fn info_line_is_herokus() {
    assert_eq!(
        info().to_string(),
        "at=info method=GET path=\"/cart?id=3\" host=localhost:5000 \
         request_id=407b828f-ec16-4fef-8ff3-25e749e57945 fwd=\"127.0.0.1\" dyno=web.1 \
         connect=1ms service=23ms status=200 bytes=1234 protocol=http"
    );
}

#[test]
fn error_lines_leave_unknown_values_empty() {
    let line = RouterLine {
        code: Some("H14"),
        dyno: None,
        connect_ms: None,
        service_ms: None,
        status: 503,
        bytes: None,
        ..info()
    };
    assert_eq!(
        line.to_string(),
        "at=error code=H14 desc=\"No web dynos running\" method=GET path=\"/cart?id=3\" \
         host=localhost:5000 request_id=407b828f-ec16-4fef-8ff3-25e749e57945 fwd=\"127.0.0.1\" \
         dyno= connect= service= status=503 bytes= protocol=http"
    );
    let timeout = RouterLine {
        code: Some("H12"),
        service_ms: Some(30000),
        status: 503,
        bytes: Some(0),
        ..info()
    };
    assert!(timeout
        .to_string()
        .starts_with("at=error code=H12 desc=\"Request timeout\" method=GET"));
    assert!(timeout
        .to_string()
        .contains(" dyno=web.1 connect=1ms service=30000ms status=503 bytes=0 "));
}

#[test]
fn quotes_in_a_path_do_not_end_the_value() {
    let line = RouterLine {
        path: "/a\"b\nc".into(),
        ..info()
    };
    assert!(line.to_string().contains("path=\"/a_b_c\""));
}

#[test]
fn request_ids_kept_only_when_valid() {
    let cases = [
        ("407b828f-ec16-4fef-8ff3-25e749e57945", true),
        ("abcdefghij0123456789", true),
        ("abcdefghij012345678", false),
        ("a+b=c/d-e_fghij0123456789", false),
        ("a+b=c/d-efghij0123456789", true),
        ("has space in it 0123456789", false),
    ];
    for (id, valid) in cases {
        assert_eq!(valid_request_id(id), valid, "{id}");
    }
    assert!(valid_request_id(&"x".repeat(200)));
    assert!(!valid_request_id(&"x".repeat(201)));
}

#[test]
fn new_ids_are_uuid_v4() {
    let id = new_request_id();
    let re =
        regex::Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(re.is_match(&id), "{id}");
    assert_ne!(id, new_request_id());
    assert!(valid_request_id(&id));
}

#[test]
fn the_readme_shows_lines_as_the_router_writes_them() {
    let readme = include_str!("../../../../README.md");
    let cart = RouterLine {
        path: "/cart".into(),
        host: "127.0.0.1:5000".into(),
        request_id: "9c1d6c3a-2b1e-4f0a-9d55-0c2f3e4b5a69".into(),
        dyno: Some("web.2".into()),
        connect_ms: Some(0),
        service_ms: Some(12),
        bytes: Some("200 /cart\n".len() as u64),
        ..info()
    };
    let slow = RouterLine {
        code: Some("H12"),
        path: "/slow?ms=3000".into(),
        request_id: "5e0b7a9c-61f2-4c4d-8a3e-2d9f1b7c6e05".into(),
        dyno: Some("web.1".into()),
        service_ms: Some(2001),
        status: 503,
        bytes: None,
        ..cart.clone()
    };
    for line in [cart, slow] {
        let text = format!("heroku[router]   | {line}\n");
        assert!(readme.contains(&text), "README.md lacks {text}");
    }
}
