//! A client: one WebSocket API session for one API key, and the listenKey
//! methods on top of it.

use super::api::session::{Session, SessionConfig};
use super::config::Config;
use super::error::{Error, Result};
use super::gate::Gate;
use super::net::connect::Dialer;
use super::net::runtime::RuntimeRef;
use super::net::tls;
use super::rest::{KeyMethod, Rest, RestConfig};
use serde_json::Value;
use std::sync::Arc;

/// The longest listenKey accepted from a server (Binance's are 64 chars).
pub const MAX_LISTEN_KEY_LEN: usize = 256;

pub struct Client {
    pub(crate) session: Arc<Session>,
    pub(crate) config: Config,
    pub(crate) runtime: RuntimeRef,
    /// REST: when the config has a signing key (signed requests), and
    /// always for Portfolio Margin (its listenKey).
    rest: Option<Arc<Rest>>,
    gate: Gate,
}

/// Where a client's listenKey comes from and is kept alive: the WebSocket
/// API session (`userDataStream.start/ping/stop`: USDⓈ-M, COIN-M) or REST
/// (`POST/PUT/DELETE /papi/v1/listenKey`: Portfolio Margin). The session
/// is there either way: its closing signal says the client is being freed.
#[derive(Clone)]
pub struct Keys {
    pub session: Arc<Session>,
    /// Set for a REST listenKey.
    rest: Option<Arc<Rest>>,
}

impl Keys {
    /// The account's listenKey (an existing valid key is returned and
    /// extended).
    pub async fn start(&self) -> Result<String> {
        match &self.rest {
            Some(rest) => {
                let v = rest.listen_key(KeyMethod::Start).await?;
                listen_key_of("POST /papi/v1/listenKey", &v)
            }
            None => {
                let method = "userDataStream.start";
                let answer = self.session.request_async(method).await?;
                listen_key_of(method, &answer.result)
                    .inspect_err(|e| self.session.replace_connection(e))
            }
        }
    }

    /// Extends `current`'s validity; returns the key the server names
    /// (REST's `PUT` may answer `{}`: then `current`).
    pub async fn ping(&self, current: &str) -> Result<String> {
        match &self.rest {
            Some(rest) => {
                let v = rest.listen_key(KeyMethod::Ping).await?;
                if v.get("listenKey").is_none() {
                    return Ok(current.to_owned());
                }
                listen_key_of("PUT /papi/v1/listenKey", &v)
            }
            None => {
                let method = "userDataStream.ping";
                let answer = self.session.request_async(method).await?;
                listen_key_of(method, &answer.result)
                    .inspect_err(|e| self.session.replace_connection(e))
            }
        }
    }

    /// Closes the account's stream and its key.
    pub async fn stop(&self) -> Result<()> {
        match &self.rest {
            Some(rest) => rest.listen_key(KeyMethod::Stop).await.map(|_| ()),
            None => self
                .session
                .request_async("userDataStream.stop")
                .await
                .map(|_| ()),
        }
    }
}

impl Client {
    /// Checks the config and prepares the client; nothing is connected yet.
    pub fn new(config: &Config) -> Result<Client> {
        let api_key = config
            .api_key
            .clone()
            .ok_or_else(|| Error::invalid("cfg: no API key set (binance_config_set_api_key)"))?;
        let runtime = RuntimeRef::acquire()?;
        let api_dialer = Dialer {
            read_buffer: super::net::connect::API_READ_BUFFER,
            ..dialer(config, &config.endpoint)?
        };
        // Clients that would open the same connection share it (the key
        // goes with each request).
        let identity = config.connection_identity(
            &config.endpoint,
            api_dialer.proxy.as_ref(),
            config.api_rotate_after,
        );
        let session_config = SessionConfig {
            endpoint: config.endpoint.clone(),
            dialer: api_dialer,
            request_timeout: config.request_timeout,
            api_key,
            max_connection_age: config.api_rotate_after,
            budget: config.budget(),
        };
        let session = if config.connection_sharing {
            Session::shared(runtime.handle().clone(), session_config, identity)
        } else {
            Session::new(runtime.handle().clone(), session_config)
        };
        let signer = match &config.signing_key {
            Some(key) => Some(key.signer()?),
            None => None,
        };
        let rest = if signer.is_some() || config.product.rest_listen_key() {
            Some(Arc::new(Rest::new(
                runtime.handle().clone(),
                RestConfig {
                    base: config.rest_endpoint.clone(),
                    dialer: dialer(config, &config.rest_endpoint)?,
                    request_timeout: config.request_timeout,
                    api_key: config.api_key.clone().expect("checked above"),
                    signer,
                    product: config.product,
                    recv_window_ms: config.recv_window_ms,
                    budget: config.budget(),
                    snapshot_percent: config.snapshot_budget_percent,
                },
            )))
        } else {
            None
        };
        Ok(Client {
            session: Arc::new(session),
            config: config.clone(),
            runtime,
            rest,
            gate: Gate::default(),
        })
    }

    /// `userDataStream.start`: the account's listenKey (an existing valid
    /// key is returned and extended).
    pub fn listen_key_start(&self) -> Result<String> {
        let _in = self.gate.enter()?;
        let keys = self.keys();
        if keys.rest.is_some() {
            return self.block(keys.start());
        }
        self.listen_key_call("userDataStream.start")
    }

