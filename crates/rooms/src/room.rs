//! A room's definition as an admin gives it, checked against the contract's limits, and what
//! a room and a place say of themselves over time: the room's status and a place's expected
//! wait.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The fastest admission rate, per second.
pub const MAX_ADMIT_PER_SECOND: i64 = 100_000;
/// How long an admission lasts unless the room says otherwise, in seconds.
pub const DEFAULT_ADMISSION_SECS: i64 = 300;

/// A room as an admin asks for it (`POST /api/admin/rooms`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewRoom {
    /// 2 to 40 characters, not all blank.
    #[schema(
        min_length = 2,
        max_length = 40,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub name: String,
    /// The coupon whose issue requests the room guards (exactly one of this and `productId`).
    #[schema(minimum = 1)]
    pub coupon_id: Option<i64>,
    /// The product whose orders the room guards.
    #[schema(minimum = 1)]
    pub product_id: Option<i64>,
    /// When admission starts; places taken before are shuffled then.
    pub opens_at: DateTime<Utc>,
    /// Admissions a second, 1 to 100,000.
    #[schema(minimum = 1, maximum = 100_000)]
    pub admit_per_second: i64,
    /// At most this many admissions unspent at once.
    #[schema(minimum = 1)]
    pub max_active: Option<i64>,
    /// How long an admission lasts, 30 to 3,600 s (default 300).
    #[schema(minimum = 30, maximum = 3_600)]
    pub admission_secs: Option<i64>,
}

/// Why a room operation was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("no such room")]
    NotFound,
    /// The user holds no place in the room's line, or the place id names none.
    #[error("no such place")]
    NoPlace,
    /// The coupon or product a new room would stand in front of does not exist.
    #[error("no such coupon or product")]
    NoSuchSale,
    /// The line could not be reached (the cache is down); nothing was changed.
    #[error("the line cannot be reached right now")]
    Unavailable(#[source] anyhow::Error),
    /// The sale already has a room that is not closed (409 `ROOM_EXISTS`).
    #[error("the sale already has a room that is not closed")]
    Exists,
    /// The room is closed (409 `ROOM_CLOSED`).
    #[error("the room is closed")]
    Closed,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<db::sqlx::Error> for RoomError {
    fn from(error: db::sqlx::Error) -> Self {
        Self::Unknown(error.into())
    }
}

impl NewRoom {
    /// Checks the contract's limits: a name of 2–40 characters, exactly one sale, a rate of
    /// 1–100,000 a second, a cap of at least 1, admissions of 30–3,600 s.
    pub fn validate(&self) -> Result<(), RoomError> {
        let invalid = |field, message| Err(RoomError::Invalid { field, message });
        let name = self.name.trim();
        if !(2..=40).contains(&name.chars().count()) {
            return invalid("name", "must be 2 to 40 characters, not all blank");
        }
        match (self.coupon_id, self.product_id) {
            (Some(_), Some(_)) | (None, None) => {
                return invalid("couponId", "give exactly one of couponId and productId");
            }
            (Some(id), None) if id < 1 => return invalid("couponId", "must be a positive id"),
            (None, Some(id)) if id < 1 => return invalid("productId", "must be a positive id"),
            _ => {}
        }
        if !(1..=MAX_ADMIT_PER_SECOND).contains(&self.admit_per_second) {
            return invalid("admitPerSecond", "must be 1 to 100,000");
        }
        if self.max_active.is_some_and(|cap| cap < 1) {
            return invalid("maxActive", "must be at least 1");
        }
        if self
            .admission_secs
            .is_some_and(|secs| !(30..=3_600).contains(&secs))
        {
            return invalid("admissionSecs", "must be 30 to 3,600");
        }
        Ok(())
    }

    /// What the room would stand in front of (after [`Self::validate`]).
    pub fn sale(&self) -> Sale {
        match self.coupon_id {
            Some(coupon) => Sale::Coupon(coupon),
            None => Sale::Product(self.product_id.unwrap_or_default()),
        }
    }

    /// How long an admission lasts, in seconds.
    pub fn admission_secs(&self) -> i64 {
        self.admission_secs.unwrap_or(DEFAULT_ADMISSION_SECS)
    }
}

/// What a room stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sale {
    /// Issue requests for this coupon.
    Coupon(i64),
    /// Orders holding an option of this product.
    Product(i64),
}

