//! Products over HTTP: admin creation and restock, list and detail with live stock.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_invalid, assert_problem, TestApp};

fn shoes() -> Value {
    json!({
        "name": "Air runner",
        "category": "shoes",
        "description": "light running shoes",
        "options": [
            { "name": "250", "price": 89000, "stock": 0 },
            { "name": "260", "price": 91000, "stock": 3 }
        ]
    })
}

async fn create(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "/api/admin/products", Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn an_admin_creates_and_restocks_a_product_and_clients_see_live_stock(app: TestApp) {
    let admin = app.new_admin().await;
    let response = create(&app, &admin.token, &shoes()).await;
    assert_eq!(response.status(), 201);
    let product: Value = response.json().await.unwrap();
    let id = product["id"].as_i64().unwrap();
    assert_eq!(product["soldOut"], false);
    assert_eq!(product["options"][0]["soldOut"], true);
    assert_eq!(product["options"][1]["price"], 91000);
    let detail: Value = app
        .get(&format!("/api/products/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail, product);

    let option = product["options"][0]["id"].as_i64().unwrap();
    let restocked = app
        .request(
            Method::POST,
            &format!("/api/admin/product-options/{option}/restock"),
            Some(&admin.token),
        )
        .json(&json!({ "quantity": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(restocked.status(), 200);
    let restocked: Value = restocked.json().await.unwrap();
    assert_eq!(
        (restocked["stock"].as_i64(), restocked["soldOut"].as_bool()),
        (Some(7), Some(false))
    );

    let page: Value = app
        .get("/api/products?page=0&size=20")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            page["page"].as_i64(),
            page["size"].as_i64(),
            page["total"].as_i64()
        ),
        (Some(0), Some(20), Some(1))
    );
    assert_eq!(
        page["items"][0]["options"][0]["stock"], 7,
        "the list reads live stock"
    );
    assert_problem(
        app.get("/api/products?size=101").await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(app.get("/api/products/999999").await, 404, "NOT_FOUND").await;
    assert_problem(app.get("/api/products/abc").await, 404, "NOT_FOUND").await;
}

async fn product_input_is_checked_and_only_admins_change_the_catalog(app: TestApp) {
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    assert_problem(create(&app, &user.token, &shoes()).await, 403, "FORBIDDEN").await;
    for (pointer, value, field) in [
        ("/name", json!(""), "name"),
        ("/name", json!("x".repeat(31)), "name"),
        ("/description", json!("too short"), "description"),
        ("/options/0/name", json!(""), "options.name"),
        ("/options/0/price", json!(-1), "options.price"),
        ("/options/0/stock", json!(-1), "options.stock"),
    ] {
        let mut body = shoes();
        *body.pointer_mut(pointer).unwrap() = value;
        assert_invalid(create(&app, &admin.token, &body).await, field).await;
    }
    let mut no_price = shoes();
    no_price["options"][0]
        .as_object_mut()
        .unwrap()
        .remove("price");
    assert_problem(
        create(&app, &admin.token, &no_price).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    let restock = |token: String, option: &str, body: Value| {
        app.request(
            Method::POST,
            &format!("/api/admin/product-options/{option}/restock"),
            Some(&token),
        )
        .json(&body)
        .send()
    };
    assert_problem(
        restock(user.token.clone(), "1", json!({ "quantity": 1 }))
            .await
            .unwrap(),
        403,
        "FORBIDDEN",
    )
    .await;
    assert_problem(
        restock(admin.token.clone(), "999999", json!({ "quantity": 1 }))
            .await
            .unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    let product: Value = create(&app, &admin.token, &shoes())
        .await
        .json()
        .await
        .unwrap();
    let option = product["options"][0]["id"].to_string();
    assert_problem(
        restock(admin.token.clone(), &option, json!({ "quantity": 0 }))
            .await
            .unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
}

crate::on_both_deployments!(
    an_admin_creates_and_restocks_a_product_and_clients_see_live_stock,
    product_input_is_checked_and_only_admins_change_the_catalog,
);
