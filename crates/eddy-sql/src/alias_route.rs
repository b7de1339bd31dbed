//! Where a model alias sends the rows scored through it: one version, or several splitting the rows
//! by weight (deterministically by key), and optionally a shadow version that scores every row too
//! without its scores reaching the output (`ALTER MODEL m SET ALIAS a = 1 WEIGHT 90, 2 WEIGHT 10
//! SHADOW 3`).

use serde_json::{Value, json};

/// The weights of a split add up to this.
pub const TOTAL_WEIGHT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRoute {
    /// `(version, weight)`; the weights add up to [`TOTAL_WEIGHT`].
    pub weights: Vec<(u32, u32)>,
    pub shadow: Option<u32>,
}

impl AliasRoute {
    /// All rows to one version.
    pub fn single(version: u32) -> Self {
        AliasRoute {
            weights: vec![(version, TOTAL_WEIGHT)],
            shadow: None,
        }
    }

    /// A route as a statement writes it: checked (weights adding up to 100, no version twice).
    pub fn new(weights: Vec<(u32, u32)>, shadow: Option<u32>) -> Result<Self, String> {
        let total: u32 = weights.iter().map(|(_, w)| *w).sum();
        if total != TOTAL_WEIGHT || weights.iter().any(|(_, w)| *w == 0) {
            return Err(format!(
                "The weights of an alias's versions must be positive and add up to {TOTAL_WEIGHT}; these add up to {total}"
            ));
        }
        let mut versions: Vec<u32> = weights.iter().map(|(v, _)| *v).collect();
        versions.sort_unstable();
        versions.dedup();
        if versions.len() != weights.len() {
            return Err("An alias names each version once".to_string());
        }
        Ok(AliasRoute { weights, shadow })
    }

    /// Every version the route uses (the shadow too).
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.weights.iter().map(|(v, _)| *v).chain(self.shadow)
    }

    /// The version taking most rows (the first of equals).
    pub fn main(&self) -> u32 {
        let mut best = self.weights[0];
        for w in &self.weights[1..] {
            if w.1 > best.1 {
                best = *w;
            }
        }
        best.0
    }

    /// As the alias file and REST answers hold it: a version number, or
    /// `{"weights": [[version, weight], ...], "shadow": version}`.
    pub fn to_json(&self) -> Value {
        match (self.weights.as_slice(), self.shadow) {
            ([(v, _)], None) => json!(v),
            _ => {
                let mut o = json!({"weights": self.weights});
                if let Some(s) = self.shadow {
                    o["shadow"] = json!(s);
                }
                o
            }
        }
    }

    /// Reads [`AliasRoute::to_json`]'s form.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let version = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("not a version number: {v}"))
        };
        if v.is_number() {
            return Ok(AliasRoute::single(version(v)?));
        }
        let weights = v["weights"]
            .as_array()
            .ok_or_else(|| format!("not an alias route: {v}"))?
            .iter()
            .map(|pair| Ok((version(&pair[0])?, version(&pair[1])?)))
            .collect::<Result<Vec<_>, String>>()?;
        let shadow = match &v["shadow"] {
            Value::Null => None,
            s => Some(version(s)?),
        };
        AliasRoute::new(weights, shadow)
    }
}

impl std::fmt::Display for AliasRoute {
    /// `2`, or `1 WEIGHT 90, 2 WEIGHT 10 SHADOW 3` as the statement writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.weights.as_slice() {
            [(v, _)] => write!(f, "{v}")?,
            many => {
                let parts: Vec<String> = many
                    .iter()
                    .map(|(v, w)| format!("{v} WEIGHT {w}"))
                    .collect();
                f.write_str(&parts.join(", "))?
            }
        }
        if let Some(s) = self.shadow {
            write!(f, " SHADOW {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_checked_and_kept_as_json() {
        let split = AliasRoute::new(vec![(1, 90), (2, 10)], Some(3)).unwrap();
        assert_eq!(split.to_string(), "1 WEIGHT 90, 2 WEIGHT 10 SHADOW 3");
        assert_eq!(split.main(), 1);
        assert_eq!(split.versions().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(AliasRoute::from_json(&split.to_json()).unwrap(), split);
        assert_eq!(AliasRoute::single(4).to_json(), json!(4));
        assert_eq!(
            AliasRoute::from_json(&json!(4)).unwrap(),
            AliasRoute::single(4)
        );
        let e = AliasRoute::new(vec![(1, 90), (2, 20)], None).unwrap_err();
        assert!(e.contains("add up to 100; these add up to 110"), "{e}");
        assert!(AliasRoute::new(vec![(1, 50), (1, 50)], None).is_err());
    }
}
