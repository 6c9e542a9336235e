//! End-to-end: `cc-engine check-config FILE` on the shipped file and on
//! broken copies of it. A broken file must fail (non-zero) with a message
//! naming the file and the offending key.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn check(path: &std::path::Path) -> Output {
    let mut cmd = Command::new(engine_bin());
    cmd.arg("check-config").arg(path);
    run_with_timeout(cmd, Duration::from_secs(10))
}

fn shipped() -> String {
    std::fs::read_to_string(shipped_config()).expect("config/cc-engine.toml must exist")
}

/// Replaces the value of `key` inside `[section]` (or at top level when
/// section is ""), panicking if the key is not there.
fn set_key(toml: &str, section: &str, key: &str, value: &str) -> String {
    let mut cur = String::new();
    let mut done = false;
    let out: Vec<String> = toml
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('[') && !t.starts_with("[[") {
                cur = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            }
            if !done && cur == section {
                if let Some((k, _)) = t.split_once('=') {
                    if k.trim() == key {
                        done = true;
                        return format!("{key} = {value}");
                    }
                }
            }
            l.to_string()
        })
        .collect();
    assert!(
        done,
        "shipped config has no key `{key}` in [{section}]; adapt the test"
    );
    out.join("\n") + "\n"
}

/// Adds `line` as the first line of `[section]`.
fn add_in_section(toml: &str, section: &str, line: &str) -> String {
    let hdr = format!("[{section}]");
    let mut out = String::new();
    let mut done = false;
    for l in toml.lines() {
        out.push_str(l);
        out.push('\n');
        if !done && l.trim() == hdr {
            out.push_str(line);
            out.push('\n');
            done = true;
        }
    }
    assert!(done, "shipped config has no [{section}]");
    out
}

/// Finds the section that holds `key` (first match).
fn section_of(toml: &str, key: &str) -> Option<String> {
    let mut cur = String::new();
    for l in toml.lines() {
        let t = l.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            cur = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if let Some((k, _)) = t.split_once('=') {
            if k.trim() == key && !t.starts_with('#') {
                return Some(cur);
            }
        }
    }
    None
}

fn expect_rejected(name: &str, text: &str, key: &str) {
    let dir = TempDir::new("cfg");
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = check(&path);
    assert!(!out.timed_out(), "{name}: check-config hung");
    assert!(
        out.code().is_some() && out.code() != Some(0),
        "{name}: must fail\n{}",
        out.describe()
    );
    let msg = format!("{}{}", out.stdout, out.stderr);
    assert!(
        msg.contains(&format!("{name}.toml")),
        "{name}: message must name the file {}\n{}",
        path.display(),
        out.describe()
    );
    assert!(
        msg.contains(key),
        "{name}: message must name the key `{key}`\n{}",
        out.describe()
    );
}

#[test]
fn shipped_config_passes() {
    let out = check(&shipped_config());
    assert_eq!(
        out.code(),
        Some(0),
        "check-config on the shipped file\n{}",
        out.describe()
    );
}

#[test]
fn unknown_key_is_rejected_naming_file_and_key() {
    let t = shipped();
    let sec = section_of(&t, "listen").unwrap_or_default();
    let bad = if sec.is_empty() {
        format!("frobnicate_level = 3\n{t}")
    } else {
        add_in_section(&t, &sec, "frobnicate_level = 3")
    };
    expect_rejected("unknown_key", &bad, "frobnicate_level");
}

#[test]
fn wrong_type_is_rejected_naming_file_and_key() {
    let t = shipped();
    let sec = section_of(&t, "shards").expect("shipped config has a `shards` key");
    expect_rejected(
        "wrong_type",
        &set_key(&t, &sec, "shards", "\"two\""),
        "shards",
    );
}

#[test]
fn zero_shards_is_rejected_naming_file_and_key() {
    let t = shipped();
    let sec = section_of(&t, "shards").expect("shipped config has a `shards` key");
    expect_rejected("zero_shards", &set_key(&t, &sec, "shards", "0"), "shards");
}

#[test]
fn listen_port_70000_is_rejected_naming_file_and_key() {
    let t = shipped();
    let sec = section_of(&t, "listen").expect("shipped config has a `listen` key");
    expect_rejected(
        "port_70000",
        &set_key(&t, &sec, "listen", "\"127.0.0.1:70000\""),
        "listen",
    );
}

#[test]
fn registrar_min_above_max_is_rejected() {
    let t = shipped();
    let sec = section_of(&t, "min_expires").expect("shipped config has `min_expires`");
    expect_rejected(
        "min_above_max",
        &set_key(&t, &sec, "min_expires", "7200"),
        "expires",
    );
}

#[test]
fn missing_file_fails_naming_it() {
    let dir = TempDir::new("cfg");
    let path = dir.path().join("no-such-file.toml");
    let out = check(&path);
    assert!(
        out.code().is_some() && out.code() != Some(0),
        "{}",
        out.describe()
    );
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("no-such-file.toml"),
        "{}",
        out.describe()
    );
}
