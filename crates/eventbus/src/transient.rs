//! Telling a dependency that is down or slow from work that is wrong.

/// Whether `error` says a dependency (the database, the cache, the broker) could not be
/// reached or answer in time, rather than that the work itself is wrong. Consumers retry such
/// errors until the dependency returns instead of dead-lettering the event; the HTTP layer
/// answers them 503 `UNAVAILABLE`.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(sql) = cause.downcast_ref::<sqlx::Error>() {
            return db::is_transient(sql);
        }
        if let Some(redis) = cause.downcast_ref::<cache::RedisError>() {
            return cache::is_transient(redis);
        }
        #[cfg(feature = "kafka")]
        if cause.is::<rdkafka::error::KafkaError>() {
            return true;
        }
        cause.is::<std::io::Error>() || cause.is::<tokio::time::error::Elapsed>()
    })
}
