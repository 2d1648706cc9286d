//! The `[orders]` section of the configuration: its keys, their ranges, and the settings they make.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::OrderSettings;

/// `[orders]`: limits and timings of orders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// Unpaid orders (`PENDING` or `AWAITING_PAYMENT`) one user may hold (409
    /// `TOO_MANY_OPEN_ORDERS` beyond).
    pub max_open: i64,
    /// How long a priced order stays payable (also how long a saga may stay `PENDING`), in
    /// seconds.
    pub payment_window_secs: u64,
    /// A saga `PENDING` this long is reported stuck and re-driven, in seconds.
    pub saga_stuck_secs: u64,
    /// How often the sweeper looks for expired orders and stuck sagas, in milliseconds.
    pub sweep_ms: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        let defaults = OrderSettings::default();
        Self {
            max_open: defaults.max_open_orders,
            payment_window_secs: defaults.payment_window.as_secs(),
            saga_stuck_secs: defaults.stuck_after.as_secs(),
            sweep_ms: defaults.sweep_every.as_millis() as u64,
        }
    }
}

impl OrdersConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![
            ("max_open", self.max_open.into(), 1, 1_000),
            (
                "payment_window_secs",
                self.payment_window_secs.into(),
                1,
                7 * 86_400,
            ),
            ("saga_stuck_secs", self.saga_stuck_secs.into(), 1, 86_400),
            ("sweep_ms", self.sweep_ms.into(), 10, 60_000),
        ]
    }

    pub fn settings(&self) -> OrderSettings {
        OrderSettings {
            max_open_orders: self.max_open,
            payment_window: Duration::from_secs(self.payment_window_secs),
            stuck_after: Duration::from_secs(self.saga_stuck_secs),
            sweep_every: Duration::from_millis(self.sweep_ms),
        }
    }
}
