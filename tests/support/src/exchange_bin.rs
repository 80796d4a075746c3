//! Where the `local-exchange` binary is, built on first use. It is a
//! workspace member, not a target of the library package, so
//! `CARGO_BIN_EXE_*` does not name it; tests and benches build it into the
//! same target directory as themselves.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>/local-exchange`, built (once per process) with the
/// profile of the running test or bench. Set BINANCE_UDS_EXCHANGE to use
/// another binary.
pub fn exchange_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BINANCE_UDS_EXCHANGE") {
            return PathBuf::from(p);
        }
        // The running executable is target/<profile>/deps/<name>-<hash>.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "local-exchange"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().expect("target directory"),
            );
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p local-exchange");
        assert!(status.success(), "cargo build -p local-exchange failed");
        profile_dir.join(format!("local-exchange{}", std::env::consts::EXE_SUFFIX))
    })
    .clone()
}
