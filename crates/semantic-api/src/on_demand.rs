//! `--swap-on-demand`: before a generation request reaches its route, the `model` it names is
//! read from its body; when that is another servable model of the registry, the server swaps to
//! it first (`models::swap_on_demand`) and the request is then served by the new model. Only
//! callers the API would serve can cause a swap: a request without a valid key passes through
//! untouched (and gets its 401 from the route). Owns reading the body once (bounded by the body
//! limit and deadline, with the same errors as the routes) and handing it on unchanged.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::{flavor_of, presented_key};
use crate::error::{ApiError, ErrorKind};
use crate::models::{swap_on_demand, ModelSlot};

/// The routes whose body names a model to generate with.
const GENERATION_ROUTES: [&str; 4] = ["/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"];

/// The one field read here; everything else is the route's business.
#[derive(Deserialize)]
struct Named {
    model: Option<String>,
}

/// Swaps to the model `request` names when it must (see the module doc), and returns the request
/// with its body intact; or the error response when the body cannot be read or the swap failed.
pub(crate) async fn prepare(slot: &Arc<ModelSlot>, request: Request) -> Result<Request, Response> {
    let options = slot.options();
    let wanted = options.swap_on_demand
        && request.method() == Method::POST
        && GENERATION_ROUTES.contains(&request.uri().path())
        && options.auth.namespace_for(presented_key(request.headers())).is_some();
    if !wanted {
        return Ok(request);
    }
    let flavor = flavor_of(request.uri().path());
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(options.body_timeout, axum::body::to_bytes(body, options.max_body_bytes)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Err(ApiError::new(ErrorKind::TooLarge, "the request body is too large (or broke off)")
                .in_flavor(flavor)
                .into_response())
        }
        Err(_) => {
            let late = ApiError::new(
                ErrorKind::RequestTimeout,
                "the request body did not arrive in time (--body-timeout-secs)",
            );
            return Err(late.with_code("body_timeout").in_flavor(flavor).into_response());
        }
    };
    // A body that is not JSON, or names no model, goes on to the route, which reports it.
    if let Some(name) = serde_json::from_slice::<Named>(&bytes).ok().and_then(|n| n.model) {
        swap_on_demand(slot, &name).await.map_err(|e| e.in_flavor(flavor).into_response())?;
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
