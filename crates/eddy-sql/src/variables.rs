//! Session variables (`DEFINE name = 'value'`, `UNDEFINE name`) and their `${name}` substitution
//! into the text of the statements that follow, as ksqlDB does with
//! `ksql.variable.substitution.enable` on (its default).

use std::collections::BTreeMap;

use eddy_common::{Error, Result};

/// The longest a statement may grow to by substitution (a few variables referenced many times must
/// not turn a small request into gigabytes).
pub const MAX_SUBSTITUTED_LEN: usize = 1 << 20;

/// The property that turns substitution off.
pub const SUBSTITUTION_PROPERTY: &str = "ksql.variable.substitution.enable";

/// Variables by name; names are matched ignoring case, and kept as first defined.
#[derive(Debug, Clone)]
pub struct Variables {
    /// Whether `${name}` is replaced (else it is left for the parser, which refuses it).
    pub substitute: bool,
    values: BTreeMap<String, (String, String)>,
}

impl Default for Variables {
    fn default() -> Self {
        Variables {
            substitute: true,
            values: BTreeMap::new(),
        }
    }
}

impl Variables {
    /// The variables a request brought (`sessionVariables`), substituted unless `properties` turn
    /// substitution off.
    pub fn new<'a>(
        defined: impl IntoIterator<Item = (&'a str, &'a str)>,
        substitute: bool,
    ) -> Self {
        let mut v = Variables {
            substitute,
            values: BTreeMap::new(),
        };
        for (name, value) in defined {
            v.define(name, value);
        }
        v
    }

    /// Whether a property value turns substitution on (anything but `false`).
    pub fn substitution_enabled(value: Option<&str>) -> bool {
        !value.is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    }

    pub fn define(&mut self, name: &str, value: &str) {
        let entry = self
            .values
            .entry(name.to_ascii_uppercase())
            .or_insert_with(|| (name.to_string(), String::new()));
        entry.1 = value.to_string();
    }

    /// Removes a variable; whether it was defined.
    pub fn undefine(&mut self, name: &str) -> bool {
        self.values.remove(&name.to_ascii_uppercase()).is_some()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(&name.to_ascii_uppercase())
            .map(|(_, v)| v.as_str())
    }

    /// (name, value) of every variable, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.values().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether `text` holds references to replace.
    pub fn applies_to(&self, text: &str) -> bool {
        self.substitute && text.contains("${")
    }

    /// `text` with every `${name}` outside comments replaced by the variable's value; inside a
    /// quoted string a `'` of the value is doubled, so the value stays within the string.
    pub fn substitute(&self, text: &str) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut in_string = false;
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if !in_string && rest.starts_with("--") {
                let end = rest.find('\n').unwrap_or(rest.len());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
                continue;
            }
            if c == '\'' {
                in_string = !in_string;
            }
            if let Some(reference) = rest.strip_prefix("${") {
                let end = reference.find('}').ok_or_else(|| Error::Syntax {
                    message: "A variable reference `${` has no closing `}`".into(),
                    position: None,
                })?;
                let name = reference[..end].trim();
                let value = self.get(name).ok_or_else(|| Error::Plan(format!(
                    "Variable '{name}' is not defined: define it first with DEFINE {name} = '<value>';"
                )))?;
                if in_string {
                    out.push_str(&value.replace('\'', "''"));
                } else {
                    out.push_str(value);
                }
                if out.len() > MAX_SUBSTITUTED_LEN {
                    return Err(Error::BadRequest(format!(
                        "The statement is longer than {MAX_SUBSTITUTED_LEN} bytes once its variables are substituted"
                    )));
                }
                rest = &reference[end + 1..];
                continue;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables::new([("topic", "cars"), ("Format", "JSON"), ("q", "it's")], true)
    }

    #[test]
    fn references_are_replaced_in_names_and_strings() {
        let text = "CREATE STREAM ${topic}_s (v ${ format }) WITH (kafka_topic='${topic}', value_format='${FORMAT}');";
        assert_eq!(
            vars().substitute(text).unwrap(),
            "CREATE STREAM cars_s (v JSON) WITH (kafka_topic='cars', value_format='JSON');"
        );
    }

    #[test]
    fn quotes_in_values_stay_within_strings() {
        assert_eq!(
            vars().substitute("SELECT '${q}', ${q}").unwrap(),
            "SELECT 'it''s', it's"
        );
    }

    #[test]
    fn comments_are_left_alone_and_unknown_names_refused() {
        assert_eq!(
            vars().substitute("-- ${nothing}\nSELECT 1").unwrap(),
            "-- ${nothing}\nSELECT 1"
        );
        let e = vars().substitute("SELECT ${nothing}").unwrap_err();
        assert!(
            e.to_string().contains("Variable 'nothing' is not defined"),
            "{e}"
        );
        assert!(vars().substitute("SELECT ${topic").is_err());
    }

    #[test]
    fn substitution_cannot_grow_without_bound() {
        let mut v = Variables::default();
        v.define("big", &"x".repeat(100_000));
        let text = "${big}".repeat(20);
        assert!(v.substitute(&text).is_err());
    }

    #[test]
    fn names_ignore_case_and_undefine_removes() {
        let mut v = vars();
        v.define("TOPIC", "trucks");
        assert_eq!(v.get("topic"), Some("trucks"));
        assert_eq!(v.iter().next(), Some(("Format", "JSON")));
        assert!(v.undefine("Topic"));
        assert!(!v.undefine("topic"));
    }
}
