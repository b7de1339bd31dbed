//! The web console: a page and its scripts, built into the binary, served at `/` to browsers and at
//! `/console/{file}`. They hold no data — everything the console shows it reads through the REST
//! API with the credentials given at its login — so they are served to anyone, as `/healthcheck`
//! is; an API client asking `/` for JSON is redirected to `/info`, as ksqlDB does.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// The console's files: name, content type, text.
const FILES: &[(&str, &str, &str)] = &[
    ("console.css", CSS, include_str!("../console/console.css")),
    ("console.js", JS, include_str!("../console/console.js")),
    ("api.js", JS, include_str!("../console/api.js")),
    ("editor.js", JS, include_str!("../console/editor.js")),
    ("html.js", JS, include_str!("../console/html.js")),
    ("results.js", JS, include_str!("../console/results.js")),
    ("sql_text.js", JS, include_str!("../console/sql_text.js")),
    ("views.js", JS, include_str!("../console/views.js")),
];
const INDEX: &str = include_str!("../console/index.html");
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The keywords the console highlights and completes: the shell's, as a module.
static KEYWORDS_JS: LazyLock<String> = LazyLock::new(|| {
    let list = serde_json::to_string(eddy_common::keywords::KEYWORDS).unwrap_or_default();
    format!(
        "// Eddy's SQL keywords (served by eddy-server from eddy_common::keywords).\nexport const KEYWORDS = {list};\n"
    )
});

/// Whether `path` is one of the console's (served without credentials).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}

/// `GET /`: the console's page for a browser, else a redirect to `/info`.
pub async fn index(headers: HeaderMap) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        let mut page = file_response(HTML, INDEX);
        // Only the server's own scripts, styles and API; never framed by another site.
        page.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        );
        page
    } else {
        Redirect::temporary("/info").into_response()
    }
}

/// `GET /console/{file}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    if name == "keywords.js" {
        return file_response(JS, KEYWORDS_JS.as_str());
    }
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, kind, text)) => file_response(kind, text),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

fn file_response(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            // Checked again on every load: a new server version's files replace the old at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}
