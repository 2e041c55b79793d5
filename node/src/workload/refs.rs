//! References inside configs: `${guardian:<target>}`.
//!
//! A namespace's configs are opaque bytes (TOML, YAML, JSON, ... possibly not
//! UTF-8) that may name other things the server hands out beside them on
//! delivery. The content itself is never rewritten; this module only finds the
//! references and works out what a delivery must resolve.
//!
//! Syntax, scanned over bytes in one left-to-right pass:
//! - `${guardian:<target>}` is a reference. The `}` must come before the end of
//!   the line; an unclosed reference or a malformed target is an error that
//!   names the byte offset of its `$`.
//! - `$${` is an escape for a literal `${`: any `${` whose `$` directly follows
//!   another `$` is not a reference (so `$$${guardian:a/b}` holds none).
//! - Any other `${...}` (`${HOME}`, `${env:X}`) is left alone; scanning goes on
//!   right after its `${`.
//!
//! Targets:
//! - `config/<name>`: another config of the same namespace, delivered too; its
//!   own references are followed (see [`plan`]).
//! - `sealed/<name>`: a secret an admin pre-encrypted to the workload's key.
//! - `<type>/<name>`: a namespace key by path (`pvc/db-data`), with `<type>`
//!   1–32 characters of `a-z 0-9 -`.
//!
//! Names are 1–128 bytes of `A-Z a-z 0-9 . _ - /` with no empty, `.` or `..`
//! path segment.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;

use crate::keys::hierarchy::WORKLOAD_SEALED_TYPE;

/// Most configs one [`plan`] fetches (the root, which is handed in, is not counted).
pub const MAX_CONFIGS: usize = 64;
/// Most distinct targets one [`plan`] may reach, configs included.
pub const MAX_REFERENCES: usize = 256;
/// Longest name of a key, config or sealed secret, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest key type, in bytes.
pub const MAX_TYPE_LEN: usize = 32;

const OPEN: &[u8] = b"${";
const PREFIX: &[u8] = b"guardian:";
/// How much of a bad target an error quotes.
const EXCERPT_LEN: usize = 64;

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// `config/<name>`: another config of the same namespace.
    Config(String),
    /// `sealed/<name>`: a pre-encrypted secret, passed through as is.
    Sealed(String),
    /// `<type>/<name>`: a namespace key.
    Key { key_type: String, name: String },
}

impl Target {
    /// Parses the text between `${guardian:` and `}`, e.g. `config/app` or `pvc/db-data`.
    pub fn parse(s: &str) -> Result<Target, RefError> {
        let bad = |problem: String| RefError::BadTarget { target: excerpt(s), problem };
        if s.is_empty() {
            return Err(bad("empty target".into()));
        }
        let Some((key_type, name)) = s.split_once('/') else {
            return Err(bad("expected `<type>/<name>`".into()));
        };
        check_type(key_type).map_err(bad)?;
        check_name(name).map_err(bad)?;
        Ok(match key_type {
            "config" => Target::Config(name.to_owned()),
            WORKLOAD_SEALED_TYPE => Target::Sealed(name.to_owned()),
            _ => Target::Key { key_type: key_type.to_owned(), name: name.to_owned() },
        })
    }

    /// The reference as it is written between `${` and `}`, e.g. `guardian:config/app`.
    pub fn as_reference(&self) -> String {
        match self {
            Target::Config(name) => format!("guardian:config/{name}"),
            Target::Sealed(name) => format!("guardian:{WORKLOAD_SEALED_TYPE}/{name}"),
            Target::Key { key_type, name } => format!("guardian:{key_type}/{name}"),
        }
    }
}

/// Shows the full reference, `${guardian:...}`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.as_reference())
    }
}

/// Why content or a target could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// Bad reference syntax in content; `offset` is the byte offset of the `$`.
    #[error("byte {offset}: {problem}")]
    Syntax { offset: usize, problem: String },
    /// A target that [`Target::parse`] refused (`target` is cut to a short excerpt).
    #[error("bad reference target {target:?}: {problem}")]
    BadTarget { target: String, problem: String },
    /// A referenced config could not be fetched.
    #[error("config {config:?}: {error}")]
    Fetch { config: String, error: String },
    /// A config fetched during [`plan`] has bad references itself.
    #[error("in config {config:?}: {source}")]
    InConfig {
        config: String,
        #[source]
        source: Box<RefError>,
    },
    /// A [`plan`] limit was hit (`what` is "configs" or "references").
    #[error("too many {what} (limit {limit})")]
    TooMany { what: &'static str, limit: usize },
}

