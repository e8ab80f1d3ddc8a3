//! Small pieces of UI used by several pages.

pub mod connection;
pub mod projection;
pub mod time;
