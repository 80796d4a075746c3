//! Transport: endpoints and proxies, TCP/TLS/WebSocket connections, the
//! shared runtime and the blocking wait the C face's calls sit in.

pub mod block;
pub mod connect;
pub mod lead;
pub mod proxy;
pub mod runtime;
pub mod tls;
pub mod url;
