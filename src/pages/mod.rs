//! Pages, one feature per module.

pub mod account;
pub mod chat;
pub mod settings;
