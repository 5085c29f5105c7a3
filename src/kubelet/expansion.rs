//! The kubelet's `$(VAR)` expansion of a container's `env` values, `command` and `args`.
//!
//! The rules are Kubernetes' own (`third_party/forked/golang/expansion/expand.go`, applied by
//! the kubelet in `makeEnvironmentVariables` and `ExpandContainerCommandAndArgs`):
//! - `$(NAME)` is replaced by the value of `NAME`; a name that is not defined stays as it is
//!   written, `$(NAME)`;
//! - `$$` is one literal `$`; a `$` before anything but `(` or `$` stays, with that character;
//!   `$(` without a closing `)` stays;
//! - the text a reference expands to is not expanded again;
//! - an `env` value sees the variables of `envFrom` and the `env` entries **before** it in the
//!   list (and the Services' variables); `command` and `args` see the whole environment, where
//!   the last `env` entry of a name wins over earlier ones and over `envFrom`.
//!
//! Values fluxgate cannot read (a ConfigMap or Secret key, an annotation, a variable `envFrom`
//! may define) are [`Unknown`] pieces that remember where they come from. The variables the
//! kubelet derives from Services (`<NAME>_SERVICE_HOST`, `<NAME>_PORT`, ...) hold addresses
//! and ports: they can never spell a flag, so they are left as written.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

/// What an unknown piece of text can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A Kubernetes name, label value, IP address or number: empty, or an ASCII letter or digit
    /// followed by letters, digits, `.`, `_`, `:` and `-`. Never whitespace or shell syntax,
    /// and never starts with `-`.
    Word,
    /// Any text at all.
    Any,
    /// Text a shell script computes when it runs (`$(...)`, `` `...` ``, `$((...))`, `$?`):
    /// not followed. It may be empty; it is never taken to spell a flag by itself.
    Runtime,
}

/// A piece of text fluxgate cannot know, and where it comes from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub class: Class,
    pub source: Arc<str>,
}

impl Unknown {
    pub fn new(class: Class, source: impl Into<Arc<str>>) -> Self {
        Unknown {
            class,
            source: source.into(),
        }
    }
}

/// A piece of a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Unknown(Unknown),
}

/// A string as the kubelet will make it, some of whose pieces may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Value {
    parts: Vec<Part>,
}

impl Value {
    pub fn text(text: impl Into<String>) -> Self {
        let mut value = Value::default();
        value.push_text(&text.into());
        value
    }

    pub fn unknown(unknown: Unknown) -> Self {
        Value {
            parts: vec![Part::Unknown(unknown)],
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.parts.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ => self.parts.push(Part::Text(text.to_string())),
        }
    }

    /// Appends an unknown piece. Two unknown pieces of the same class and source in a row
    /// hold no more than one does, so they are kept as one.
    pub fn push_unknown(&mut self, unknown: Unknown) {
        if matches!(self.parts.last(), Some(Part::Unknown(last)) if *last == unknown) {
            return;
        }
        self.parts.push(Part::Unknown(unknown));
    }

    pub fn append(&mut self, other: &Value) {
        for part in &other.parts {
            match part {
                Part::Text(text) => self.push_text(text),
                Part::Unknown(u) => self.push_unknown(u.clone()),
            }
        }
    }

    /// The whole value, when every piece of it is known.
    pub fn as_text(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The first unknown piece of this class, if any.
    pub fn first_unknown(&self, class: Class) -> Option<&Unknown> {
        self.parts.iter().find_map(|p| match p {
            Part::Unknown(u) if u.class == class => Some(u),
            _ => None,
        })
    }

    /// What keeping this value costs, in bytes of the budget: its text, and a little for
    /// each unknown piece.
    pub fn cost(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Unknown(_) => UNKNOWN_COST,
            })
            .sum()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(t)?,
                Part::Unknown(u) => write!(f, "<{}>", u.source)?,
            }
        }
        Ok(())
    }
}

/// How much text the expansion of one object may produce. A chain of `env` entries that
/// each reference the one before twice doubles at every step; past the budget the rest of a
/// value is an unknown piece, so work and memory stay bounded whatever the object says.
#[derive(Debug)]
pub struct Budget {
    left: usize,
}