/// Every distinct reference in `content`, in order of first appearance.
pub fn references(content: &[u8]) -> Result<Vec<Target>, RefError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    scan(content, |target| {
        if seen.insert(target.clone()) {
            out.push(target);
        }
    })?;
    Ok(out)
}

/// What delivering a config takes: see [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every distinct target reachable from the root, configs included: the
    /// root's in order of first appearance, then those first seen in each
    /// fetched config, configs taken breadth-first in the order they were found.
    pub targets: Vec<Target>,
    /// The content of every config fetched, by name.
    pub configs: BTreeMap<String, Vec<u8>>,
}

/// Works out what delivering `root` (a config's content) must resolve.
///
/// Config references are followed breadth-first, fetching each config once
/// through `fetch(name)`, so cycles are fine. At most [`MAX_CONFIGS`] configs are
/// fetched and at most [`MAX_REFERENCES`] distinct targets reached, else
/// [`RefError::TooMany`]; the limit is checked before fetching beyond it. If the
/// root config references itself by name it is fetched like any other.
pub fn plan<E: fmt::Display>(root: &[u8], mut fetch: impl FnMut(&str) -> Result<Vec<u8>, E>) -> Result<Plan, RefError> {
    let mut walk = Walk::default();
    for target in references(root)? {
        walk.add(target)?;
    }
    let mut configs = BTreeMap::new();
    while let Some(name) = walk.queue.pop_front() {
        let content = fetch(&name).map_err(|e| RefError::Fetch { config: name.clone(), error: e.to_string() })?;
        let found =
            references(&content).map_err(|e| RefError::InConfig { config: name.clone(), source: Box::new(e) })?;
        for target in found {
            walk.add(target)?;
        }
        configs.insert(name, content);
    }
    Ok(Plan { targets: walk.targets, configs })
}

#[derive(Default)]
struct Walk {
    targets: Vec<Target>,
    seen: HashSet<Target>,
    queue: VecDeque<String>,
    config_count: usize,
}

impl Walk {
    fn add(&mut self, target: Target) -> Result<(), RefError> {
        if self.seen.contains(&target) {
            return Ok(());
        }
        if self.targets.len() >= MAX_REFERENCES {
            return Err(RefError::TooMany { what: "references", limit: MAX_REFERENCES });
        }
        if let Target::Config(name) = &target {
            if self.config_count >= MAX_CONFIGS {
                return Err(RefError::TooMany { what: "configs", limit: MAX_CONFIGS });
            }
            self.config_count += 1;
            self.queue.push_back(name.clone());
        }
        self.seen.insert(target.clone());
        self.targets.push(target);
        Ok(())
    }
}

/// Calls `found` for each reference in `content`, in order. One pass: every
/// byte is looked at a bounded number of times.
fn scan(content: &[u8], mut found: impl FnMut(Target)) -> Result<(), RefError> {
    let mut i = 0;
    while let Some(pos) = content.get(i..).and_then(|rest| rest.iter().position(|&b| b == b'$')) {
        let at = i + pos;
        let after = &content[at + 1..];
        if after.starts_with(OPEN) {
            // `$${`: a literal `${`.
            i = at + 1 + OPEN.len();
            continue;
        }
        if !content[at..].starts_with(OPEN) {
            i = at + 1;
            continue;
        }
        let body_start = at + OPEN.len();
        if !content[body_start..].starts_with(PREFIX) {
            // `${...}` of someone else's: leave it alone.
            i = body_start;
            continue;
        }
        let start = body_start + PREFIX.len();
        let body = &content[start..];
        let end = body.iter().position(|&b| b == b'}' || b == b'\n');
        let Some(len) = end.filter(|&n| body.get(n) == Some(&b'}')) else {
            let place = if end.is_some() { "the end of the line" } else { "the end of the content" };
            return Err(RefError::Syntax {
                offset: at,
                problem: format!("`${{guardian:` is not closed by `}}` before {place}"),
            });
        };
        let text = String::from_utf8_lossy(&body[..len]);
        let target = Target::parse(&text).map_err(|e| match e {
            RefError::BadTarget { target, problem } => {
                RefError::Syntax { offset: at, problem: format!("bad reference target {target:?}: {problem}") }
            }
            other => other,
        })?;
        found(target);
        i = start + len + 1;
    }
    Ok(())
}

