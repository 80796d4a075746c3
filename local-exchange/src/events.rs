//! User data stream events, built from Binance's documentation examples
//! (docs: /work/shared/binance-protocol.md §5) with `E` (and `T`, one ms
//! earlier) replaced. Key order follows the examples ("e" first).

/// The event of type `typ` with event time `e`; unknown types are `{"e":TYPE,"E":e}`.
pub fn render(typ: &str, e: u64) -> String {
    let t = e.saturating_sub(1);
    match typ {
        "ACCOUNT_UPDATE" => format!(
            r#"{{"e":"ACCOUNT_UPDATE","E":{e},"T":{t},"a":{{"m":"ORDER","B":[{{"a":"USDT","wb":"122624.12345678","cw":"100.12345678","bc":"50.12345678"}},{{"a":"BUSD","wb":"1.00000000","cw":"0.00000000","bc":"-49.12345678"}}],"P":[{{"s":"BTCUSDT","pa":"0","ep":"0.00000","bep":"0","cr":"200","up":"0","mt":"isolated","iw":"0.00000000","ps":"BOTH"}},{{"s":"BTCUSDT","pa":"20","ep":"6563.66500","bep":"0","cr":"0","up":"2850.21200","mt":"isolated","iw":"13200.70726908","ps":"LONG"}},{{"s":"BTCUSDT","pa":"-10","ep":"6563.86000","bep":"6563.6","cr":"-45.04000000","up":"-1423.15600","mt":"isolated","iw":"6570.42511771","ps":"SHORT"}}]}}}}"#
        ),
        "ORDER_TRADE_UPDATE" => format!(
            r#"{{"e":"ORDER_TRADE_UPDATE","E":{e},"T":{t},"o":{{"s":"BTCUSDT","c":"TEST","S":"SELL","o":"TRAILING_STOP_MARKET","f":"GTC","q":"0.001","p":"0","ap":"0","sp":"7103.04","x":"NEW","X":"NEW","i":8886774,"l":"0","z":"0","L":"0","N":"USDT","n":"0","T":{t},"t":0,"b":"0","a":"9.91","m":false,"R":false,"wt":"CONTRACT_PRICE","ot":"TRAILING_STOP_MARKET","ps":"LONG","cp":false,"AP":"7476.89","cr":"5.0","pP":false,"si":0,"ss":0,"rp":"0","V":"EXPIRE_TAKER","pm":"OPPONENT","gtd":0,"er":"0"}}}}"#
        ),
        "TRADE_LITE" => format!(
            r#"{{"e":"TRADE_LITE","E":{e},"T":{t},"s":"BTCUSDT","q":"0.001","p":"0","m":false,"c":"z8hcUoOsqEdKMeKPSABslD","S":"BUY","L":"64089.20","l":"0.040","t":109100866,"i":8886774}}"#
        ),
        "MARGIN_CALL" => format!(
            r#"{{"e":"MARGIN_CALL","E":{e},"cw":"3.16812045","p":[{{"s":"ETHUSDT","ps":"LONG","pa":"1.327","mt":"CROSSED","iw":"0","mp":"187.17127","up":"-1.166074","mm":"1.614445"}}]}}"#
        ),
        "ACCOUNT_CONFIG_UPDATE" => {
            format!(
                r#"{{"e":"ACCOUNT_CONFIG_UPDATE","E":{e},"T":{t},"ac":{{"s":"BTCUSDT","l":25}}}}"#
            )
        }
        "STRATEGY_UPDATE" => format!(
            r#"{{"e":"STRATEGY_UPDATE","T":{t},"E":{e},"su":{{"si":176054594,"st":"GRID","ss":"NEW","s":"BTCUSDT","ut":{t},"c":8007}}}}"#
        ),
        "GRID_UPDATE" => format!(
            r#"{{"e":"GRID_UPDATE","T":{t},"E":{e},"gu":{{"si":176057039,"st":"GRID","ss":"WORKING","s":"BTCUSDT","r":"-0.00300716","up":"16720","uq":"-0.001","uf":"-0.00300716","mp":"0.0","ut":{t}}}}}"#
        ),
        "ALGO_UPDATE" => format!(
            r#"{{"e":"ALGO_UPDATE","T":{t},"E":{e},"o":{{"caid":"Q5xaq5EGKgXXa0fD7fs0Ip","aid":2148719,"at":"CONDITIONAL","o":"TAKE_PROFIT","s":"BNBUSDT","S":"SELL","ps":"BOTH","f":"GTC","q":"0.01","X":"CANCELED","ai":"","ap":"0.00000","aq":"0.00000","act":"0","tp":"750","p":"750","V":"EXPIRE_MAKER","wt":"CONTRACT_PRICE","pm":"NONE","cp":false,"pP":false,"R":false,"tt":0,"gtd":0,"rm":"Reduce Only reject"}}}}"#
        ),
        "CONDITIONAL_ORDER_TRIGGER_REJECT" => format!(
            r#"{{"e":"CONDITIONAL_ORDER_TRIGGER_REJECT","E":{e},"T":{t},"or":{{"s":"ETHUSDT","i":155618472834,"r":"Due to the order could cause immediate execution, it has been rejected."}}}}"#
        ),
        other => format!(r#"{{"e":{},"E":{e}}}"#, serde_json::Value::from(other)),
    }
}

/// `listenKeyExpired`, with `E` as a string as in Binance's documentation example.
pub fn expired(e: u64, listen_key: &str) -> String {
    format!(r#"{{"e":"listenKeyExpired","E":"{e}","listenKey":"{listen_key}"}}"#)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_is_json_with_e() {
        for t in [
            "ACCOUNT_UPDATE",
            "ORDER_TRADE_UPDATE",
            "TRADE_LITE",
            "MARGIN_CALL",
            "ACCOUNT_CONFIG_UPDATE",
            "STRATEGY_UPDATE",
            "GRID_UPDATE",
            "ALGO_UPDATE",
            "CONDITIONAL_ORDER_TRIGGER_REJECT",
            "X\"Y",
        ] {
            let v: serde_json::Value = serde_json::from_str(&super::render(t, 42)).unwrap();
            assert_eq!((v["e"].as_str(), v["E"].as_u64()), (Some(t), Some(42)));
        }
        let v: serde_json::Value = serde_json::from_str(&super::expired(7, "k")).unwrap();
        assert_eq!(v["E"], "7");
    }
}
