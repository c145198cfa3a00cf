//! revokd turns signed identity events into Appwrite session revocations.

pub mod simulator;
pub mod sources;
pub mod store;
