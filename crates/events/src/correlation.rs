//! The correlation id of the work in progress: an HTTP request's id, or the correlation id of
//! the event a consumer is handling. Every event created inside a [`scope`] carries it, so one
//! id follows a request through the events it causes, across processes.

use std::future::Future;

tokio::task_local! {
    static CURRENT: String;
}

/// Runs `work` with `id` as the correlation id of the events it creates.
pub async fn scope<F: Future>(id: String, work: F) -> F::Output {
    CURRENT.scope(id, work).await
}

/// The correlation id in scope, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// `work` in the current correlation scope, for `tokio::spawn`: a spawned task does not
/// inherit it.
pub fn carried<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let id = current();
    async move {
        match id {
            Some(id) => CURRENT.scope(id, work).await,
            None => work.await,
        }
    }
}