/// What an unknown piece costs in the budget.
const UNKNOWN_COST: usize = 16;

/// The default budget: far more than any real container's environment and command line.
pub const DEFAULT_BUDGET: usize = 256 * 1024;

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_BUDGET)
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget { left: bytes }
    }

    /// Spends `n` bytes; false (and nothing spent) when fewer are left.
    pub fn spend(&mut self, n: usize) -> bool {
        if n > self.left {
            self.left = 0;
            false
        } else {
            self.left -= n;
            true
        }
    }

    pub fn exhausted(&self) -> bool {
        self.left == 0
    }
}

/// The unknown piece that stands for text past the budget.
pub fn too_long() -> Unknown {
    Unknown::new(
        Class::Any,
        "text longer than fluxgate follows (the expansion grows past 256 KiB)",
    )
}

/// Expands `$(NAME)` references in `input` the way the kubelet does; `lookup` answers with
/// a variable's value, or `None` for an undefined variable (which stays as written).
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<Value>, budget: &mut Budget) -> Value {
    let mut out = Value::default();
    let push = |out: &mut Value, text: &str, budget: &mut Budget| {
        if budget.spend(text.len()) {
            out.push_text(text);
        } else if !matches!(out.parts.last(), Some(Part::Unknown(u)) if *u == too_long()) {
            out.push_unknown(too_long());
        }
    };
    let bytes = input.as_bytes();
    let (mut i, mut literal_from) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 >= bytes.len() {
            i += 1;
            continue;
        }
        push(&mut out, &input[literal_from..i], budget);
        match bytes[i + 1] {
            b'$' => {
                push(&mut out, "$", budget);
                i += 2;
            }
            b'(' => match input[i + 2..].find(')') {
                Some(len) => {
                    let name = &input[i + 2..i + 2 + len];
                    match lookup(name) {
                        Some(value) => {
                            if budget.spend(value.cost()) {
                                out.append(&value);
                            } else {
                                out.push_unknown(too_long());
                            }
                        }
                        None => push(&mut out, &input[i..i + 2 + len + 1], budget),
                    }
                    i += 2 + len + 1;
                }
                None => {
                    push(&mut out, "$(", budget);
                    i += 2;
                }
            },
            _ => {
                // `$` and the character after it stay as they are.
                let next = input[i + 1..].chars().next().map_or(1, char::len_utf8);
                push(&mut out, &input[i..i + 1 + next], budget);
                i += 1 + next;
            }
        }
        literal_from = i;
    }
    push(&mut out, &input[literal_from..], budget);
    out
}

// ---- The container's environment, as the kubelet builds it. ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef<'a> {
    #[serde(borrow, default)]
    field_path: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom<'a> {
    #[serde(borrow, default)]
    field_ref: Option<FieldRef<'a>>,
    #[serde(default)]
    resource_field_ref: Option<serde::de::IgnoredAny>,
    #[serde(borrow, default)]
    config_map_key_ref: Option<KeyRef<'a>>,
    #[serde(borrow, default)]
    secret_key_ref: Option<KeyRef<'a>>,
}

/// One `env` entry of a container.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub value: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub value_from: Option<ValueFrom<'a>>,
}

#[derive(Deserialize)]
pub struct NameRef<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    name: Option<Cow<'a, str>>,
}

/// One `envFrom` entry of a container: every key of a ConfigMap or Secret, with a prefix.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub prefix: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub config_map_ref: Option<NameRef<'a>>,
    #[serde(borrow, default)]
    pub secret_ref: Option<NameRef<'a>>,
}

/// A variable `envFrom` may define: every name that starts with the prefix.
struct FromSource {
    prefix: String,
    source: Arc<str>,
}

/// The environment of one container: what `$(NAME)` in its `command` and `args` (and a shell
/// script's `$NAME`) stands for.
#[derive(Default)]
pub struct Environment {
    vars: HashMap<String, Value>,
    from: Vec<FromSource>,
}

fn named(name: &Option<Cow<'_, str>>) -> String {
    name.as_deref().unwrap_or("").to_string()
}

