//! The engine: safe Rust, no FFI. The C face in the crate root only
//! translates to and from it.
//!
//! One folder per concern: `net/` (transport), `api/` (the WebSocket API
//! session), `rest/` (signed REST), `stream/` (the user data stream); the
//! files beside them are the small core every part shares.

pub mod api;
pub mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod event;
pub mod gate;
pub mod net;
pub mod queue;
pub mod rest;
pub mod retry;
pub mod secret;
pub mod stream;
pub mod text;

pub use client::Client;
pub use config::Config;
pub use error::{Error, Result, Status};
