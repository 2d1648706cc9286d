//! The HTTP API: routes, middleware, OpenAPI document and docs page.

use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, MatchedPath},
    http::{Request, StatusCode},
    Router,
};
use tower_http::{
    catch_panic::CatchPanicLayer, classify::ServerErrorsFailureClass, trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::{config::Role, state::AppState};

pub mod auth;
pub mod client_address;
pub mod coupon_tasks;
pub mod coupons;
pub mod error;
mod guard;
pub mod health;
pub mod idempotency;
pub mod metrics;
mod openapi;
pub mod ops;
pub mod orders;
pub(crate) mod pages;
pub mod place_streams;
pub mod points;
pub mod products;
pub mod request_id;
pub mod rooms;
pub mod sse;
pub mod users;

/// `?page&size` of a listing: page from 0, 1 to 100 items (the use case checks the ranges).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From 0.
    #[serde(default)]
    #[param(minimum = 0, default = 0)]
    pub page: i64,
    /// 1 to 100.
    #[serde(default = "default_page_size")]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub size: i64,
}

fn default_page_size() -> i64 {
    20
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stampede",
        description = "E-commerce backend for flash-sale traffic. Errors are application/problem+json. \
            Any API route may answer 503 `OVERLOADED` (too many requests in flight) or 503 \
            `UNAVAILABLE` (a dependency or the request's deadline), both with `Retry-After`, and \
            413 `PAYLOAD_TOO_LARGE` for a body over the limit. Per-user rates (orders, coupon issue \
            requests), failed logins (per email and address, and per email) and sign-ups per address answer 429 `RATE_LIMITED` with `Retry-After`; \
            a user holding the maximum of unpaid orders gets 409 `TOO_MANY_OPEN_ORDERS`."
    ),
    components(schemas(error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, metrics and documentation"),
        (name = "users", description = "Accounts and tokens"),
        (name = "points", description = "Point balances"),
        (name = "products", description = "Products, options and live stock"),
        (name = "orders", description = "Orders, their saga, payment and status stream"),
        (name = "coupons", description = "First-come coupons and their issue tasks"),
        (name = "rooms", description = "Waiting rooms: a fair line in front of a sale, admitted at a set rate")
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the user routes require.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// The routes of `role` with their OpenAPI operations: operations endpoints for every role, the
/// API for `api` and `all`.
fn routes(role: Role) -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::scrape));
    if role != Role::Worker {
        routes = routes
            .routes(routes!(users::sign_up))
            .routes(routes!(users::token))
            .routes(routes!(users::stream_ticket))
            .routes(routes!(users::get_user))
            .routes(routes!(points::get_balance))
            .routes(routes!(points::charge))
            .routes(routes!(points::history))
            .routes(routes!(products::list))
            .routes(routes!(products::popular))
            .routes(routes!(products::get_product))
            .routes(routes!(products::create))
            .routes(routes!(products::restock))
            .routes(routes!(coupons::create))
            .routes(routes!(coupons::get_coupon))
            .routes(routes!(coupons::issue))
            .routes(routes!(coupons::user_coupons))
            .routes(routes!(coupon_tasks::get_task))
            .routes(routes!(coupon_tasks::task_events))
            .routes(routes!(orders::place))
            .routes(routes!(orders::get_order))
            .routes(routes!(orders::order_events))
            .routes(routes!(orders::user_orders))
            .routes(routes!(orders::pay))
            .routes(routes!(orders::cancel))
            .routes(routes!(rooms::create))
            .routes(routes!(rooms::change))
            .routes(routes!(rooms::close))
            .routes(routes!(rooms::get_room))
            .routes(routes!(rooms::join))
            .routes(routes!(rooms::my_place, rooms::leave))
            .routes(routes!(rooms::get_place))
            .routes(routes!(rooms::place_events))
            .routes(routes!(rooms::page))
            .routes(routes!(ops::page))
            .routes(routes!(ops::events));
    }
    routes
}

/// The OpenAPI document an instance of `role` serves at `/api-docs/openapi.json` (and
/// `docs/openapi.json` holds for `all`).
pub fn openapi(role: Role) -> serde_json::Value {
    openapi::published(routes(role).split_for_parts().1)
}

/// The router: the routes of `role`, the docs page, and the middleware every route gets.
pub fn router(state: AppState, role: Role) -> Router {
    let (router, openapi) = routes(role).split_for_parts();
    let openapi = openapi::published(openapi);

    let body_limit = state.limits.body_limit;
    router
        .merge(
            Router::from(
                SwaggerUi::new("/docs").external_url_unchecked("/api-docs/openapi.json", openapi),
            )
            .layer(axum::middleware::map_response(pages::docs)),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(error::panicked))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    let request_id = request
                        .headers()
                        .get(&request_id::HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), route, request_id)
                })
                .on_response(
                    |response: &axum::response::Response, latency: Duration, _: &tracing::Span| {
                        tracing::debug!(status = response.status().as_u16(), ?latency, "response");
                    },
                )
                .on_failure(
                    |failure: ServerErrorsFailureClass, latency: Duration, _: &tracing::Span| {
                        // A 503 is a refusal the server chose, reported once a second
                        // (`refusals.rs`); anything else is a failure to act on.
                        let refused = matches!(
                            failure,
                            ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE)
                        );
                        if !refused {
                            tracing::error!(%failure, ?latency, "response failed");
                        }
                    },
                ),
        )
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}
