//! Pages, one feature per module.

pub mod chat;