fn check_type(key_type: &str) -> Result<(), String> {
    let ok_len = (1..=MAX_TYPE_LEN).contains(&key_type.len());
    if ok_len && key_type.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Ok(())
    } else {
        Err(format!("type must be 1–{MAX_TYPE_LEN} characters of `a-z 0-9 -`"))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("name is longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))) {
        return Err(format!("name has character {c:?}; allowed are `A-Z a-z 0-9 . _ - /`"));
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err("name has an empty path segment".into()),
            "." | ".." => return Err(format!("name has a `{segment}` path segment")),
            _ => {}
        }
    }
    Ok(())
}

/// At most [`EXCERPT_LEN`] bytes of `s`, cut at a character boundary.
fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT_LEN {
        return s.to_owned();
    }
    let mut end = EXCERPT_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    fn key(key_type: &str, name: &str) -> Target {
        Target::Key { key_type: key_type.into(), name: name.into() }
    }

    fn config(name: &str) -> Target {
        Target::Config(name.into())
    }

    /// The offset and problem of a syntax error, or a panic naming what came back instead.
    fn syntax_err(content: &[u8]) -> (usize, String) {
        match references(content) {
            Err(RefError::Syntax { offset, problem }) => (offset, problem),
            other => panic!("expected a syntax error for {:?}, got {other:?}", String::from_utf8_lossy(content)),
        }
    }

    /// A fetch over a fixed set of configs that counts calls per name.
    struct Store {
        configs: HashMap<String, Vec<u8>>,
        calls: RefCell<HashMap<String, usize>>,
    }

    impl Store {
        fn new(configs: &[(&str, &str)]) -> Store {
            Store {
                configs: configs.iter().map(|(n, c)| (n.to_string(), c.as_bytes().to_vec())).collect(),
                calls: RefCell::default(),
            }
        }

        fn fetch(&self, name: &str) -> Result<Vec<u8>, String> {
            *self.calls.borrow_mut().entry(name.to_owned()).or_default() += 1;
            self.configs.get(name).cloned().ok_or_else(|| "no such config".to_owned())
        }
    }

    #[test]
    fn plain_text_has_no_references() {
        for content in [
            &b""[..],
            b"[server]\nport = 8080\nprice = \"$5\" # {braces} $ {x}\n",
            b"trailing dollar $",
            b"\xff\xfe\x00 binary $\xff{ ${\xff",
        ] {
            assert_eq!(references(content).unwrap(), vec![]);
        }
    }

    #[test]
    fn several_references_deduplicated_in_order() {
        let content = b"db:\n  password: ${guardian:secret/db-pass}\n  data: ${guardian:pvc/db-data}\n\
              tls: ${guardian:sealed/tls/key.pem}\n  more: ${guardian:config/shared/common.toml}\n\
              again: ${guardian:secret/db-pass}${guardian:pvc/db-data}\n";
        assert_eq!(
            references(content).unwrap(),
            vec![
                key("secret", "db-pass"),
                key("pvc", "db-data"),
                Target::Sealed("tls/key.pem".into()),
                config("shared/common.toml"),
            ]
        );
    }

    #[test]
    fn references_in_non_utf8_content() {
        let content = b"\xff\xc3${guardian:pvc/a}\x80\xfe${guardian:k8s-2/B_c.d}\xff";
        assert_eq!(references(content).unwrap(), vec![key("pvc", "a"), key("k8s-2", "B_c.d")]);
    }

    #[test]
    fn escape_is_a_literal() {
        assert_eq!(references(b"literal: $${guardian:pvc/a}").unwrap(), vec![]);
        // The escape doesn't stop a real reference after it.
        assert_eq!(references(b"$${guardian:pvc/a} ${guardian:pvc/b}").unwrap(), vec![key("pvc", "b")]);
        // `$${` even when what follows would be malformed or unclosed.
        assert_eq!(references(b"$${guardian:config/..} $${guardian:oops").unwrap(), vec![]);
        // A `${` whose `$` follows another `$` is always the escape.
        assert_eq!(references(b"$$${guardian:pvc/a}").unwrap(), vec![]);
        // `$$` before something else is just text.
        assert_eq!(references(b"$$ ${guardian:pvc/a}").unwrap(), vec![key("pvc", "a")]);
    }

    #[test]
    fn unclosed_reference() {
        let (offset, problem) = syntax_err(b"ok: ${guardian:pvc/a}\nbad: ${guardian:pvc/b");
        assert_eq!(offset, 27);
        assert!(problem.contains("not closed") && problem.contains("end of the content"), "{problem}");

        let (offset, problem) = syntax_err(b"x ${guardian:pvc/b\n}");
        assert_eq!(offset, 2);
        assert!(problem.contains("end of the line"), "{problem}");

        assert_eq!(syntax_err(b"${guardian:").0, 0);
    }

    #[test]
    fn malformed_targets() {
        let long_type = format!("${{guardian:{}/a}}", "a".repeat(MAX_TYPE_LEN + 1));
        let long_name = format!("${{guardian:pvc/{}}}", "a".repeat(MAX_NAME_LEN + 1));
        let cases: &[(&[u8], &str)] = &[
            (b"${guardian:}", "empty target"),
            (b"${guardian:config/}", "empty name"),
            (b"${guardian:pvc/}", "empty name"),
            (b"${guardian:secret}", "expected `<type>/<name>`"),
            (b"${guardian:/name}", "type must be"),
            (b"${guardian:config/../other}", "`..` path segment"),
            (b"${guardian:pvc/a/..}", "`..` path segment"),
            (b"${guardian:pvc/./a}", "`.` path segment"),
            (b"${guardian:pvc/a//b}", "empty path segment"),
            (b"${guardian:pvc//a}", "empty path segment"),
            (b"${guardian:pvc/a/}", "empty path segment"),
            (b"${guardian:PVC/a}", "type must be"),
            (b"${guardian:p_v/a}", "type must be"),
            (b"${guardian:p.v/a}", "type must be"),
            (long_type.as_bytes(), "type must be"),
            (long_name.as_bytes(), "longer than 128"),
            (b"${guardian:pvc/a b}", "character ' '"),
            (b"${guardian:pvc/a:b}", "character ':'"),
            (b"${guardian:pvc/a\xffb}", "character '\u{fffd}'"),
            (b"${guardian: pvc/a}", "type must be"),
        ];
        for (content, expected) in cases {
            let (offset, problem) = syntax_err(content);
            assert_eq!(offset, 0);
            assert!(problem.contains(expected), "{:?}: {problem}", String::from_utf8_lossy(content));
        }
        // The offset is that of the bad reference's `$`, past good ones and multi-byte text.
        assert_eq!(syntax_err("é ${guardian:pvc/a} ${guardian:pvc/..}".as_bytes()).0, 21);
    }

    #[test]
    fn long_bad_target_is_quoted_short() {
        let content = format!("${{guardian:pvc/{}}}", "é".repeat(5000));
        let (_, problem) = syntax_err(content.as_bytes());
        assert!(problem.len() < 300, "{problem}");
        assert!(problem.contains('…'));
    }

    #[test]
    fn non_guardian_expressions_untouched() {
        let content = b"home: ${HOME}\nx: ${x}\nenv: ${env:PATH}\n${guardian}\n${Guardian:pvc/a}\n${ guardian:pvc/a}\n\
              unclosed: ${other:foo\n";
        assert_eq!(references(content).unwrap(), vec![]);
        // Scanning goes on inside someone else's expression.
        assert_eq!(references(b"${env:${guardian:pvc/a}}").unwrap(), vec![key("pvc", "a")]);
    }

    #[test]
    fn no_panic_on_any_prefix() {
        let content = "a$ $${ ${x} ${guardian:pvc/é} ${guardian:config/c} $$${guardian:x".as_bytes();
        for end in 0..=content.len() {
            let _ = references(&content[..end]);
            for start in 0..end {
                let _ = references(&content[start..end]);
            }
        }
    }

    #[test]
    fn large_content_scans() {
        let mut content = b"${guardian:pvc/a} $${ ${x} ".repeat(100_000);
        content.extend_from_slice(b"${guardian:pvc/b}");
        assert_eq!(references(&content).unwrap(), vec![key("pvc", "a"), key("pvc", "b")]);
        assert_eq!(references(&b"${".repeat(500_000)).unwrap(), vec![]);
        assert_eq!(references(&b"$".repeat(1_000_000)).unwrap(), vec![]);
    }

    #[test]
    fn target_parse_and_reference() {
        assert_eq!(Target::parse("config/app.toml").unwrap(), config("app.toml"));
        assert_eq!(Target::parse("sealed/db").unwrap(), Target::Sealed("db".into()));
        assert_eq!(Target::parse("pvc/db-data").unwrap(), key("pvc", "db-data"));
        for t in [config("a/b.yaml"), Target::Sealed("s".into()), key("secret", "api-token"), key("x-1", "a/b/c")] {
            let reference = t.as_reference();
            let parsed = Target::parse(reference.strip_prefix("guardian:").unwrap()).unwrap();
            assert_eq!(parsed, t);
            assert_eq!(references(t.to_string().as_bytes()).unwrap(), vec![t.clone()]);
        }
        assert_eq!(key("pvc", "db-data").as_reference(), "guardian:pvc/db-data");
        assert_eq!(config("app").to_string(), "${guardian:config/app}");
        let name = "n".repeat(MAX_NAME_LEN);
        assert_eq!(
            Target::parse(&format!("{}/{name}", "t".repeat(MAX_TYPE_LEN))).unwrap(),
            key(&"t".repeat(32), &name)
        );
        match Target::parse("pvc/..") {
            Err(RefError::BadTarget { target, problem }) => {
                assert_eq!(target, "pvc/..");
                assert!(problem.contains("`..`"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plan_without_configs() {
        let store = Store::new(&[]);
        let plan = plan(b"a: ${guardian:pvc/a}\nb: ${guardian:sealed/b}", |n| store.fetch(n)).unwrap();
        assert_eq!(plan.targets, vec![key("pvc", "a"), Target::Sealed("b".into())]);
        assert!(plan.configs.is_empty());
        assert!(store.calls.borrow().is_empty());
    }

    #[test]
    fn plan_follows_configs_with_a_cycle_once() {
        let store = Store::new(&[
            ("a", "${guardian:pvc/x} ${guardian:config/b} ${guardian:config/c}"),
            ("b", "${guardian:config/a} ${guardian:secret/y} ${guardian:pvc/x} ${guardian:config/d}"),
            ("c", "${guardian:config/b} ${guardian:sealed/z}"),
            ("d", "${guardian:config/d} plain"),
        ]);
        let root = b"${guardian:config/a} ${guardian:pvc/root} ${guardian:config/a}";
        let plan = plan(root, |n| store.fetch(n)).unwrap();
        assert_eq!(
            plan.targets,
            vec![
                config("a"),
                key("pvc", "root"),
                key("pvc", "x"),
                config("b"),
                config("c"),
                key("secret", "y"),
                config("d"),
                Target::Sealed("z".into()),
            ]
        );
        assert_eq!(plan.configs.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(plan.configs["b"], store.configs["b"]);
        let calls = store.calls.borrow();
        assert_eq!(calls.len(), 4);
        assert!(calls.values().all(|&n| n == 1), "{calls:?}");
    }

    #[test]
    fn plan_is_deterministic() {
        let store = Store::new(&[("a", "${guardian:config/b}${guardian:pvc/1}"), ("b", "${guardian:pvc/2}")]);
        let root = b"${guardian:pvc/0}${guardian:config/a}";
        let first = plan(root, |n| store.fetch(n)).unwrap();
        assert_eq!(plan(root, |n| store.fetch(n)).unwrap(), first);
    }

    #[test]
    fn plan_missing_config_names_it() {
        let store = Store::new(&[("a", "${guardian:config/missing}")]);
        match plan(b"${guardian:config/a}", |n| store.fetch(n)) {
            Err(e @ RefError::Fetch { .. }) => {
                let RefError::Fetch { config, error } = &e else { unreachable!() };
                assert_eq!(config, "missing");
                assert_eq!(error, "no such config");
                assert_eq!(e.to_string(), "config \"missing\": no such config");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plan_bad_nested_config_names_it() {
        let store = Store::new(&[("a", "${guardian:config/b}"), ("b", "ok\n${guardian:pvc/")]);
        match plan(b"${guardian:config/a}", |n| store.fetch(n)) {
            Err(RefError::InConfig { config, source }) => {
                assert_eq!(config, "b");
                assert!(matches!(*source, RefError::Syntax { offset: 3, .. }), "{source:?}");
            }
            other => panic!("{other:?}"),
        }
        // A bad root is a plain syntax error.
        assert!(matches!(plan(b"${guardian:x}", |n| store.fetch(n)), Err(RefError::Syntax { offset: 0, .. })));
    }

    /// Root referencing `n` configs `c0..`, each referencing one key.
    fn fan_out(n: usize) -> (Vec<u8>, Store) {
        let root: String = (0..n).map(|i| format!("${{guardian:config/c{i}}}\n")).collect();
        let contents: Vec<(String, String)> =
            (0..n).map(|i| (format!("c{i}"), format!("${{guardian:pvc/k{i}}}"))).collect();
        let pairs: Vec<(&str, &str)> = contents.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        (root.into_bytes(), Store::new(&pairs))
    }

    #[test]
    fn plan_config_limit() {
        let (root, store) = fan_out(MAX_CONFIGS);
        let ok = plan(&root, |n| store.fetch(n)).unwrap();
        assert_eq!(ok.configs.len(), MAX_CONFIGS);
        assert_eq!(ok.targets.len(), 2 * MAX_CONFIGS);

        let (root, store) = fan_out(MAX_CONFIGS + 1);
        assert!(matches!(
            plan(&root, |n| store.fetch(n)),
            Err(RefError::TooMany { what: "configs", limit: MAX_CONFIGS })
        ));
        assert!(store.calls.borrow().is_empty(), "nothing fetched past the limit");

        // The same through a chain c0 -> c1 -> ... -> c64, found one at a time.
        let names: Vec<String> = (0..=MAX_CONFIGS).map(|i| format!("c{i}")).collect();
        let contents: Vec<String> = (0..=MAX_CONFIGS).map(|i| format!("${{guardian:config/c{}}}", i + 1)).collect();
        let pairs: Vec<(&str, &str)> = names.iter().zip(&contents).map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let store = Store::new(&pairs);
        let err = plan(b"${guardian:config/c0}", |n| store.fetch(n)).unwrap_err();
        assert!(matches!(err, RefError::TooMany { what: "configs", .. }), "{err:?}");
        assert_eq!(store.calls.borrow().len(), MAX_CONFIGS);
        assert_eq!(err.to_string(), "too many configs (limit 64)");
    }

    #[test]
    fn plan_reference_limit() {
        let keys =
            |range: std::ops::Range<usize>| -> String { range.map(|i| format!("${{guardian:pvc/k{i}}}")).collect() };
        let store = Store::new(&[]);
        let ok = plan(keys(0..MAX_REFERENCES).as_bytes(), |n| store.fetch(n)).unwrap();
        assert_eq!(ok.targets.len(), MAX_REFERENCES);
        // Duplicates don't count.
        let root = keys(0..MAX_REFERENCES) + &keys(0..MAX_REFERENCES);
        assert_eq!(plan(root.as_bytes(), |n| store.fetch(n)).unwrap().targets.len(), MAX_REFERENCES);
        let err = plan(keys(0..MAX_REFERENCES + 1).as_bytes(), |n| store.fetch(n)).unwrap_err();
        assert!(matches!(err, RefError::TooMany { what: "references", limit: MAX_REFERENCES }), "{err:?}");

        // Reached across configs: the root's 200 plus a config with 100 more.
        let nested = keys(200..300);
        let store = Store::new(&[("more", &nested)]);
        let root = keys(0..200) + "${guardian:config/more}";
        let err = plan(root.as_bytes(), |n| store.fetch(n)).unwrap_err();
        assert!(matches!(err, RefError::TooMany { what: "references", .. }), "{err:?}");
    }
}
