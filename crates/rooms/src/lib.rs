//! The waiting-room context: a line in front of one sale (a coupon drop or a product), admitted
//! at a set rate (`docs/design.md`, "The waiting room").
//!
//! What is here so far is the room's arithmetic, the same on every deployment and every
//! instance: [`schedule`] says how many admissions are due at any moment from the room's rate
//! history (admission is a function of time, so instances agree without talking), [`order`]
//! puts the places taken before opening in an order anyone can recompute from the published
//! seed, and [`line`] is the line itself as one process holds it (the embedded deployment's,
//! and the reference the Redis scripts are tested against): joining, admitting the first
//! waiting places, positions in logarithmic time, leaving, spending, expiry and closing.
//! [`room`] checks a room's definition against the contract and says its status and a
//! place's expected wait; [`definition`] keeps rooms and their rate history in the database
//! (create, find, change, close).

pub mod definition;
pub mod line;
pub mod order;
pub mod room;
pub mod schedule;

pub use definition::{ClosedReason, Room};
pub use line::{Line, PlaceStatus};
pub use room::{NewRoom, RoomError, RoomStatus};

#[cfg(test)]
mod tests;
pub use schedule::Schedule;
