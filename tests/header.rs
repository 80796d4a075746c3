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

/// Every prototype, typedef and `#define` of the header has a comment right
/// above it (cbindgen emits undocumented items silently). A run of
/// `#define`s, or a preprocessor block, under one comment counts as one
/// documented group (the version parts, the endpoints, the deprecation
/// macro).
#[test]
fn every_item_in_the_header_is_documented() {
    let header = std::fs::read_to_string(env!("BINANCE_UDS_GENERATED_HEADER")).unwrap();
    let undocumented = undocumented_items(&header);
    assert!(
        undocumented.is_empty(),
        "items of the generated header without a comment above them (add a doc comment in src/):\n{}",
        undocumented.join("\n")
    );
}

fn undocumented_items(header: &str) -> Vec<String> {
    let is_item = |l: &str| {
        (l.starts_with("#define ") && !l.starts_with("#define BINANCE_UDS_H"))
            || l.starts_with("# define ")
            || l.starts_with("typedef ")
            // A prototype: a declaration at the top level ending the line.
            || (l.ends_with(");") && l.contains("binance_") && !l.starts_with(' '))
    };
    let continues_group = |l: &str| l.starts_with('#') && !l.starts_with("#endif // __cplusplus");
    let mut documented = false;
    let mut found = Vec::new();
    for line in header.lines() {
        let l = line.trim_end();
        if l.ends_with("*/") || l.starts_with("//") {
            documented = true;
        } else if is_item(l) {
            if !documented {
                found.push(l.to_owned());
            }
            // The next line is covered only if it is part of the same group.
        } else if !(documented && continues_group(l)) {
            documented = false;
        }
        if is_item(l) && !l.starts_with('#') {
            documented = false;
        }
    }
    found
}

#[test]
fn the_documentation_check_sees_a_missing_comment() {
    let ok = "/** Doc. */\nvoid binance_a(void);\n\n/** Group. */\n#define BINANCE_A 1\n#define BINANCE_B 2\n";
    assert!(undocumented_items(ok).is_empty());
    let bad = "/** Doc. */\nvoid binance_a(void);\nvoid binance_b(void);\n\n#define BINANCE_C 3\ntypedef int32_t binance_x;\n";
    assert_eq!(
        undocumented_items(bad),
        [
            "void binance_b(void);",
            "#define BINANCE_C 3",
            "typedef int32_t binance_x;"
        ]
    );
}

/// CHANGELOG.md records every function, type and constant of the header
/// under the release that added it.
#[test]
fn every_name_in_the_header_is_in_the_changelog() {
    let header = std::fs::read_to_string(env!("BINANCE_UDS_GENERATED_HEADER")).unwrap();
    let changelog =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/CHANGELOG.md")).unwrap();
    let missing = missing_from_changelog(&header, &changelog);
    assert!(
        missing.is_empty(),
        "CHANGELOG.md does not list (add them under the release that adds them): {missing:?}"
    );
}

/// The `binance_*`/`BINANCE_*` names declared in `header` (outside comments)
/// that `changelog` does not name in backquotes.
fn missing_from_changelog(header: &str, changelog: &str) -> Vec<String> {
    let listed: std::collections::HashSet<&str> = changelog.split('`').skip(1).step_by(2).collect();
    let mut missing: Vec<String> = Vec::new();
    for line in header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("/*"))
    {
        let words = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for name in words.filter(|w| w.starts_with("binance_") || w.starts_with("BINANCE_")) {
            if name != "BINANCE_UDS_H"
                && !listed.contains(name)
                && !missing.iter().any(|m| m == name)
            {
                missing.push(name.to_owned());
            }
        }
    }
    missing
}

#[test]
fn the_changelog_check_sees_a_missing_name() {
    let header = "/** Doc. */\nvoid binance_a(binance_t *t);\n#define BINANCE_B 1\n";
    assert!(missing_from_changelog(header, "`binance_a` `binance_t` `BINANCE_B`").is_empty());
    assert_eq!(
        missing_from_changelog(header, "`binance_a`"),
        ["binance_t", "BINANCE_B"]
    );
}
