//! Integration tests that drive the real application over HTTP.

mod browser;
mod cli;
mod correlation;
mod coupons;
mod crash;
mod deploy;
mod events;
mod failover;
mod faults;
mod health;
mod helpers;
mod hostile;
mod limits;
mod load;
mod openapi;
mod operations;
mod ops_page;
mod orders;
mod points;
mod process;
mod products;
mod ranking;
mod room_page;
mod rooms;
mod shutdown;
mod users;
