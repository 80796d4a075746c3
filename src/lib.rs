//! binance-uds: the Binance USDⓈ-M Futures user data stream behind a small
//! blocking C API.
//!
//! The C face is one module per exported concept; each function there
//! checks its arguments and calls into [`engine`], which holds all the logic
//! in safe Rust. `ffi` and `panic` are the plumbing every export shares.
//!
//! The modules are listed in the order the header should be read (cbindgen
//! keeps source order): status and version, errors, strings, configuration,
//! clients, listen keys, user streams, events.

// C names (binance_client, binance_status) are the ABI.
#![allow(non_camel_case_types)]

/// cbindgen:ignore
pub mod engine;

mod ffi;
mod panic;

// The C face, in header order; each module is its own group so that rustfmt
// does not sort them. Each takes raw pointers from C callers, who cannot see
// Rust's `unsafe`; every pointer is checked in `ffi` before use, so the lint
// is allowed here and kept for the engine.

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod status;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod error;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod string;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod config;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod client;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod account;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod listen_key;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod user_stream;

#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub mod event;

// The handles C may share between threads must stay shareable: this stops
// the build if a field ever makes one of them !Send or !Sync (the header
// promises per type what may be done from several threads).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<config::binance_config>();
    send_sync::<client::binance_client>();
    send_sync::<error::binance_error>();
    send_sync::<user_stream::binance_user_stream>();
    send_sync::<event::binance_event>();
};
