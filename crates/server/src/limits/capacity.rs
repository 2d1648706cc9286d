//! How many connections and streams one process holds: as many as its file descriptors and
//! the memory given to connections allow, not a fixed number. The descriptor limit is raised
//! to the hard limit at start, and whatever a setting asks beyond what the process can hold is
//! cut down to it, with a warning, so that a crowd waits in the listen backlog instead of the
//! process running out of descriptors (and failing its database connections) under load.

use super::{HttpConfig, SseConfig};

/// What one open connection costs in memory, measured with the release binary (RSS growth per
/// held connection, `scripts/crowd-cost`): hyper's two 8 KiB buffers, the connection's task,
/// the allocator's share, and what a stream keeps.
pub const CONNECTION_COST_BYTES: u64 = 32 << 10;

/// Descriptors kept for everything but client connections (database pool, cache, broker
/// clients, files): a sixty-fourth of the limit, at least this many.
const RESERVED_AT_LEAST: u64 = 256;

/// Connections kept for ordinary requests however many streams are open: a thirty-second of
/// them, at least this many.
const ORDINARY_AT_LEAST: usize = 256;

/// The process's descriptor limits: soft (what it may open) and hard (what the soft one may be
/// raised to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    pub soft: u64,
    pub hard: u64,
}

impl Descriptors {
    /// This process's limits now.
    pub fn current() -> std::io::Result<Self> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            soft: limit.rlim_cur,
            hard: limit.rlim_max,
        })
    }

    /// Raises the soft limit to the hard one; returns the limits before and after.
    pub fn raise() -> std::io::Result<(Self, Self)> {
        let before = Self::current()?;
        // An unlimited hard limit still stops at the kernel's per-process ceiling.
        let target = if before.hard == libc::RLIM_INFINITY {
            1 << 20
        } else {
            before.hard
        };
        if before.soft < target {
            let limit = libc::rlimit {
                rlim_cur: target,
                rlim_max: before.hard,
            };
            // SAFETY: setrlimit reads the struct it is given, which lives for the call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((before, Self::current()?))
    }
}

/// The connections and streams one process serves at once, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub connections: usize,
    pub streams: usize,
    /// Connections the descriptors allow, and the memory.
    pub by_descriptors: usize,
    pub by_memory: usize,
    /// What the settings asked and could not have.
    pub cut: Vec<String>,
}

impl Capacity {
    /// The capacity with `descriptors` open-able and `memory_mb` for connections. A setting of
    /// 0 asks for what they allow; a larger setting than they allow is cut down. Streams are
    /// held on connections, and a thirty-second of the connections stays for ordinary requests.
    pub fn plan(descriptors: u64, http: &HttpConfig, sse: &SseConfig) -> Self {
        let reserved = (descriptors / 64).max(RESERVED_AT_LEAST);
        let by_descriptors = descriptors.saturating_sub(reserved).max(1) as usize;
        let by_memory = ((http.connection_memory_mb << 20) / CONNECTION_COST_BYTES).max(1) as usize;
        let allowed = by_descriptors.min(by_memory);
        let mut cut = Vec::new();
        let connections = match http.max_connections {
            0 => allowed,
            asked if asked > by_descriptors => {
                cut.push(format!(
                    "http.max_connections {asked} is more than the {by_descriptors} descriptors \
                     left for connections (of {descriptors}); serving {by_descriptors} at once"
                ));
                by_descriptors
            }
            asked => asked,
        };
        let streams_allowed = connections
            .saturating_sub((connections / 32).max(ORDINARY_AT_LEAST))
            .max(1);
        let streams = match sse.max_streams {
            0 => streams_allowed,
            asked if asked > connections => {
                cut.push(format!(
                    "sse.max_streams {asked} is more than the {connections} connections served \
                     at once; holding at most {connections} streams"
                ));
                connections
            }
            asked => asked,
        };
        Self {
            connections,
            streams,
            by_descriptors,
            by_memory,
            cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(descriptors: u64, memory_mb: u64, connections: usize, streams: usize) -> Capacity {
        let http = HttpConfig {
            connection_memory_mb: memory_mb,
            max_connections: connections,
            ..HttpConfig::default()
        };
        let sse = SseConfig {
            max_streams: streams,
            ..SseConfig::default()
        };
        Capacity::plan(descriptors, &http, &sse)
    }

    #[test]
    fn by_default_the_descriptors_or_the_memory_decide_whichever_allows_fewer() {
        // 20,000 descriptors (these machines' hard limit), 1 GiB: the descriptors decide, and
        // 18,000 streams fit.
        let capacity = plan(20_000, 1024, 0, 0);
        assert_eq!(capacity.by_descriptors, 20_000 - 312);
        assert_eq!(capacity.by_memory, 32_768);
        assert_eq!(capacity.connections, 19_688);
        assert_eq!(capacity.streams, 19_688 - 615);
        assert!(capacity.cut.is_empty());
        // A million descriptors: the memory decides; 50,000 streams need about 1.6 GiB.
        let capacity = plan(1 << 20, 1024, 0, 0);
        assert_eq!(capacity.connections, 32_768);
        let capacity = plan(1 << 20, 1700, 0, 0);
        assert!(capacity.streams >= 50_000, "{capacity:?}");
    }

    #[test]
    fn a_low_limit_keeps_descriptors_for_the_process_and_cuts_what_settings_ask() {
        let capacity = plan(1_024, 1024, 10_000, 4_096);
        assert_eq!(capacity.connections, 1_024 - 256);
        assert_eq!(capacity.streams, 1_024 - 256);
        assert_eq!(capacity.cut.len(), 2, "{:?}", capacity.cut);
        assert!(capacity.cut[0].contains("http.max_connections 10000"));
        // What the limits allow is kept as asked.
        let capacity = plan(20_000, 1024, 5_000, 4_096);
        assert_eq!((capacity.connections, capacity.streams), (5_000, 4_096));
        assert!(capacity.cut.is_empty());
        // Nothing drops to zero, however little there is.
        let capacity = plan(10, 1, 0, 0);
        assert_eq!((capacity.connections, capacity.streams), (1, 1));
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let (before, after) = Descriptors::raise().unwrap();
        assert_eq!(after.hard, before.hard);
        assert!(after.soft >= before.soft.min(1 << 20));
        if before.hard != libc::RLIM_INFINITY {
            assert_eq!(after.soft, after.hard);
        }
    }
}
