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

/// The one-number version (`BINANCE_VERSION_NUM`, 0xMMmmpp) is the
/// library's own version, as `binance_version()` reports it. (A C test,
/// tests/c/api_args.c, evaluates `BINANCE_AT_LEAST_VERSION`.)
#[test]
fn version_number_matches_binance_version() {
    let header = std::fs::read_to_string(env!("BINANCE_UDS_GENERATED_HEADER")).unwrap();
    let num = header
        .lines()
        .find_map(|l| l.strip_prefix("#define BINANCE_VERSION_NUM "))
        .expect("BINANCE_VERSION_NUM defined");
    let num = u32::from_str_radix(num.trim().trim_start_matches("0x"), 16).unwrap();
    // SAFETY: binance_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(binance_uds::status::binance_version()) };
    let parts: Vec<u32> = version
        .to_str()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(parts.len(), 3, "{version:?}");
    assert_eq!(
        num,
        parts[0] << 16 | parts[1] << 8 | parts[2],
        "BINANCE_VERSION_NUM {num:#08x} against binance_version() {version:?}"
    );
    assert!(
        header.contains("#define BINANCE_AT_LEAST_VERSION(x, y, z) "),
        "BINANCE_AT_LEAST_VERSION defined"
    );
}

/// The header is its own manual: every exported function is listed in
/// exactly one type's "Functions:" paragraph (the comment right above a
/// `typedef`), and every name listed there is an exported function.
#[test]
fn every_function_is_listed_under_exactly_one_type() {
    let header = std::fs::read_to_string(env!("BINANCE_UDS_GENERATED_HEADER")).unwrap();
    let problems = function_list_problems(&header);
    assert!(
        problems.is_empty(),
        "the header's \"Functions:\" lists (edit the type's doc comment in src/):\n{}",
        problems.join("\n")
    );
}

/// What is wrong with the "Functions:" lists of `header`: a function listed
/// under no type or under two, a listed name that is no function, a list
/// that is not on a typedef.
fn function_list_problems(header: &str) -> Vec<String> {
    // A prototype is one line (cbindgen.toml: args = "horizontal"); its name
    // is the first `binance_` word right before a parenthesis.
    let exports: Vec<&str> = header
        .lines()
        .filter(|l| {
            l.ends_with(");") && !l.starts_with([' ', '#', '/']) && !l.starts_with("typedef")
        })
        .filter_map(|l| {
            l.split('(')
                .filter_map(|before| before.rsplit([' ', '*']).next())
                .find(|name| name.starts_with("binance_"))
        })
        .collect();
    let types: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("typedef "))
        .filter_map(|l| l.trim_end_matches(';').rsplit(' ').next())
        .collect();
    let mut listed: Vec<(String, String)> = Vec::new(); // (function, type)
    let mut problems = Vec::new();
    let lines: Vec<&str> = header.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let is_list = lines[i].starts_with(" * Functions");
        if !is_list {
            i += 1;
            continue;
        }
        // The paragraph runs to the end of its comment.
        let mut names = Vec::new();
        while i < lines.len() && !lines[i].trim_end().ends_with("*/") {
            let words = lines[i].split('`').skip(1).step_by(2);
            names.extend(words.filter(|w| w.starts_with("binance_")));
            i += 1;
        }
        let owner = lines
            .get(i + 1)
            .and_then(|l| l.strip_prefix("typedef "))
            .and_then(|l| l.trim_end_matches(';').rsplit(' ').next())
            .map(str::to_owned);
        let Some(owner) = owner else {
            problems.push(format!(
                "a \"Functions:\" list not on a typedef, above line {}",
                i + 2
            ));
            continue;
        };
        for name in names {
            if exports.contains(&name) {
                listed.push((name.to_owned(), owner.clone()));
            } else if !types.contains(&name) {
                problems.push(format!("{owner} lists {name}, which is not a function"));
            }
        }
    }
    for f in &exports {
        let owners: Vec<&str> = listed
            .iter()
            .filter(|(name, _)| name == f)
            .map(|(_, owner)| owner.as_str())
            .collect();
        match owners.len() {
            1 => {}
            0 => problems.push(format!("{f} is listed under no type")),
            _ => problems.push(format!("{f} is listed under {owners:?}")),
        }
    }
    problems
}

#[test]
fn the_function_list_check_sees_a_missing_or_doubled_name() {
    let header = "/**\n * A.\n *\n * Functions: `binance_a_new`, `binance_a_free`.\n */\ntypedef struct binance_a binance_a;\n\n\
                  /**\n * B.\n *\n * Functions: `binance_a_new`, `binance_b_gone`.\n */\ntypedef struct binance_b binance_b;\n\n\
                  binance_a *binance_a_new(void);\nvoid binance_a_free(binance_a *a);\nvoid binance_b_free(binance_b *b);\n";
    assert_eq!(
        function_list_problems(header),
        [
            "binance_b lists binance_b_gone, which is not a function",
            "binance_a_new is listed under [\"binance_a\", \"binance_b\"]",
            "binance_b_free is listed under no type",
        ]
    );
}
