//! The users & points context: accounts and their credentials, point balances and history.
//! It owns the `users`, `point_balances` and `point_history` tables; other contexts know users
//! only by id and move points only through the use cases here.

pub mod balance;
pub mod users;
