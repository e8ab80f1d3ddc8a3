//! Small pieces of UI used by several pages.

pub mod chart;
pub mod connection;
pub mod frames;
pub mod projection;
pub mod time;
