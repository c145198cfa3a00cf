//! Appwrite webhook verification and decoding.
