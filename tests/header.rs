//! The committed header must be what the build generates from the sources.

#[test]
fn committed_header_matches_generated() {
    let generated = std::fs::read_to_string(env!("BINANCE_UDS_GENERATED_HEADER"))
        .expect("build.rs generated the header (did cbindgen fail? see the build warnings)");
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/include/binance_uds.h"
    ))
    .expect("include/binance_uds.h exists");
    assert!(
        generated == committed,
        "include/binance_uds.h is stale: refresh it with `BINANCE_UDS_UPDATE_HEADER=1 cargo build` and commit it"
    );
}

#[test]
fn header_version_matches_the_crate() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/include/binance_uds.h"
    ))
    .unwrap();
    let define = |name: &str| -> String {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not defined"))
            .trim()
            .to_owned()
    };
    let version = format!(
        "{}.{}.{}",
        define("BINANCE_VERSION_MAJOR"),
        define("BINANCE_VERSION_MINOR"),
        define("BINANCE_VERSION_PATCH")
    );
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(define("BINANCE_VERSION_STRING"), format!("\"{version}\""));
}
