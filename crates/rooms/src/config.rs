//! The `[room]` section of the configuration: when an unwatched place is dropped, and what a
//! guarded request does when the line cannot be reached.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[room]`: waiting rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// A waiting place with no open stream and no read of it for this long is dropped from
    /// the line, in seconds.
    pub abandon_secs: u64,
    /// When the cache holding the lines cannot be reached, let guarded requests through
    /// (`true`) instead of answering 503 `UNAVAILABLE`.
    pub fail_open: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            abandon_secs: 60,
            fail_open: false,
        }
    }
}

impl RoomConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![("abandon_secs", self.abandon_secs.into(), 5, 86_400)]
    }

    pub fn abandon_after(&self) -> Duration {
        Duration::from_secs(self.abandon_secs)
    }
}
