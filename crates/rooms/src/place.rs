//! A place as the API shows it, and its id. The id is the capability to read and follow the
//! place without a token (as a coupon task's is): it names the room, the user and which of
//! their places in the room it is, signed with the deployment's key, so it cannot be guessed
//! or altered and every instance can check it without asking anyone.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::{
    definition::Room,
    room::eta_seconds,
    store::{PlaceRecord, Seen},
    PlaceStatus,
};

/// Signs and checks place ids: HMAC-SHA256 already keyed, so each id costs the hash of its
/// body alone (every event of a place's stream carries its id).
#[derive(Clone)]
pub struct PlaceKey(Hmac<Sha256>);

/// What a place id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceRef {
    pub room: i64,
    pub user: i64,
    pub generation: u32,
}

impl PlaceKey {
    /// A key for place ids derived from the deployment's secret.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"stampede room places");
        let key = mac.finalize().into_bytes();
        Self(Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key"))
    }

    /// The id of `place`: `ROOM-USER-GENERATION-TAG`, the tag 128 bits of HMAC-SHA256.
    pub fn id(&self, place: PlaceRef) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = format!("{}-{}-{}", place.room, place.user, place.generation);
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        id.reserve(33);
        id.push('-');
        for byte in &mac.finalize().into_bytes()[..16] {
            id.push(char::from(HEX[usize::from(byte >> 4)]));
            id.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        id
    }

    /// What `id` names, if this deployment signed it.
    pub fn check(&self, id: &str) -> Option<PlaceRef> {
        let (body, tag) = id.rsplit_once('-')?;
        let mut parts = body.split('-');
        let place = PlaceRef {
            room: parts.next()?.parse().ok()?,
            user: parts.next()?.parse().ok()?,
            generation: parts.next()?.parse().ok()?,
        };
        if parts.next().is_some()
            || body != format!("{}-{}-{}", place.room, place.user, place.generation)
        {
            return None;
        }
        let mut mac = self.0.clone();
        mac.update(body.as_bytes());
        let tag = (0..tag.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(tag.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        if tag.len() != 16 {
            return None;
        }
        mac.verify_truncated_left(&tag).ok()?;
        Some(place)
    }
}

/// A place (`GET /api/room-places/{placeId}`, and each `place` event of its stream).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaceView {
    pub place_id: String,
    pub room_id: i64,
    pub user_id: i64,
    /// Its number in line from 1; absent until the room opens for a place taken before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    #[schema(value_type = String, example = "WAITING")]
    pub status: PlaceStatus,
    /// While waiting and numbered: the waiting places before it, plus one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// While waiting: the expected wait from the measured admission rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_expires_at: Option<DateTime<Utc>>,
}

/// How fast a room has been admitting lately, for the ETA.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// Admissions over the last 10 s.
    pub admitted_last_10s: u64,
    /// How long the room has been open, in seconds (the measured rate counts from 10).
    pub open_for_secs: f64,
}

impl PlaceView {
    /// The place `generation` of the user whose latest is `seen`: `seen` itself, or (for the
    /// one before) how it ended. `None` for an older place, which the line no longer knows.
    pub fn of(
        key: &PlaceKey,
        room: &Room,
        seen: &Seen,
        generation: u32,
        pace: Pace,
    ) -> Option<Self> {
        let record: &PlaceRecord = &seen.record;
        let id = key.id(PlaceRef {
            room: room.id,
            user: record.user_id,
            generation,
        });
        if generation + 1 == record.generation {
            return record.previous.map(|status| Self {
                place_id: id,
                room_id: room.id,
                user_id: record.user_id,
                number: None,
                status,
                position: None,
                eta_seconds: None,
                admitted_at: None,
                admission_expires_at: None,
            });
        }
        if generation != record.generation {
            return None;
        }
        let set_rate = room.schedule.current();
        let set_rate = if set_rate.paused {
            0
        } else {
            set_rate.per_second
        };
        Some(Self {
            place_id: id,
            room_id: room.id,
            user_id: record.user_id,
            number: record.number,
            status: record.status,
            position: seen.position,
            eta_seconds: seen.position.and_then(|position| {
                eta_seconds(
                    position,
                    pace.admitted_last_10s,
                    pace.open_for_secs,
                    set_rate,
                )
            }),
            admitted_at: record.admitted_at,
            admission_expires_at: record.expires_at,
        })
    }

    /// The event id of this state of the place: a place only moves forward (its position
    /// down, its status on), so a reconnecting client that names the state it saw last is
    /// sent only what came after.
    pub fn event_id(&self) -> String {
        let position = self.position.map_or("-".to_owned(), |p| p.to_string());
        format!("{}.{}.{}", self.place_id, self.status.as_str(), position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_id_names_its_place_and_cannot_be_guessed_or_altered() {
        let key = PlaceKey::derive(b"a secret of the deployment, long enough");
        let place = PlaceRef {
            room: 7,
            user: 1042,
            generation: 2,
        };
        let id = key.id(place);
        // HMAC-SHA256 under HMAC-SHA256(secret, "stampede room places"), as anyone can check.
        assert_eq!(id, "7-1042-2-628b0ff27a5b4e585e1f9c86893d438b");
        assert_eq!(key.check(&id), Some(place));
        let other_user = id.replacen("-1042-", "-1043-", 1);
        assert_eq!(key.check(&other_user), None, "altered");
        assert_eq!(key.check(&id[..id.len() - 2]), None, "truncated");
        assert_eq!(key.check("7-1042-2-00"), None);
        assert_eq!(key.check("7-+1042-2-00"), None);
        assert_eq!(key.check("not a place"), None);
        let elsewhere = PlaceKey::derive(b"another deployment's secret, long too");
        assert_eq!(elsewhere.check(&id), None, "another deployment's key");
    }
}
