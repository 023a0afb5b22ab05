//! test-control-plane
