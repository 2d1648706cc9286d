//! Stampede's load kit: the `stampede load` generator and the in-process benches share it.
//!
//! [`run::run`] drives a deployment over HTTP with one of the [`scenario`]s, as a closed model
//! (a number of virtual users, each waiting for its answer) or an open one (a fixed arrival
//! rate that a slow server cannot slow down), measures every step ([`stats`]), then checks
//! what must hold afterwards over the same API ([`verdict`]) and reports ([`report`]).

pub mod batch;
pub mod cli;
pub mod http;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod verdict;
pub mod workers;

use serde::{Deserialize, Serialize};

/// One seeded account and its bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeededUser {
    pub id: i64,
    pub token: String,
}

/// What `stampede seed` writes and `stampede load` reads: accounts, products and coupons of a
/// deployment prepared for load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seeded {
    /// The password of every seeded account, the admin's included (new at each seed run).
    #[serde(default)]
    pub password: String,
    pub admin: SeededUser,
    pub users: Vec<SeededUser>,
    pub products: Vec<i64>,
    pub coupons: Vec<i64>,
}

impl Seeded {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let seeded: Self = serde_json::from_slice(&bytes)?;
        anyhow::ensure!(!seeded.users.is_empty(), "{} has no users", path.display());
        Ok(seeded)
    }
}
