//! The WebSocket API: the session (listenKey requests, pooled connections)
//! and the reading of its answers.

pub mod answer;
pub mod session;
