//! The README's code is what users copy first: every C block compiles with
//! the strict flags, the complete programs run against the local exchange,
//! and the CMake example is the project the packaging test builds.

mod common;

use common::native::{self, manifest_dir, Build, Mode, C_FLAGS};
use common::Exchange;
use std::path::Path;

const API_KEY: &str = "TESTKEYreadme0123456789";

/// The fenced blocks of the README with this info string, in order.
fn blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).expect("README.md");
    readme
        .split(&format!("\n```{lang}\n"))
        .skip(1)
        .map(|rest| rest.split("\n```").next().unwrap_or("").to_owned() + "\n")
        .collect()
}

#[test]
fn c_blocks_compile_and_programs_run() {
    let mode = Mode::from_env();
    let c_blocks = blocks("c");
    assert!(c_blocks.len() >= 2, "the README's C examples are gone");
    let ex = Exchange::start_plain(&[]);
    let dir = native::work_dir("readme", mode);
    let mut programs = 0;
    for (i, code) in c_blocks.iter().enumerate() {
        let source = dir.join(format!("block{i}.c"));
        std::fs::write(&source, code).unwrap();
        let is_program = code.contains("int main(");
        let out = Build {
            suite: "readme",
            compiler: "cc",
            flags: C_FLAGS,
            includes: &[],
            link: is_program,
        }
        .compile(
            &source,
            &format!("block{i}{}", if is_program { "" } else { ".o" }),
            mode,
        );
        if !is_program {
            continue;
        }
        programs += 1;
        let env = native::exchange_env(&ex, API_KEY);
        let ok = native::run(&out, &env, mode);
        ok.assert_exit(0, API_KEY);
        assert!(ok.stdout.starts_with("listenKey "), "{}", ok.output());
        // Without a key it says what is wrong and fails.
        let env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| *k != "BINANCE_API_KEY")
            .collect();
        let failed = native::run(&out, &env, mode);
        assert_eq!(failed.status.code(), Some(1), "{}", failed.output());
        assert!(
            failed.stderr.contains("BINANCE_INVALID_ARGUMENT: api_key"),
            "{}",
            failed.output()
        );
    }
    assert!(programs >= 1, "no complete C program in the README");
}

#[test]
fn cmake_block_is_the_tested_project() {
    let tested =
        std::fs::read_to_string(manifest_dir().join("tests/cmake/CMakeLists.txt")).unwrap();
    let code = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    let shown = blocks("cmake");
    assert_eq!(shown.len(), 1, "one CMake example in the README");
    assert_eq!(
        code(&shown[0]),
        code(&tested),
        "README's CMake example differs from tests/cmake/CMakeLists.txt"
    );
}

#[test]
fn shell_commands_name_what_exists() {
    // Every script and example path the README's commands mention exists.
    for block in blocks("sh") {
        for word in block.split_whitespace() {
            let word = word.trim_matches(|c| c == '"' || c == '\'' || c == '(' || c == ')');
            if (word.starts_with("scripts/") || word.starts_with("examples/"))
                && !word.contains('$')
            {
                assert!(
                    Path::new(&manifest_dir().join(word)).exists(),
                    "the README names {word}, which does not exist"
                );
            }
        }
    }
}
