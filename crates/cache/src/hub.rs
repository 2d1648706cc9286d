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
        Subscription {
            receiver,
            channel: channel.to_owned(),
            hub: self.clone(),
        }
    }

    /// Forgets `channel` if it has no subscriber left.
    fn release(&self, channel: &str) {
        let mut channels = self.channels.lock().expect("hub lock");
        if channels
            .get(channel)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(channel);
        }
    }

    /// Channels with a subscriber in this process.
    pub(crate) fn channels(&self) -> usize {
        self.channels.lock().expect("hub lock").len()
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
    }
}

/// Messages of one channel, from the moment of subscribing. Dropping the last subscription of
/// a channel forgets the channel.
pub struct Subscription {
    receiver: broadcast::Receiver<String>,
    channel: String,
    hub: Hub,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver still counts until this returns: swap it for a detached one first.
        let detached = broadcast::channel(1).1;
        drop(std::mem::replace(&mut self.receiver, detached));
        self.hub.release(&self.channel);
    }
}

/// How often a follower reads its resource again without a wake-up: pub/sub is best effort,
/// what is stored is the truth.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl Subscription {
    /// Waits until a message says the followed resource changed, or [`RECHECK`] passed; then
    /// the follower reads it again.
    pub async fn changed(&mut self) {
        tokio::select! {
            _ = self.recv() => {}
            () = tokio::time::sleep(RECHECK) => {}
        }
    }

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