    /// `userDataStream.ping`: extends the key's validity; returns the key.
    pub fn listen_key_keepalive(&self) -> Result<String> {
        let _in = self.gate.enter()?;
        let keys = self.keys();
        if keys.rest.is_some() {
            // REST's PUT names no key: the one start gives (extended).
            return self.block(async {
                let key = keys.start().await?;
                keys.ping(&key).await
            });
        }
        self.listen_key_call("userDataStream.ping")
    }

    /// `userDataStream.stop`: closes the account's stream and its key.
    pub fn listen_key_stop(&self) -> Result<()> {
        let _in = self.gate.enter()?;
        let keys = self.keys();
        if keys.rest.is_some() {
            return self.block(keys.stop());
        }
        self.session.request("userDataStream.stop")?;
        Ok(())
    }

    /// Where this client's listenKey comes from.
    pub(crate) fn keys(&self) -> Keys {
        Keys {
            session: self.session.clone(),
            rest: if self.config.product.rest_listen_key() {
                self.rest.clone()
            } else {
                None
            },
        }
    }

    fn listen_key_call(&self, method: &str) -> Result<String> {
        let answer = self.session.request(method)?;
        listen_key_of(method, &answer.result).inspect_err(|e| self.session.replace_connection(e))
    }

    /// Runs `work` on the client's runtime from the calling thread.
    fn block<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        super::net::runtime::ensure_blocking_allowed("blocking calls")?;
        self.runtime.handle().block_on(work)
    }

    /// The account snapshot (see [`Rest::fetch_snapshot`]), blocking.
    /// INVALID_ARGUMENT when the config had no signing key.
    pub fn account_snapshot(&self) -> Result<String> {
        let _in = self.gate.enter()?;
        self.signed_rest()?.fetch_snapshot_blocking()
    }

    /// The signed REST client, for tests that look into it.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn rest(&self) -> Result<&Arc<Rest>> {
        self.signed_rest()
    }

    /// The signed REST client, for the account snapshot; INVALID_ARGUMENT
    /// when the config had no secret key or private key.
    pub(crate) fn signed_rest(&self) -> Result<&Arc<Rest>> {
        self.rest.as_ref().filter(|r| r.can_sign()).ok_or_else(|| {
            Error::invalid(
                "client: no key to sign requests with: set binance_config_set_secret_key or binance_config_set_private_key_pem",
            )
        })
    }

    /// Runs `f` as a call on this client: refused once the client is being
    /// freed, and waited for by `close`.
    pub fn call<T>(&self, f: impl FnOnce(&Client) -> Result<T>) -> Result<T> {
        let _in = self.gate.enter()?;
        f(self)
    }

    /// The `rateLimits` array of the latest answer that carried one, as
    /// JSON text; `[]` before any.
    pub fn rate_limits(&self) -> String {
        self.session.rate_limits().unwrap_or_else(|| "[]".into())
    }

    /// The request budget this client's requests draw on.
    pub fn budget(&self) -> Arc<super::rest::budget::Budget> {
        self.config.budget()
    }

    /// The WebSocket API session, for tests that count its connections.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Fails calls in flight on other threads (they return
    /// BINANCE_CONNECTION_CLOSED at once), waits for them to return, and
    /// closes the connection. Called by drop.
    pub fn close(&self) {
        self.gate.close(|| {
            if let Some(rest) = &self.rest {
                rest.shutdown();
            }
            self.session.shutdown();
        });
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// The listenKey in a start/ping result, checked: it goes into a URL path.
pub fn listen_key_of(method: &str, result: &Value) -> Result<String> {
    let key = result
        .get("listenKey")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::protocol(format!(
                "{method}: the answer's result has no string \"listenKey\""
            ))
        })?;
    if key.is_empty()
        || key.len() > MAX_LISTEN_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::protocol(format!(
            "{method}: the answer's listenKey is not 1 to {MAX_LISTEN_KEY_LEN} letters and digits"
        )));
    }
    Ok(key.to_owned())
}

/// The dialer for one endpoint: shared TLS connector, proxy, timeout.
pub fn dialer(config: &Config, endpoint: &super::net::url::Endpoint) -> Result<Dialer> {
    Ok(Dialer {
        tls: if endpoint.tls {
            Some(tls::connector(&config.extra_roots)?)
        } else {
            None
        },
        proxy: config.proxy_for(endpoint)?,
        connect_timeout: config.connect_timeout,
        read_buffer: super::net::connect::STREAM_READ_BUFFER,
        source: config.source_address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listen_key_must_be_url_safe() {
        let k = "x".repeat(64);
        assert_eq!(listen_key_of("m", &json!({ "listenKey": k })).unwrap(), k);
        for bad in [
            json!({}),
            json!({"listenKey": 5}),
            json!({"listenKey": ""}),
            json!({"listenKey": "a/b"}),
            json!({"listenKey": "a b"}),
        ] {
            let e = listen_key_of("m", &bad).unwrap_err();
            assert_eq!(e.status, super::super::error::Status::ProtocolError);
        }
    }

    #[test]
    fn rate_limits_are_an_empty_array_before_any_answer() {
        let mut config = Config::default();
        config.set_api_key("k").unwrap();
        assert_eq!(Client::new(&config).unwrap().rate_limits(), "[]");
    }

    #[test]
    fn client_needs_an_api_key() {
        let e = Client::new(&Config::default()).err().unwrap();
        assert_eq!(e.status, super::super::error::Status::InvalidArgument);
        assert!(e.message.contains("API key"));
    }
}
