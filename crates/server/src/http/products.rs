//! Products: list and detail with live stock (detail from the cache), admin creation and restock.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use catalog::{CatalogError, NewProduct, Product, ProductOption, ProductPage};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{
    auth::Caller,
    error::{path_id, ApiError, AppJson, AppPath, AppQuery, Problem},
};
use crate::state::AppState;

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Invalid { field, message } => ApiError::invalid(field, message),
            CatalogError::NotFound => ApiError::not_found("no such product or option"),
            CatalogError::Unknown(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From 0.
    #[serde(default)]
    pub page: i64,
    /// 1 to 100.
    #[serde(default = "default_size")]
    pub size: i64,
}

fn default_size() -> i64 {
    20
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Restock {
    /// 1 to 1,000,000 units.
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

/// Creates a product with its options (admins).
#[utoipa::path(post, path = "/api/admin/products", tag = "products", request_body = NewProduct,
    security(("bearer" = [])),
    responses((status = 201, body = Product), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, description = "name 1–30, description 10–200, option name 1–30, price ≥ 0, stock ≥ 0", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<NewProduct>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_admin()?;
    let product = catalog::product::create(&state.catalog, body).await?;
    Ok((StatusCode::CREATED, AppJson(product)))
}

/// Adds stock to an option (admins).
#[utoipa::path(post, path = "/api/admin/product-options/{optionId}/restock", tag = "products",
    params(("optionId" = i64, Path)), request_body = Restock, security(("bearer" = [])),
    responses((status = 200, body = ProductOption), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn restock(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(option): AppPath<String>,
    AppJson(body): AppJson<Restock>,
) -> Result<AppJson<ProductOption>, ApiError> {
    caller.require_admin()?;
    let option =
        catalog::product::restock(&state.catalog, path_id(&option, "option")?, body.quantity)
            .await?;
    Ok(AppJson(option))
}