impl Environment {
    /// The environment the kubelet gives a container of a Pod in `namespace`.
    pub fn new(
        env: &[EnvVar<'_>],
        env_from: &[EnvFromSource<'_>],
        namespace: &str,
        budget: &mut Budget,
    ) -> Self {
        let from = env_from
            .iter()
            .map(|source| {
                let what = match (&source.config_map_ref, &source.secret_ref) {
                    (Some(cm), _) => format!("envFrom ConfigMap {}", named(&cm.name)),
                    (None, Some(secret)) => format!("envFrom Secret {}", named(&secret.name)),
                    (None, None) => "envFrom".to_string(),
                };
                FromSource {
                    prefix: source.prefix.as_deref().unwrap_or("").to_string(),
                    source: what.into(),
                }
            })
            .collect();
        let mut environment = Environment {
            vars: HashMap::with_capacity(env.len()),
            from,
        };
        for var in env {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) if !value.is_empty() => {
                    expand(value, |name| environment.lookup(name), budget)
                }
                (_, Some(from)) => value_from(&var.name, from, namespace),
                _ => Value::default(),
            };
            environment.vars.insert(var.name.to_string(), value);
        }
        environment
    }

    /// The value of a variable: defined by `env`, possibly by `envFrom` (unknown), or
    /// undefined (`None`).
    pub fn lookup(&self, name: &str) -> Option<Value> {
        if let Some(value) = self.vars.get(name) {
            return Some(value.clone());
        }
        self.from
            .iter()
            .find(|f| name.starts_with(f.prefix.as_str()))
            .map(|f| {
                Value::unknown(Unknown::new(
                    Class::Any,
                    format!("${name}, which {} may define", f.source),
                ))
            })
    }

    /// Expands a `command` or `args` entry.
    pub fn expand(&self, input: &str, budget: &mut Budget) -> Value {
        expand(input, |name| self.lookup(name), budget)
    }
}

