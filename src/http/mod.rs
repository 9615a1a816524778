//! The HTTP front: the REST API, the CA's public pages, health.

pub mod api;
pub mod problem;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;

use crate::ca::builtin::BuiltinCa;
use crate::service::Desk;

/// Requests are small JSON documents; a CSR with 100 names fits well within this.
pub(crate) const MAX_BODY: usize = 256 * 1024;

pub fn app(desk: Arc<Desk>, builtin: Option<&Arc<BuiltinCa>>, secure_cookies: bool) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/console") }),
        )
        .merge(crate::console::router(desk.clone(), secure_cookies))
        .merge(api::router(desk));
    if let Some(ca) = builtin {
        app = app.merge(ca.router());
    }
    // No per-request access log: approval links carry their secret in the path.
    app.layer(DefaultBodyLimit::max(MAX_BODY))
}
