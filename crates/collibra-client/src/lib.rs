//! collibra-client
