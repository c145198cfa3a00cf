//! Standard Webhooks verification and decoding.
