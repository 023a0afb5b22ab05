//! placeholder

crate::common::tests!();
