//! The Stampede server: configuration, HTTP API, wiring of adapters and consumers.

pub mod config;
pub mod http;
pub mod idempotency;
pub mod limits;
pub mod operations;
pub mod refusals;
pub mod sales;
pub mod seed;
pub mod serve;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tokens;

pub use config::{Role, Settings};
pub use startup::Application;
pub use state::AppState;
