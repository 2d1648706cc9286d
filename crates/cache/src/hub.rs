//! Local fan-out of pub/sub messages to the subscribers of this process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

const CHANNEL_CAPACITY: usize = 64;

/// Subscribers of this process, by channel.
#[derive(Clone, Default)]
pub(crate) struct Hub {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
}

impl Hub {
    pub(crate) fn subscribe(&self, channel: &str) -> Subscription {
        let mut channels = self.channels.lock().expect("hub lock");
        let receiver = channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription { receiver }
    }

    /// Hands `message` to this process's subscribers of `channel`; forgets channels whose
    /// subscribers are all gone.
    pub(crate) fn deliver(&self, channel: &str, message: &str) {
        let mut channels = self.channels.lock().expect("hub lock");
        if let Some(sender) = channels.get(channel) {
            if sender.send(message.to_owned()).is_err() {
                channels.remove(channel);
            }
        }
        if channels.len() > 1024 {
            channels.retain(|_, sender| sender.receiver_count() > 0);
        }
    }
}

/// Messages of one channel, from the moment of subscribing.
pub struct Subscription {
    receiver: broadcast::Receiver<String>,
}

impl Subscription {
    /// The next message; `None` only if the hub is gone. A subscriber that fell far behind
    /// skips what it missed (messages are wake-ups, the state lives in a store).
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            match self.receiver.recv().await {
                Ok(message) => return Some(message),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
