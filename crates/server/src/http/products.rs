//! Products: list and detail with live stock (detail from the cache), the popular-products
//! ranking, admin creation and restock.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
};
use catalog::{CatalogError, NewProduct, Product, ProductOption, ProductPage};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::Admin,
    error::{path_id, ApiError, AppJson, AppPath, AppQuery, Problem},
    PageQuery,
};
use crate::state::AppState;
use ranking::{PopularProduct, RankingError};

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Invalid { field, message } => ApiError::invalid(field, message),
            CatalogError::NotFound => ApiError::not_found("no such product or option"),
            CatalogError::UnknownOption(id) => {
                ApiError::not_found(format!("no product option {id}"))
            }
            CatalogError::StockLimit => ApiError::new(
                StatusCode::CONFLICT,
                "STOCK_LIMIT",
                "the stock would pass 1,000,000,000",
            ),
            CatalogError::Unknown(e) => ApiError::internal(e),
        }
    }
}

impl From<RankingError> for ApiError {
    fn from(error: RankingError) -> Self {
        match error {
            RankingError::Invalid { field, message } => ApiError::invalid(field, message),
            RankingError::Unknown(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PopularQuery {
    /// Calendar days up to today, 1 to 30.
    #[serde(default = "default_days")]
    #[param(minimum = 1, maximum = 30, default = 3)]
    pub days: i64,
    /// 1 to 100 products.
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 100, default = 5)]
    pub limit: i64,
}

fn default_days() -> i64 {
    3
}

fn default_limit() -> i64 {
    5
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Restock {
    /// 1 to 1,000,000 units.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
}

/// Products by id, a page at a time.
#[utoipa::path(get, path = "/api/products", tag = "products", params(PageQuery),
    responses((status = 200, body = ProductPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<ProductPage>, ApiError> {
    let page = catalog::product::list(state.catalog.db(), query.page, query.size).await?;
    Ok(AppJson(page))
}

/// A product with its options' live stock.
#[utoipa::path(get, path = "/api/products/{productId}", tag = "products",
    params(("productId" = i64, Path)),
    responses((status = 200, body = Product), (status = 404, body = Problem)))]
pub async fn get_product(
    State(state): State<AppState>,
    AppPath(product): AppPath<String>,
) -> Result<AppJson<Product>, ApiError> {
    let product = catalog::product::find(&state.catalog, path_id(&product, "product")?).await?;
    Ok(AppJson(product))
}

/// The products with the most units sold in paid orders over the last `days` calendar days,
/// best first, ties by product id (refreshed about every second).
#[utoipa::path(get, path = "/api/products/popular", tag = "products", params(PopularQuery),
    responses((status = 200, body = Vec<PopularProduct>),
        (status = 422, description = "days 1–30, limit 1–100", body = Problem)))]
pub async fn popular(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<PopularQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let body = ranking::popular::popular_json(&state.ranking, query.days, query.limit).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// Creates a product with its options (admins).
#[utoipa::path(post, path = "/api/admin/products", tag = "products", request_body = NewProduct,
    security(("bearer" = [])),
    responses((status = 201, body = Product), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, description = "name 1–30, description 10–200, option name 1–30, price 0–1,000,000,000, stock 0–1,000,000,000", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    AppJson(body): AppJson<NewProduct>,
) -> Result<impl IntoResponse, ApiError> {
    let product = catalog::product::create(&state.catalog, body).await?;
    Ok((StatusCode::CREATED, AppJson(product)))
}

/// Adds stock to an option (admins).
#[utoipa::path(post, path = "/api/admin/product-options/{optionId}/restock", tag = "products",
    params(("optionId" = i64, Path)), request_body = Restock, security(("bearer" = [])),
    responses((status = 200, body = ProductOption), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`STOCK_LIMIT`: the stock would pass 1,000,000,000", body = Problem),
        (status = 422, description = "quantity 1–1,000,000", body = Problem)))]
pub async fn restock(
    State(state): State<AppState>,
    _: Admin,
    AppPath(option): AppPath<String>,
    AppJson(body): AppJson<Restock>,
) -> Result<AppJson<ProductOption>, ApiError> {
    let option =
        catalog::product::restock(&state.catalog, path_id(&option, "option")?, body.quantity)
            .await?;
    Ok(AppJson(option))
}
