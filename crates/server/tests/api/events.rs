use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use db::Tx;
use eventbus::Handler;
use events::{topics, Envelope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::TestApp;

/// Remembers the ids of the events it saw.
struct Seen {
    group: String,
    ids: Arc<Mutex<Vec<Uuid>>>,
}

#[async_trait]
impl Handler for Seen {
    fn group(&self) -> &str {
        &self.group
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::ORDER_CREATED.into()]
    }

    async fn handle(&self, _tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        self.ids.lock().unwrap().push(event.id);
        Ok(())
    }
}

fn order_created(n: u32) -> Envelope {
    Envelope::raw(
        topics::ORDER_CREATED,
        format!("order-{n}"),
        format!("order-{n}"),
        None,
        1,
        serde_json::json!({ "orderId": n }),
    )
}

async fn committed_events_reach_consumers_and_rolled_back_ones_never_do(app: TestApp) {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    app.state.bus.spawn_consumer(
        Arc::new(Seen {
            group: "harness".into(),
            ids: ids.clone(),
        }),
        &stop,
    );
    let outbox = app.state.bus.outbox();

    let kept = order_created(1);
    let mut tx = app.state.db.begin().await.unwrap();
    outbox
        .append(&mut tx, std::slice::from_ref(&kept))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = app.state.db.begin().await.unwrap();
    outbox.append(&mut tx, &[order_created(2)]).await.unwrap();
    tx.rollback().await.unwrap();

    app.drain_events().await;
    assert_eq!(*ids.lock().unwrap(), vec![kept.id]);
    assert_eq!(app.state.bus.backlog().await.unwrap(), 0);
    stop.cancel();
}

crate::on_both_deployments!(committed_events_reach_consumers_and_rolled_back_ones_never_do);
