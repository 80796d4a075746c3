//! binance-uds: the Binance USDⓈ-M Futures user data stream behind a small
//! blocking C API.
//!
//! The C face is one module per exported concept (`config`, `client`,
//! `listen_key`, `error`, `status`, `string`); each function there checks its
//! arguments and calls into [`engine`], which holds all the logic in safe
//! Rust. `ffi` and `panic` are the plumbing every export shares.

// The C face takes raw pointers from C callers, who cannot see Rust's
// `unsafe`; every pointer is checked in `ffi` before use.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
// C names (binance_client, binance_status) are the ABI.
#![allow(non_camel_case_types)]

/// cbindgen:ignore
pub mod engine;

mod ffi;
mod panic;

pub mod account;
pub mod client;
pub mod config;
pub mod error;
pub mod event;
pub mod listen_key;
pub mod status;
pub mod string;
pub mod user_stream;
