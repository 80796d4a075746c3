//! The `--accounts FILE` format: one account per line, whitespace-separated
//! `field=value` pairs, blank lines and `#` comments allowed:
//!
//! ```text
//! # name      API key's variable   signing key                product
//! desk-a      key_env=DESK_A_KEY   secret_env=DESK_A_SECRET   product=usdm
//! name=desk-b key_env=DESK_B_KEY   pem_file=/etc/uds/b.pem    product=coinm
//! ```
//!
//! The file names where the keys are (environment variables, a PEM file),
//! never the keys themselves, and an error about a line never repeats a
//! value that could be a key.

use binance_uds::engine::Product;

/// One line of the file.
#[derive(Debug, PartialEq)]
pub struct Account {
    /// The file's line number (from 1), for messages.
    pub line: usize,
    /// The tag of every line printed for this account.
    pub name: String,
    /// The environment variable holding the API key.
    pub key_env: String,
    /// The environment variable holding the HMAC secret key, if any.
    pub secret_env: Option<String>,
    /// An Ed25519 private key (PKCS#8 PEM) file, if any.
    pub pem_file: Option<String>,
    /// `None`: the `--product` option's.
    pub product: Option<Product>,
    /// Endpoint overrides, winning over the environment's.
    pub ws_api: Option<String>,
    pub stream: Option<String>,
    pub rest: Option<String>,
}

const FIELDS: &str = "name, key_env, secret_env, pem_file, product, ws_api, stream, rest";

/// An upper-case environment variable name: `[A-Z_][A-Z0-9_]*`. Only such
/// names are accepted (and so echoed in messages): Binance's keys are
/// mixed-case, so a key pasted by mistake is refused without being shown.
fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// An account name: letters, digits, `.`, `_`, `-`, `@`, `:`, `/`, up to
/// 64, so that it is safe in a JSON member and a log line unquoted.
fn is_account_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@:/".contains(c))
}

