//! The users & points context: accounts and their credentials, point balances and history.
//! It owns the `users` table; other contexts know users only by id.

pub mod users;
