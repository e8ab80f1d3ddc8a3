//! Small pieces of UI used by several pages, and the browser APIs they share.

pub mod browser;
pub mod connection;
pub mod frames;
pub mod time;