fn parse_line(number: usize, line: &str) -> Result<Option<Account>, String> {
    let content = line.split('#').next().unwrap_or("").trim();
    if content.is_empty() {
        return Ok(None);
    }
    let mut account = Account {
        line: number,
        name: String::new(),
        key_env: String::new(),
        secret_env: None,
        pem_file: None,
        product: None,
        ws_api: None,
        stream: None,
        rest: None,
    };
    for (i, field) in content.split_whitespace().enumerate() {
        let (key, value) = match field.split_once('=') {
            Some(kv) => kv,
            // The first word may be the bare name.
            None if i == 0 => ("name", field),
            None => return Err(format!("field {}: expected FIELD=VALUE", i + 1)),
        };
        let slot = match key {
            "name" => {
                if !is_account_name(value) {
                    return Err(format!(
                        "field {}: name: expected 1 to 64 of A-Z a-z 0-9 . _ - @ : /",
                        i + 1
                    ));
                }
                if !account.name.is_empty() {
                    return Err("name given twice".into());
                }
                account.name = value.to_string();
                continue;
            }
            "key_env" | "secret_env" => {
                if !is_variable_name(value) {
                    return Err(format!(
                        "{key}: expected an upper-case environment variable name \
                         (A-Z, 0-9, _), not a key"
                    ));
                }
                if key == "key_env" {
                    if !account.key_env.is_empty() {
                        return Err("key_env given twice".into());
                    }
                    account.key_env = value.to_string();
                    continue;
                }
                &mut account.secret_env
            }
            "product" => {
                if account.product.is_some() {
                    return Err("product given twice".into());
                }
                account.product = Some(match value {
                    "usdm" => Product::UsdM,
                    "coinm" => Product::CoinM,
                    "pm" => Product::PortfolioMargin,
                    _ => return Err("product: expected usdm, coinm or pm".into()),
                });
                continue;
            }
            "pem_file" => &mut account.pem_file,
            "ws_api" => &mut account.ws_api,
            "stream" => &mut account.stream,
            "rest" => &mut account.rest,
            _ => {
                return Err(format!(
                    "field {}: unknown field (expected {FIELDS})",
                    i + 1
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("{key} given twice"));
        }
        if value.is_empty() {
            return Err(format!("{key}: empty"));
        }
        *slot = Some(value.to_string());
    }
    if account.name.is_empty() {
        return Err("no name".into());
    }
    if account.key_env.is_empty() {
        return Err("no key_env (the API key's environment variable)".into());
    }
    if account.secret_env.is_some() && account.pem_file.is_some() {
        return Err("secret_env and pem_file: one signing key, not both".into());
    }
    Ok(Some(account))
}

/// The accounts of `text`, read from `file`; an error names the file, the
/// line and what is wrong.
pub fn parse(file: &str, text: &str) -> Result<Vec<Account>, String> {
    let mut accounts: Vec<Account> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let account = parse_line(number, line).map_err(|e| format!("{file}:{number}: {e}"))?;
        let Some(account) = account else { continue };
        if let Some(first) = accounts.iter().find(|a| a.name == account.name) {
            return Err(format!(
                "{file}:{number}: account {} already on line {}",
                account.name, first.line
            ));
        }
        accounts.push(account);
    }
    if accounts.is_empty() {
        return Err(format!("{file}: no accounts"));
    }
    Ok(accounts)
}

/// The line printed for an event of account `name`:
/// `{"account":NAME,"event":JSON}`, the event byte for byte. A wrapper, not
/// a member added to the event: events have members of every name (the
/// account snapshot has an `account`), and a duplicate would be lost.
pub fn tag(name: &str, json: &str) -> String {
    format!(
        "{{\"account\":{},\"event\":{json}}}",
        serde_json::Value::from(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_keys_products_and_comments() {
        let text = "\
# the desk's accounts
desk-a key_env=DESK_A_KEY secret_env=DESK_A_SECRET   # usdm by default

name=desk-b\tkey_env=DESK_B_KEY pem_file=/etc/uds/b.pem product=coinm
pm1 key_env=PM_KEY product=pm ws_api=wss://h/ws stream=wss://h/pm rest=https://h
";
        let accounts = parse("desk.conf", text).unwrap();
        assert_eq!(accounts.len(), 3);
        assert_eq!(
            accounts[0],
            Account {
                line: 2,
                name: "desk-a".into(),
                key_env: "DESK_A_KEY".into(),
                secret_env: Some("DESK_A_SECRET".into()),
                pem_file: None,
                product: None,
                ws_api: None,
                stream: None,
                rest: None,
            }
        );
        assert_eq!(accounts[1].line, 4);
        assert_eq!(accounts[1].name, "desk-b");
        assert_eq!(accounts[1].pem_file.as_deref(), Some("/etc/uds/b.pem"));
        assert_eq!(accounts[1].product, Some(Product::CoinM));
        assert_eq!(accounts[2].product, Some(Product::PortfolioMargin));
        assert_eq!(accounts[2].ws_api.as_deref(), Some("wss://h/ws"));
        assert_eq!(accounts[2].stream.as_deref(), Some("wss://h/pm"));
        assert_eq!(accounts[2].rest.as_deref(), Some("https://h"));
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number_without_its_values() {
        let key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
        for (line, says) in [
            ("a key_env=A b=c", "field 3: unknown field"),
            ("a key_env=A stray", "field 3: expected FIELD=VALUE"),
            ("a", "no key_env"),
            ("key_env=A", "no name"),
            (
                "a key_env=A product=spot",
                "product: expected usdm, coinm or pm",
            ),
            ("a key_env=A secret_env=S pem_file=f", "not both"),
            ("a key_env=A key_env=B", "key_env given twice"),
            ("a key_env=A pem_file=", "pem_file: empty"),
            ("a\"b key_env=A", "name: expected"),
            (
                &format!("a key_env={key}"),
                "key_env: expected an upper-case",
            ),
            (
                &format!("a key_env=A secret_env={key}"),
                "secret_env: expected an upper-case",
            ),
            (&format!("a key_env=A {key}"), "field 3"),
            (&format!("a key_env=A product={key}"), "product: expected"),
        ] {
            let text = format!("# accounts\n\nok key_env=OK\n{line}\n");
            let err = parse("desk.conf", &text).expect_err(line);
            assert!(
                err.starts_with("desk.conf:4: ") && err.contains(says),
                "{line:?}: {err:?} does not say {says:?}"
            );
            assert!(!err.contains(key), "{err}");
        }
        let err = parse("d", "x key_env=A\ny key_env=B\nx key_env=C\n").unwrap_err();
        assert_eq!(err, "d:3: account x already on line 1");
        assert_eq!(parse("d", "# none\n\n").unwrap_err(), "d: no accounts");
    }

    #[test]
    fn tags_keep_the_event_byte_for_byte() {
        let snapshot = r#"{"e":"binance.account_snapshot","account":{"x":1},"balances":[]}"#;
        let line = tag("desk-a", snapshot);
        assert_eq!(
            line,
            format!(r#"{{"account":"desk-a","event":{snapshot}}}"#)
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["account"], "desk-a");
        assert_eq!(v["event"]["account"]["x"], 1);
    }
}
