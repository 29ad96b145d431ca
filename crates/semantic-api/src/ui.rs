//! The built-in web page: `/` redirects to `/ui/`; `/ui/` and the page deep links (`/ui/chat`,
//! `/ui/memory`, …) serve one HTML shell; `/ui/assets/…` serves its CSS and ES modules and the
//! shipped scenarios. Every file is compiled into the binary (`include_str!`), so the page works
//! offline with nothing beside the server. Owns: these routes and their content types. Does not
//! own: any data (the page calls the API with the visitor's key), so the routes need no key, and
//! they sit outside `routes()` and `/openapi.json`, which describe the API only.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::extract::ApiPath;

/// The client-side pages; each is a deep link that serves the shell (`/ui/` opens the first).
pub const PAGES: [&str; 5] = ["chat", "memory", "sessions", "scenarios", "server"];

/// The shell every page URL serves.
const SHELL: &str = include_str!("../ui/index.html");

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const YAML: &str = "application/yaml; charset=utf-8";

/// The files under `/ui/assets/`: path, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../ui/app.css")),
    ("js/main.js", JS, include_str!("../ui/js/main.js")),
    ("js/api.js", JS, include_str!("../ui/js/api.js")),
    ("js/dom.js", JS, include_str!("../ui/js/dom.js")),
    ("js/chart.js", JS, include_str!("../ui/js/chart.js")),
    ("js/chat.js", JS, include_str!("../ui/js/chat.js")),
    ("js/memory.js", JS, include_str!("../ui/js/memory.js")),
    ("js/sessions.js", JS, include_str!("../ui/js/sessions.js")),
    ("js/scenarios.js", JS, include_str!("../ui/js/scenarios.js")),
    ("js/server.js", JS, include_str!("../ui/js/server.js")),
    ("scenarios/tiny.yaml", YAML, include_str!("../../../scenarios/tiny.yaml")),
    ("scenarios/four_day_week.yaml", YAML, include_str!("../../../scenarios/four_day_week.yaml")),
    ("scenarios/lighthouse_keepers.yaml", YAML, include_str!("../../../scenarios/lighthouse_keepers.yaml")),
    ("scenarios/village_council.yaml", YAML, include_str!("../../../scenarios/village_council.yaml")),
];

/// Only our own files and the same-origin API; styles may be set from script (bar widths).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The page's routes. Stateless, so the loading app serves them too (the page then reports that
/// the model is loading instead of failing to open).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/", get(shell))
        .route("/ui/{page}", get(page))
        .route("/ui/assets/scenarios.json", get(scenarios))
        .route("/ui/assets/{*path}", get(asset))
}

/// True for the paths these routes serve (rate limits skip them: they hold no data and one page
/// load fetches a dozen files).
pub(crate) fn is_ui_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Always revalidate: a new binary ships new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn shell() -> Response {
    let mut response = file("text/html; charset=utf-8", SHELL);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

async fn page(ApiPath(page): ApiPath<String>, uri: Uri) -> Response {
    if PAGES.contains(&page.as_str()) {
        shell().await
    } else {
        crate::error::not_found(uri).await.into_response()
    }
}

async fn asset(ApiPath(path): ApiPath<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => file(content_type, body),
        None => (StatusCode::NOT_FOUND, format!("no asset {path}")).into_response(),
    }
}

/// `GET /ui/assets/scenarios.json`: the shipped scenarios' names, for the Scenarios page.
async fn scenarios() -> Json<Vec<&'static str>> {
    Json(
        ASSETS
            .iter()
            .filter_map(|(name, _, _)| name.strip_prefix("scenarios/").and_then(|n| n.strip_suffix(".yaml")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_typed_by_its_extension() {
        for (name, content_type, body) in ASSETS {
            assert!(!body.is_empty(), "{name} is empty");
            let want = match name.rsplit('.').next() {
                Some("css") => CSS,
                Some("js") => JS,
                Some("yaml") => YAML,
                other => panic!("{name}: no content type for {other:?}"),
            };
            assert_eq!(*content_type, want, "{name}");
        }
    }

    #[test]
    fn the_shell_loads_only_assets_that_exist() {
        for reference in SHELL.split("/ui/assets/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "the shell names a missing asset {name}");
        }
    }

    #[test]
    fn ui_paths_are_told_apart_from_api_paths() {
        for (path, ui) in [("/", true), ("/ui", true), ("/ui/chat", true), ("/uix", false), ("/v1/agents", false)] {
            assert_eq!(is_ui_path(path), ui, "{path}");
        }
    }
}
