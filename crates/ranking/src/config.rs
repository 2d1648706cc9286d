//! The `[ranking]` section of the configuration: where days are cut, how long answers live.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{RankingSettings, Tz};

/// `[ranking]`: the popular-products ranking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankingConfig {
    /// The IANA time zone in which days are cut.
    pub time_zone: String,
    /// How long a popular-products answer is served again by this process, in milliseconds.
    pub popular_cache_ms: u64,
}

impl Default for RankingConfig {
    fn default() -> Self {
        let defaults = RankingSettings::default();
        Self {
            time_zone: defaults.time_zone.name().to_owned(),
            popular_cache_ms: defaults.answer_ttl.as_millis() as u64,
        }
    }
}

impl RankingConfig {
    /// Each numeric key with its value and its inclusive range.
    pub fn ranges(&self) -> Vec<(&'static str, i128, i128, i128)> {
        vec![("popular_cache_ms", self.popular_cache_ms.into(), 0, 60_000)]
    }

    /// The settings; fails on an unknown time zone.
    pub fn settings(&self) -> anyhow::Result<RankingSettings> {
        let time_zone = self.time_zone.parse::<Tz>().map_err(|_| {
            anyhow::anyhow!(
                "time_zone: unknown time zone {:?} (an IANA name such as Asia/Seoul)",
                self.time_zone
            )
        })?;
        Ok(RankingSettings {
            time_zone,
            answer_ttl: Duration::from_millis(self.popular_cache_ms),
        })
    }
}
