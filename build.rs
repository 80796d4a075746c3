//! Generates the C header with cbindgen into OUT_DIR. The committed
//! include/binance_uds.h must equal it (a test checks); set
//! BINANCE_UDS_UPDATE_HEADER=1 to refresh the committed copy.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("binance_uds.h");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BINANCE_UDS_UPDATE_HEADER");
    println!(
        "cargo:rustc-env=BINANCE_UDS_GENERATED_HEADER={}",
        out.display()
    );

    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let v = |k: &str| env::var(k).unwrap();
    config.after_includes = Some(format!(
        "\n#define BINANCE_VERSION_MAJOR {}\n#define BINANCE_VERSION_MINOR {}\n#define BINANCE_VERSION_PATCH {}\n\
         #define BINANCE_VERSION_STRING \"{}\"\n\n\
         /* Endpoints. The WebSocket API (binance_config_set_endpoint) and the user\n\
         \x20* data stream base (binance_config_set_stream_endpoint). */\n\
         #define BINANCE_WS_API_URL_PRODUCTION \"wss://ws-fapi.binance.com/ws-fapi/v1\"\n\
         #define BINANCE_WS_API_URL_TESTNET \"wss://testnet.binancefuture.com/ws-fapi/v1\"\n\
         #define BINANCE_STREAM_URL_PRODUCTION \"wss://fstream.binance.com/private\"\n\
         #define BINANCE_STREAM_URL_TESTNET \"wss://fstream.binancefuture.com/private\"\n",
        v("CARGO_PKG_VERSION_MAJOR"),
        v("CARGO_PKG_VERSION_MINOR"),
        v("CARGO_PKG_VERSION_PATCH"),
        v("CARGO_PKG_VERSION"),
    ));
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            // A half-edited source tree should not hide the compiler's own
            // errors behind cbindgen's: warn, and let rustc report.
            println!("cargo:warning=cbindgen could not generate the header: {e}");
            return;
        }
    };
    bindings.write_to_file(&out);
    if env::var_os("BINANCE_UDS_UPDATE_HEADER").is_some() {
        bindings.write_to_file(crate_dir.join("include/binance_uds.h"));
    }
}
