//! The party's page: a web page served at `/` that attests the enclave and
//! encrypts mail in the browser, so a party needs nothing installed.
//!
//! ```text
//!  browser ── GET / , /page/app.js, /page/style.css ──► these embedded files
//!          ── GET /v1/page ──► {"sample": "stats"}      which sample's form to show
//!          ── GET /v1/attestation, POST /v1/mail, ... ──► the API, with ciphertext only
//! ```
//!
//! The page is the TypeScript client's bundle (`clients/typescript/page`),
//! built and committed as `clients/typescript/page-dist/` and embedded here,
//! so running it needs no Node. Its test suite checks that the committed
//! bundle is a fresh build. The host serves the page but is not trusted by
//! it: the page verifies the attestation itself against the constraint the
//! party gives it (`/?constraint=...` or its text box).

use axum::{
    Json, Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

const INDEX_HTML: &str = include_str!("../../../../clients/typescript/page-dist/index.html");
const APP_JS: &str = include_str!("../../../../clients/typescript/page-dist/app.js");
const STYLE_CSS: &str = include_str!("../../../../clients/typescript/page-dist/style.css");

/// Scripts, styles and requests only from this origin; no framing. The page
/// handles keys: nothing from elsewhere may run in it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // A new build of the host serves a new page at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The page's routes. `sample` names the sample enclave the host runs (the
/// page shows its form); `None` lets the party choose.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(sample: Option<String>) -> Router<S> {
    let about = serde_json::json!({ "sample": sample });
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/page/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/page/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/v1/page", get(move || async move { Json(about) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(sample: Option<String>) -> (tokio::runtime::Runtime, String) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, routes::<()>(sample)).await });
        (runtime, url)
    }

    #[test]
    fn serves_the_embedded_page_with_a_strict_policy() {
        let (_runtime, url) = serve(Some("stats".into()));
        let mut page = ureq::get(&format!("{url}/")).call().unwrap();
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        let html = page.body_mut().read_to_string().unwrap();
        assert!(html.contains("/page/app.js") && html.contains("/page/style.css"), "{html}");
        for (path, kind) in [("/page/app.js", "text/javascript"), ("/page/style.css", "text/css")] {
            let mut asset = ureq::get(&format!("{url}{path}")).call().unwrap();
            assert!(asset.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
            assert!(!asset.body_mut().read_to_string().unwrap().is_empty(), "{path}");
        }
        let about: serde_json::Value = serde_json::from_str(
            &ureq::get(&format!("{url}/v1/page")).call().unwrap().body_mut().read_to_string().unwrap(),
        )
        .unwrap();
        assert_eq!(about, serde_json::json!({ "sample": "stats" }));
    }

    #[test]
    fn without_a_sample_the_party_chooses() {
        let (_runtime, url) = serve(None);
        let about: serde_json::Value = serde_json::from_str(
            &ureq::get(&format!("{url}/v1/page")).call().unwrap().body_mut().read_to_string().unwrap(),
        )
        .unwrap();
        assert_eq!(about, serde_json::json!({ "sample": null }));
    }
}
