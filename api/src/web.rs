//! The reference web client (`api/web/`): a handful of static files, embedded in the binary, that
//! buy tickets and run sales through the public `/v1` routes only.
//!
//! - `GET /` is the page; `GET /app/{file}` its scripts and style sheet. Routing inside the
//!   client is by hash (`#/events/ID`), so these are all the server ever serves.
//! - Each file carries a strong `ETag` (SHA-256 of its bytes, computed once) and
//!   `Cache-Control: no-cache`: names are not hashed, so a browser revalidates each time and gets
//!   304 while the binary is the same.
//! - The `Content-Security-Policy` allows this origin only: no CDN, no inline script, nothing
//!   framing the page. `data:` images are the tickets' QR codes (SVG from `GET /v1/me/tickets`).
//!
//! Architecture invariant: these routes are not in the OpenAPI document (they are no part of the
//! REST contract, and schemathesis tests every documented operation), and the client is plain ES
//! modules and hand-written CSS: no build step, no third-party code.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Where the client's files are served, below the page itself at `/`.
pub(crate) const ASSET_PREFIX: &str = "/app/";
/// This origin and nothing else. Styles and scripts come from files only; SVG presentation
/// attributes and CSSOM writes are not inline styles, so the client needs no `'unsafe-inline'`.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";
/// Bytes of the SHA-256 kept in an ETag: 128 bits tell any two versions of a file apart.
const ETAG_HASH_BYTES: usize = 16;
/// The largest file embedded: a bound on what one request can make the server send.
const ASSET_BYTES_MAX: usize = 256 * 1024;

struct Asset {
    /// The file's name under `ASSET_PREFIX` (the page: `index.html`, served at `/`).
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", bytes: include_bytes!("../web/index.html") },
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../web/style.css") },
    Asset { name: "app.js", content_type: JS, bytes: include_bytes!("../web/app.js") },
    Asset { name: "api.js", content_type: JS, bytes: include_bytes!("../web/api.js") },
    Asset { name: "ui.js", content_type: JS, bytes: include_bytes!("../web/ui.js") },
    Asset { name: "browse.js", content_type: JS, bytes: include_bytes!("../web/browse.js") },
    Asset { name: "event.js", content_type: JS, bytes: include_bytes!("../web/event.js") },
    Asset { name: "seatmap.js", content_type: JS, bytes: include_bytes!("../web/seatmap.js") },
    Asset { name: "account.js", content_type: JS, bytes: include_bytes!("../web/account.js") },
    Asset { name: "admin.js", content_type: JS, bytes: include_bytes!("../web/admin.js") },
];

/// An asset with its tag, computed on first use.
struct Tagged {
    asset: &'static Asset,
    etag: HeaderValue,
}

static TAGGED: LazyLock<Vec<Tagged>> = LazyLock::new(|| ASSETS.iter().map(tag).collect());

fn tag(asset: &'static Asset) -> Tagged {
    assert!(asset.bytes.len() <= ASSET_BYTES_MAX, "{} is {} bytes", asset.name, asset.bytes.len());
    let digest = Sha256::digest(asset.bytes);
    let etag = format!("\"{}\"", hex::encode(&digest[..ETAG_HASH_BYTES]));
    // Hex digits between quotes: always a valid header value.
    Tagged { asset, etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")) }
}

/// `/` and `/app/{file}`, without state: merged into the public router (`app.rs`).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(page)).route(&format!("{ASSET_PREFIX}{{file}}"), get(asset))
}

async fn page(headers: HeaderMap) -> Result<Response, ApiError> {
    serve("index.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&file, &headers)
}

fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let tagged = TAGGED
        .iter()
        .find(|t| t.asset.name == name)
        .ok_or_else(|| ApiError::NotFound("the web client has no file of this name".into()))?;
    let mut response = if matches(headers, &tagged.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(tagged.asset.content_type))], tagged.asset.bytes)
            .into_response()
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, tagged.etag.clone());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// `If-None-Match` names this tag (or is `*`). Weak comparison, as RFC 9110 asks for it: a
/// `W/` prefix is ignored.
fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == etag
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_quoted_tag() {
        let tags: std::collections::BTreeSet<_> = TAGGED.iter().map(|t| t.etag.clone()).collect();
        assert_eq!(tags.len(), ASSETS.len());
        assert!(TAGGED.iter().all(|t| t.etag.len() == 2 + 2 * ETAG_HASH_BYTES && t.etag.as_bytes()[0] == b'"'));
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_a_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        let with = |v: &'static str| HeaderMap::from_iter([(header::IF_NONE_MATCH, HeaderValue::from_static(v))]);
        assert!(matches(&with("\"abc\""), &etag));
        assert!(matches(&with("\"x\", W/\"abc\""), &etag));
        assert!(matches(&with("*"), &etag));
        assert!(!matches(&with("\"abcd\""), &etag));
        assert!(!matches(&HeaderMap::new(), &etag));
    }

    #[test]
    fn every_module_imports_only_files_that_are_served() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.bytes).expect("UTF-8");
            for import in text.split(" from './").skip(1) {
                let name = import.split('\'').next().unwrap_or_default();
                assert!(ASSETS.iter().any(|a| a.name == name), "{} imports ./{name}", asset.name);
            }
        }
    }

    #[test]
    fn the_page_loads_only_files_that_are_served() {
        let page = std::str::from_utf8(ASSETS[0].bytes).expect("UTF-8");
        for reference in page.split(ASSET_PREFIX).skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(ASSETS.iter().any(|a| a.name == name), "index.html refers to {ASSET_PREFIX}{name}");
        }
    }
}
