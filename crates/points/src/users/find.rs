//! Looking an account up.

use db::{on_db, sqlx, Db};

use super::User;

/// The account with `id`, if any.
pub async fn find(db: &Db, id: i64) -> anyhow::Result<Option<User>> {
    Ok(
        on_db!(db, c => sqlx::query_as("SELECT id, name, email, is_admin FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await)?,
    )
}
