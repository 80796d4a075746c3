//! Generates the C header with cbindgen into OUT_DIR. The committed
//! include/binance_uds.h must equal it (a test checks); set
//! BINANCE_UDS_UPDATE_HEADER=1 to refresh the committed copy.
//!
//! On Linux it also gives the shared library its soname (see `soname`).

use std::env;
use std::path::{Path, PathBuf};

/// The library's file name stem, as in `lib<LIB_NAME>.so` (Cargo.toml [lib] name).
const LIB_NAME: &str = "binance_uds";

fn main() {
    shared_library_soname();
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
    let part = |k: &str| -> u8 { v(k).parse().expect("a version part is 0 to 255") };
    let version_num = format!(
        "0x{:02x}{:02x}{:02x}",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH")
    );
    config.after_includes = Some(format!(
        "\n/** The version of this header: equal to binance_version() of the library\n\
         \x20* built with it. See CHANGELOG.md for what each version added. */\n\
         #define BINANCE_VERSION_MAJOR {}\n#define BINANCE_VERSION_MINOR {}\n#define BINANCE_VERSION_PATCH {}\n\
         #define BINANCE_VERSION_STRING \"{}\"\n\n\
         /** The version as one number, 0xMMmmpp (0x000100 for 0.1.0), and a test\n\
         \x20* that the header is at least version x.y.z, for code that must build\n\
         \x20* against several versions (like curl's LIBCURL_VERSION_NUM and\n\
         \x20* CURL_AT_LEAST_VERSION): #if BINANCE_AT_LEAST_VERSION(0, 2, 0). */\n\
         #define BINANCE_VERSION_NUM {version_num}\n\
         #define BINANCE_AT_LEAST_VERSION(x, y, z) \
         (BINANCE_VERSION_NUM >= (((x) << 16) | ((y) << 8) | (z)))\n\n\
         /**\n\
         \x20* Marks a function that will be removed in the next ABI (soname) version,\n\
         \x20* with the reason and the replacement; the compiler then warns on each use.\n\
         \x20* A deprecated function keeps working until then (see CHANGELOG.md).\n\
         \x20*/\n\
         #if defined(__clang__) || defined(__GNUC__)\n\
         # define BINANCE_DEPRECATED_FUNC(why) __attribute__((deprecated(why)))\n\
         #elif defined(_MSC_VER)\n\
         # define BINANCE_DEPRECATED_FUNC(why) __declspec(deprecated(why))\n\
         #else\n\
         # define BINANCE_DEPRECATED_FUNC(why)\n\
         #endif\n\n\
         /** Endpoints. The WebSocket API (binance_config_set_endpoint) and the user\n\
         \x20* data stream base (binance_config_set_stream_endpoint). */\n\
         #define BINANCE_WS_API_URL_PRODUCTION \"wss://ws-fapi.binance.com/ws-fapi/v1\"\n\
         #define BINANCE_WS_API_URL_TESTNET \"wss://testnet.binancefuture.com/ws-fapi/v1\"\n\
         #define BINANCE_STREAM_URL_PRODUCTION \"wss://fstream.binance.com/private\"\n\
         #define BINANCE_STREAM_URL_TESTNET \"wss://fstream.binancefuture.com/private\"\n\
         /* The REST base URL signed requests use (binance_config_set_rest_endpoint). */\n\
         #define BINANCE_REST_URL_PRODUCTION \"https://fapi.binance.com\"\n\
         #define BINANCE_REST_URL_TESTNET \"https://demo-fapi.binance.com\"\n\
         /* COIN-M Futures (binance_config_set_product(BINANCE_PRODUCT_COINM)\n\
         \x20* makes the production ones the defaults). */\n\
         #define BINANCE_COINM_WS_API_URL_PRODUCTION \"wss://ws-dapi.binance.com/ws-dapi/v1\"\n\
         #define BINANCE_COINM_WS_API_URL_TESTNET \"wss://testnet.binancefuture.com/ws-dapi/v1\"\n\
         #define BINANCE_COINM_STREAM_URL_PRODUCTION \"wss://dstream.binance.com\"\n\
         #define BINANCE_COINM_STREAM_URL_TESTNET \"wss://dstream.binancefuture.com\"\n\
         #define BINANCE_COINM_REST_URL_PRODUCTION \"https://dapi.binance.com\"\n\
         #define BINANCE_COINM_REST_URL_TESTNET \"https://testnet.binancefuture.com\"\n\
         /* Portfolio Margin (BINANCE_PRODUCT_PORTFOLIO_MARGIN): no WebSocket API,\n\
         \x20* no testnet. */\n\
         #define BINANCE_PM_STREAM_URL_PRODUCTION \"wss://fstream.binance.com/pm\"\n\
         #define BINANCE_PM_REST_URL_PRODUCTION \"https://papi.binance.com\"\n",
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

/// The soname: `lib<name>.so.<major>`, so `libbinance_uds.so.0` for every
/// 0.y.z. Issue 4 asks for exactly this (`libbinance_uds.so.0 ->
/// libbinance_uds.so.0.y.z`). Note that cargo-c's default differs for 0.x:
/// it uses `.so.0.y` (and `.so.0.0.z` for 0.0.z), treating each 0.y as a
/// new ABI. With `.so.0`, a 0.y release must keep the ABI of the previous
/// ones (add functions, never change or remove one); docs/install.md says so.
/// scripts/install.sh reads the soname back from the built library, so this
/// is the one place that decides it.
fn soname() -> String {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    format!("lib{LIB_NAME}.so.{major}")
}

/// Sets the soname on Linux, and makes the in-tree library loadable under it;
/// on macOS, the dylib's install name (`dylib_install_name`). Windows is left
/// as Cargo builds it (scripts/install.sh makes its import libraries).
///
/// No linker version script is added: rustc already links every cdylib with
/// its own (`global:` exactly the `#[no_mangle]` exports, `local: *`), which
/// is what keeps the export list to the `binance_*` functions, and a second
/// one either changes nothing (lld, the default linker on x86_64 Linux,
/// merges them) or fails the link (GNU ld: "anonymous version tag cannot be
/// combined with other version tags"). tests/packaging.sh checks that the
/// exports are exactly the functions of include/binance_uds.h.
fn shared_library_soname() {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        dylib_install_name();
        return;
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let soname = soname();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    // A program linked against target/<profile>/libbinance_uds.so (the C
    // tests, the examples) records the soname as the library it needs, so
    // the loader looks for that name next to it: provide it as a symlink in
    // the directory rustc writes the library to (deps/) and the one Cargo
    // copies it to. They dangle until the library is linked.
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let Some(profile_dir) = out_dir.ancestors().nth(3) else {
        return;
    };
    let file = format!("lib{LIB_NAME}.so");
    for dir in [profile_dir.join("deps"), profile_dir.to_path_buf()] {
        if dir.is_dir() {
            link_soname(&dir, &soname, &file);
        }
    }
}

#[cfg(unix)]
fn link_soname(dir: &Path, soname: &str, file: &str) {
    let link = dir.join(soname);
    if std::fs::read_link(&link).is_ok_and(|target| target == Path::new(file)) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(file, &link) {
        println!("cargo:warning=could not create {}: {e}", link.display());
    }
}

#[cfg(not(unix))]
fn link_soname(_dir: &Path, _soname: &str, _file: &str) {}

/// macOS's counterpart of the soname: the install name a program linked
/// against the dylib records, `@rpath/libbinance_uds.dylib`, so that it finds
/// the library through its own rpath wherever the library is installed
/// (Cargo's default is the build directory's absolute path), and the
/// compatibility version of the ABI (the major version, as the soname).
/// Compile-checked only here: linking for Apple targets needs Apple's linker
/// (docs/platforms.md).
fn dylib_install_name() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/lib{LIB_NAME}.dylib");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-compatibility_version,{major}.0.0");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-current_version,{version}");
}
