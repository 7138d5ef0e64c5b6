//! The shipped policies' header promises that a commented-out `key = value`
//! line shows that key's default unless its comment says `example`. This
//! test holds them to it: every such line, uncommented in its section,
//! leaves the validated policy exactly as it was.

use toml::{Table, Value};

use super::Config;

/// `(section, key = value)` of every commented-out line that claims to be
/// a default. Sections given only as examples (a commented `[[…]]`, or a
/// commented table with an `example` line) are left out whole.
fn claimed_defaults(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut section = String::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut commented_section = false;
    let mut example_section = false;
    let mut flush = |pending: &mut Vec<(String, String)>, example: bool| {
        if !example {
            found.append(pending);
        }
        pending.clear();
    };
    for line in text.lines() {
        let header = line
            .strip_prefix("# ")
            .map(|rest| (true, rest))
            .unwrap_or((false, line));
        if header.1.starts_with('[') && header.1.trim_end().ends_with(']') {
            flush(&mut pending, example_section);
            section = header.1.trim_matches(|c| c == '[' || c == ']').to_owned();
            commented_section = header.0;
            example_section = header.1.starts_with("[[");
            continue;
        }
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        let (value, comment) = value.split_once("  #").unwrap_or((value, ""));
        if comment.contains("example") {
            example_section |= commented_section;
            continue;
        }
        pending.push((section.clone(), format!("{key} = {}", value.trim())));
    }
    flush(&mut pending, example_section);
    found
}

fn with_defaults_uncommented(text: &str) -> String {
    let mut table: Table = text.parse().unwrap();
    for (section, line) in claimed_defaults(text) {
        let entry: Table = line
            .parse()
            .unwrap_or_else(|e| panic!("`{line}` in [{section}] is not TOML: {e}"));
        let target = table
            .entry(section.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(target) = target else {
            panic!("[{section}] is not a table");
        };
        for (key, value) in entry {
            assert!(
                !target.contains_key(&key),
                "[{section}] {key} is both set and shown as a commented default"
            );
            target.insert(key, value);
        }
    }
    toml::to_string(&table).unwrap()
}

#[test]
fn every_commented_value_in_the_shipped_policies_is_the_default() {
    for (name, text) in [
        (
            "gateway.example.toml",
            include_str!("../../../config/gateway.example.toml"),
        ),
        (
            "gateway.legacy.toml",
            include_str!("../../../config/gateway.legacy.toml"),
        ),
    ] {
        let claimed = claimed_defaults(text);
        assert!(!claimed.is_empty() || name.contains("legacy"), "{name}");
        let mut as_shipped = Config::from_toml(text).unwrap();
        let mut uncommented = Config::from_toml(&with_defaults_uncommented(text))
            .unwrap_or_else(|e| panic!("{name} with its defaults uncommented: {e}"));
        // The hash of the policy text differs with the text, by design.
        as_shipped.sha256.clear();
        uncommented.sha256.clear();
        assert_eq!(
            format!("{:?}", as_shipped),
            format!("{:?}", uncommented),
            "{name}: a commented-out value is not the default: {claimed:#?}"
        );
    }
}

#[test]
fn the_check_sees_a_commented_value_that_is_not_the_default() {
    let text = "[limits]\n# idle_timeout = \"61s\"\n";
    assert_eq!(
        claimed_defaults(text),
        [("limits".to_owned(), "idle_timeout = \"61s\"".to_owned())]
    );
    let example =
        "# [plain_http]\n# listen = \"0.0.0.0:8080\"      # example\n# https_port = 8443\n";
    assert!(claimed_defaults(example).is_empty());
}