/// What a `valueFrom` gives. The namespace is known; labels are names, IPs and numbers are
/// words; everything else (keys of ConfigMaps and Secrets, annotations) may be any text.
fn value_from(name: &str, from: &ValueFrom<'_>, namespace: &str) -> Value {
    let source = |what: String| format!("${name} (from {what})");
    if let Some(field) = &from.field_ref {
        let path = field.field_path.trim();
        if path == "metadata.namespace" {
            return Value::text(namespace);
        }
        let class = if path.starts_with("metadata.annotations")
            || path == "metadata.labels"
            || path.is_empty()
        {
            Class::Any
        } else {
            Class::Word
        };
        return Value::unknown(Unknown::new(class, source(format!("fieldRef {path}"))));
    }
    if from.resource_field_ref.is_some() {
        return Value::unknown(Unknown::new(Class::Word, source("resourceFieldRef".into())));
    }
    let (kind, key) = match (&from.config_map_key_ref, &from.secret_key_ref) {
        (Some(r), _) => ("ConfigMap", r),
        (None, Some(r)) => ("Secret", r),
        (None, None) => {
            return Value::unknown(Unknown::new(Class::Any, source("valueFrom".into())));
        }
    };
    Value::unknown(Unknown::new(
        Class::Any,
        source(format!("{kind} {} key {}", named(&key.name), key.key)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<Value> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).map(|v| Value::text(v.clone()))
    }

    fn expanded(input: &str, vars: &[(&str, &str)]) -> String {
        expand(input, lit(vars), &mut Budget::default())
            .as_text()
            .expect("all known")
            .to_string()
    }

    /// The cases of Kubernetes' own `TestMapReference`/`TestExpand` (expand_test.go), with the
    /// same variables: what the kubelet makes of each.
    #[test]
    fn expansion_follows_the_kubelet() {
        let vars = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
            ("BLOCK", "$(VAR_A)"),
        ];
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_A)$(VAR_B)$(VAR_C) sunshine", "ABC sunshine"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("foo$(VAR_A", "foo$(VAR_A"),
            ("$(", "$("),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$", "$"),
            ("$$", "$"),
            ("$$$", "$$"),
            ("foo$", "foo$"),
            ("$VAR_A", "$VAR_A"),
            ("$x$(VAR_A)", "$xA"),
            ("$é$(VAR_A)", "$éA"),
            ("$()", "$()"),
            ("$(BLOCK)", "$(VAR_A)"),
        ] {
            assert_eq!(expanded(input, &vars), want, "{input:?}");
        }
    }

    fn env_var<'a>(name: &'a str, value: &'a str) -> EnvVar<'a> {
        EnvVar {
            name: Cow::Borrowed(name),
            value: Some(Cow::Borrowed(value)),
            value_from: None,
        }
    }

    #[test]
    fn an_env_value_sees_only_the_entries_before_it() {
        let env = [
            env_var("LATER_REF", "$(FLAG)"),
            env_var("FLAG", "--kas-address"),
            env_var("EARLIER_REF", "$(FLAG)=wss://kas"),
        ];
        let environment = Environment::new(&env, &[], "team-a", &mut Budget::default());
        let get = |name: &str| environment.lookup(name).expect("defined").to_string();
        assert_eq!(get("LATER_REF"), "$(FLAG)");
        assert_eq!(get("EARLIER_REF"), "--kas-address=wss://kas");
        // Command and args see every entry, and text that came from a reference is not
        // expanded again.
        let mut budget = Budget::default();
        assert_eq!(
            environment.expand("$(LATER_REF)", &mut budget).to_string(),
            "$(FLAG)"
        );
        assert_eq!(
            environment.expand("$(FLAG)=x", &mut budget).to_string(),
            "--kas-address=x"
        );
    }

    #[test]
    fn the_last_entry_of_a_name_wins() {
        let env = [env_var("A", "one"), env_var("A", "two")];
        let environment = Environment::new(&env, &[], "ns", &mut Budget::default());
        assert_eq!(
            environment
                .expand("$(A)", &mut Budget::default())
                .to_string(),
            "two"
        );
    }

    #[test]
    fn values_from_elsewhere_are_unknown_except_the_namespace() {
        let json = r#"[
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['x']"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "flag"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}
        ]"#;
        let env: Vec<EnvVar<'_>> = serde_json::from_str(json).expect("env");
        let environment = Environment::new(&env, &[], "team-a", &mut Budget::default());
        assert_eq!(
            environment.lookup("NS").expect("defined").as_text(),
            Some("team-a")
        );
        let class = |name: &str| {
            environment
                .lookup(name)
                .expect("defined")
                .parts()
                .iter()
                .find_map(|p| match p {
                    Part::Unknown(u) => Some(u.class),
                    Part::Text(_) => None,
                })
                .expect("unknown")
        };
        assert_eq!(class("POD"), Class::Word);
        assert_eq!(class("CPU"), Class::Word);
        assert_eq!(class("NOTE"), Class::Any);
        assert_eq!(class("CM"), Class::Any);
        let cm = environment.lookup("CM").expect("defined").to_string();
        assert!(cm.contains("ConfigMap settings key flag"), "{cm}");
    }

    #[test]
    fn env_from_may_define_any_name_with_its_prefix() {
        let from: Vec<EnvFromSource<'_>> =
            serde_json::from_str(r#"[{"prefix": "AGENT_", "configMapRef": {"name": "agent"}}]"#)
                .expect("envFrom");
        let environment = Environment::new(&[], &from, "ns", &mut Budget::default());
        assert!(environment.lookup("AGENT_FLAG").is_some());
        assert!(environment.lookup("OTHER").is_none());
        let value = environment.expand("$(AGENT_FLAG)=x", &mut Budget::default());
        assert!(value.first_unknown(Class::Any).is_some());
    }

    #[test]
    fn a_doubling_chain_stops_at_the_budget() {
        let names: Vec<String> = (0..64).map(|i| format!("V{i}")).collect();
        let values: Vec<String> = (0..64)
            .map(|i| {
                if i == 0 {
                    "x".repeat(64)
                } else {
                    format!("$(V{})$(V{})", i - 1, i - 1)
                }
            })
            .collect();
        let env: Vec<EnvVar<'_>> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| env_var(n, v))
            .collect();
        let mut budget = Budget::new(DEFAULT_BUDGET);
        let environment = Environment::new(&env, &[], "ns", &mut budget);
        assert!(budget.exhausted());
        let last = environment.lookup("V63").expect("defined");
        assert!(last.first_unknown(Class::Any).is_some());
        assert!(last.cost() <= DEFAULT_BUDGET);
    }
}
