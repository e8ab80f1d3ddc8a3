//! Small pieces of UI used by several pages.

pub mod connection;
pub mod time;
