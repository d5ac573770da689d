//! The web client's files: served at `/` and `/app/…` with a CSP and strong ETags, revalidated
//! with 304, absent from the OpenAPI document; an unknown file is a problem document.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use super::TestApp;

#[tokio::test]
async fn the_page_is_html_with_a_same_origin_csp_and_a_strong_etag() {
    let app = TestApp::new();
    let reply = app.get("/", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(String::from_utf8_lossy(&reply.body).contains(r#"<script type="module" src="/app/app.js">"#));
    let csp = reply.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("http") && !csp.contains("unsafe-inline"), "this origin only: {csp}");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-cache");
    let etag = reply.headers[header::ETAG].to_str().unwrap();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong: {etag}");
}

#[tokio::test]
async fn if_none_match_with_the_current_tag_answers_304_without_a_body() {
    let app = TestApp::new();
    for path in ["/", "/app/app.js", "/app/style.css"] {
        let first = app.get(path, None).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        let etag = first.headers[header::ETAG].clone();
        let request = Request::get(path).header(header::IF_NONE_MATCH, etag.clone()).body(Body::empty()).unwrap();
        let again = app.send(request).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.headers[header::ETAG], etag);
        let stale =
            Request::get(path).header(header::IF_NONE_MATCH, "\"an-older-version\"").body(Body::empty()).unwrap();
        assert_eq!(app.send(stale).await.status, StatusCode::OK, "{path}");
    }
    let script = app.get("/app/event.js", None).await;
    assert_eq!(script.headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_ne!(script.headers[header::ETAG], app.get("/app/app.js", None).await.headers[header::ETAG]);
}

#[tokio::test]
async fn an_unknown_file_is_a_404_problem_document() {
    let app = TestApp::new();
    app.get("/app/nothing.js", None).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.get("/app/", None).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.get("/app/..%2Fsrc%2Flib.rs", None).await.problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_client_is_not_in_the_openapi_document() {
    let app = TestApp::new();
    let doc = app.get("/openapi.json", None).await.ok(StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(
            |p| p.starts_with("/v1/") || ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&p.as_str())
        ),
        "{:?}",
        paths.keys()
    );
}
