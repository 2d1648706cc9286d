use serde_json::json;

use crate::helpers::{assert_invalid, assert_problem, TestApp};

async fn signing_up_returns_the_account_and_the_email_is_taken_once(app: TestApp) {
    let response = app.sign_up("Kim", "Kim@Example.com", "s3cret").await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["id"].as_i64().unwrap() > 0);
    assert_eq!(body["email"], "kim@example.com");
    assert!(body.get("password").is_none() && body.get("passwordHash").is_none());
    let again = app.sign_up("Lee", "kim@example.COM", "other-pass").await;
    assert_problem(again, 409, "EMAIL_TAKEN").await;
}

async fn sign_up_rules_are_checked_at_their_edges(app: TestApp) {
    let long = "x".repeat(21);
    for (name, email, password, field) in [
        ("K", "a@b.co", "s3cret", "name"),
        (long.as_str(), "a@b.co", "s3cret", "name"),
        ("Kim", "a@b.co", "1234", "password"),
        ("Kim", "a@b.co", &"p".repeat(31), "password"),
        ("Kim", "not-an-email", "s3cret", "email"),
        ("Kim", "a\0@b.co", "s3cret", "email"),
        ("Kim", " a@b.co", "s3cret", "email"),
        (" \t ", "a@b.co", "s3cret", "name"),
        ("K\0m", "a@b.co", "s3cret", "name"),
    ] {
        assert_invalid(app.sign_up(name, email, password).await, field).await;
    }
    assert_eq!(app.sign_up("Ki", "ok@b.co", "12345").await.status(), 201);
    assert_eq!(
        app.sign_up(&"x".repeat(20), "ok2@b.co", &"p".repeat(30))
            .await
            .status(),
        201
    );
    let wrong_type = app
        .post_json(
            "/api/users",
            &json!({ "name": 5, "email": "a@b.co", "password": "s3cret" }),
        )
        .await;
    assert_problem(wrong_type, 400, "VALIDATION_FAILED").await;
    let missing = app.post_json("/api/users", &json!({ "name": "Kim" })).await;
    assert_problem(missing, 400, "VALIDATION_FAILED").await;
}

async fn a_token_is_issued_for_the_right_password_only(app: TestApp) {
    app.sign_up("Kim", "kim@example.com", "s3cret").await;
    let response = app.token("kim@example.com", "s3cret").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert!(body["expiresIn"].as_u64().unwrap() > 0);
    let token = body["accessToken"].as_str().unwrap();
    let me = app
        .request(reqwest::Method::GET, "/api/users/me", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<serde_json::Value>().await.unwrap()["email"],
        "kim@example.com"
    );

    assert_problem(
        app.token("kim@example.com", "wrong!").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_problem(
        app.token("nobody@example.com", "s3cret").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // A NUL cannot be in an account's email (PostgreSQL cannot even compare one): no account
    // could match, so the login is refused before anything is looked up or counted.
    assert_invalid(app.token("kim\0@example.com", "s3cret").await, "email").await;
}

async fn an_expired_or_forged_token_is_unauthorized(app: TestApp) {
    let user = app.new_user().await;
    let secret: String = db::on_db!(&app.state.db, c => db::sqlx::query_scalar(
        "SELECT value FROM app_secrets WHERE name = 'jwt'"
    ).fetch_one(c).await)
    .unwrap();
    let claims =
        |exp: i64| json!({ "sub": user.id.to_string(), "adm": false, "iat": 0, "exp": exp });
    let sign = |secret: &str, exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims(exp),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let valid = sign(&secret, now + 60);
    let get = |token: String| {
        app.request(reqwest::Method::GET, "/api/users/me", Some(&token))
            .send()
    };
    assert_eq!(
        get(valid).await.unwrap().status(),
        200,
        "a token signed with the deployment's secret"
    );
    assert_problem(
        get(sign(&secret, now - 1)).await.unwrap(),
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert_problem(
        get(sign("some-other-secret-here", now + 60)).await.unwrap(),
        401,
        "UNAUTHORIZED",
    )
    .await;
}

crate::on_both_deployments!(
    signing_up_returns_the_account_and_the_email_is_taken_once,
    sign_up_rules_are_checked_at_their_edges,
    a_token_is_issued_for_the_right_password_only,
    an_expired_or_forged_token_is_unauthorized,
);
