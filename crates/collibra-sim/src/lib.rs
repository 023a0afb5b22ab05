//! collibra-sim
