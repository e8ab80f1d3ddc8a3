//! Pages, one feature per module.

pub mod account;
pub mod chat;
pub mod map;
pub mod sensors;
pub mod settings;
