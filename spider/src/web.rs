//! The topology page: its HTML, script and style, embedded in the binary.
//! [`routes`] serves them; the data comes from `/api/v1/topology`. The
//! layout library (elkjs) is vendored from the npm registry at build time
//! (scripts/web-vendor.sh): nothing is fetched at run time.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/topology.js");
const STYLE: &str = include_str!("../web/style.css");
/// elkjs, vendored by scripts/web-vendor.sh (spider/build.rs checks it is
/// there): its API, and the layout engine the page runs in a web worker.
const ELK_API: &str = include_str!("../web/vendor/elk-api.js");
const ELK_WORKER: &str = include_str!("../web/vendor/elk-worker.min.js");
const ELK_LICENSE: &str = include_str!("../web/vendor/LICENSE.md");

fn asset(ct: &'static str, b: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct)], b).into_response()
}

/// `GET /` and the page's assets.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/topology.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/vendor/elk-api.js",
            get(|| async { asset("text/javascript; charset=utf-8", ELK_API) }),
        )
        .route(
            "/vendor/elk-worker.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", ELK_WORKER) }),
        )
        .route(
            "/vendor/elkjs-LICENSE.md",
            get(|| async { asset("text/markdown; charset=utf-8", ELK_LICENSE) }),
        )
}