/// Where a room stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoomStatus {
    /// Before `opensAt`: places are taken, unnumbered.
    Scheduled,
    Open,
    Paused,
    Closed,
}

impl RoomStatus {
    /// A room's status at `now`.
    pub fn at(opens_at: DateTime<Utc>, paused: bool, closed: bool, now: DateTime<Utc>) -> Self {
        match (closed, now < opens_at, paused) {
            (true, _, _) => Self::Closed,
            (false, true, _) => Self::Scheduled,
            (false, false, true) => Self::Paused,
            (false, false, false) => Self::Open,
        }
    }
}

/// A waiting place's expected wait, in seconds: its position divided by the admission rate
/// measured over the last 10 s (`admitted_last_10s`), or by the set rate while the room has
/// been open less than that. `None` while nobody is admitted (paused, or a rate of 0).
pub fn eta_seconds(
    position: u64,
    admitted_last_10s: u64,
    open_for_secs: f64,
    set_rate: u32,
) -> Option<u64> {
    let rate = if open_for_secs >= 10.0 {
        admitted_last_10s as f64 / 10.0
    } else {
        f64::from(set_rate)
    };
    (rate > 0.0).then(|| (position as f64 / rate).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> NewRoom {
        NewRoom {
            name: "Friday drop".into(),
            coupon_id: Some(1),
            product_id: None,
            opens_at: "2026-12-04T10:00:00Z".parse().unwrap(),
            admit_per_second: 50,
            max_active: None,
            admission_secs: None,
        }
    }

    #[test]
    fn a_room_outside_the_contracts_limits_is_refused_naming_the_field() {
        assert!(room().validate().is_ok());
        assert_eq!(room().admission_secs(), 300);
        let refused = |change: fn(&mut NewRoom)| {
            let mut room = room();
            change(&mut room);
            match room.validate() {
                Err(RoomError::Invalid { field, .. }) => field,
                Err(other) => panic!("{other}"),
                Ok(()) => "accepted",
            }
        };
        assert_eq!(refused(|r| r.name = " ".into()), "name");
        assert_eq!(refused(|r| r.name = "x".repeat(41)), "name");
        assert_eq!(refused(|r| r.product_id = Some(2)), "couponId");
        assert_eq!(refused(|r| r.coupon_id = None), "couponId");
        assert_eq!(refused(|r| r.coupon_id = Some(0)), "couponId");
        assert_eq!(
            refused(|r| {
                r.coupon_id = None;
                r.product_id = Some(-3);
            }),
            "productId"
        );
        assert_eq!(refused(|r| r.admit_per_second = 0), "admitPerSecond");
        assert_eq!(refused(|r| r.admit_per_second = 100_001), "admitPerSecond");
        assert_eq!(refused(|r| r.max_active = Some(0)), "maxActive");
        assert_eq!(refused(|r| r.admission_secs = Some(29)), "admissionSecs");
        assert_eq!(refused(|r| r.admission_secs = Some(3_601)), "admissionSecs");
        assert_eq!(refused(|r| r.name = "가나".into()), "accepted");
    }

    #[test]
    fn the_status_follows_the_clock_the_pause_and_the_close() {
        let opens: DateTime<Utc> = "2026-12-04T10:00:00Z".parse().unwrap();
        let before = opens - chrono::Duration::seconds(1);
        assert_eq!(
            RoomStatus::at(opens, false, false, before),
            RoomStatus::Scheduled
        );
        assert_eq!(RoomStatus::at(opens, false, false, opens), RoomStatus::Open);
        assert_eq!(
            RoomStatus::at(opens, true, false, opens),
            RoomStatus::Paused
        );
        assert_eq!(
            RoomStatus::at(opens, true, true, before),
            RoomStatus::Closed
        );
    }

    #[test]
    fn the_eta_uses_the_measured_rate_once_there_are_ten_seconds_of_it() {
        assert_eq!(eta_seconds(100, 0, 3.0, 50), Some(2));
        assert_eq!(eta_seconds(100, 250, 12.0, 50), Some(4));
        assert_eq!(eta_seconds(1, 250, 12.0, 50), Some(1));
        assert_eq!(
            eta_seconds(100, 0, 12.0, 50),
            None,
            "nobody admitted lately"
        );
        assert_eq!(eta_seconds(100, 0, 3.0, 0), None);
    }
}
