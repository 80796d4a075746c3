//! The engine: safe Rust, no FFI. The C face in the crate root only
//! translates to and from it.

pub mod answer;
pub mod backoff;
pub mod block;
pub mod budget;
pub mod client;
pub mod config;
pub mod connect;
pub mod error;
pub mod event;
pub mod gate;
pub mod queue;
pub mod rest;
pub mod retry;
pub mod runtime;
pub mod secret;
pub mod session;
pub mod sign;
pub mod stream;
pub mod text;
pub mod tls;
pub mod url;

pub use client::Client;
pub use config::Config;
pub use error::{Error, Result, Status};
