//! `--mix insert=70,update=20,delete=10`: the relative weights of the change stream's operations.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// One change of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A new row.
    Insert,
    /// New values in some columns of an existing row.
    Update,
    /// An existing row removed (rows referencing it first).
    Delete,
}

impl Op {
    /// The word used in `--mix` and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// Relative weights of inserts, updates and deletes; at least one is positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Weight of inserts.
    pub insert: u32,
    /// Weight of updates.
    pub update: u32,
    /// Weight of deletes.
    pub delete: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            insert: 70,
            update: 20,
            delete: 10,
        }
    }
}

impl Mix {
    fn total(&self) -> u64 {
        u64::from(self.insert) + u64::from(self.update) + u64::from(self.delete)
    }

    /// Draws an operation with probability proportional to its weight.
    pub fn pick(&self, rng: &mut impl Rng) -> Op {
        let x = rng.random_range(0..self.total());
        if x < u64::from(self.insert) {
            Op::Insert
        } else if x < u64::from(self.insert) + u64::from(self.update) {
            Op::Update
        } else {
            Op::Delete
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "insert={},update={},delete={}",
            self.insert, self.update, self.delete
        )
    }
}

/// Parses `insert=70,update=20,delete=10`. Operations left out weigh 0; weights are relative
/// (they need not add up to 100) and at least one must be positive.
pub fn parse_mix(raw: &str) -> Result<Mix, String> {
    let mut mix = Mix {
        insert: 0,
        update: 0,
        delete: 0,
    };
    let mut seen = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (op, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("expected `operation=weight`, got `{part}`"))?;
        let op = op.trim().to_ascii_lowercase();
        let weight: u32 = weight.trim().parse().map_err(|_| {
            format!(
                "the weight of `{op}` must be a whole number >= 0, got `{}`",
                weight.trim()
            )
        })?;
        let slot = match op.as_str() {
            "insert" => &mut mix.insert,
            "update" => &mut mix.update,
            "delete" => &mut mix.delete,
            other => {
                return Err(format!(
                    "unknown operation `{other}` (use insert, update and delete)"
                ));
            }
        };
        if seen.contains(&op) {
            return Err(format!("`{op}` is given twice"));
        }
        *slot = weight;
        seen.push(op);
    }
    if mix.total() == 0 {
        return Err(
            "at least one weight must be positive, e.g. `insert=70,update=20,delete=10`"
                .to_string(),
        );
    }
    Ok(mix)
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_mix(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::stream_rng;

    #[test]
    fn parses_weights_in_any_order_and_case() {
        assert_eq!(
            parse_mix("insert=70,update=20,delete=10").unwrap(),
            Mix::default()
        );
        assert_eq!(
            parse_mix(" Delete = 1 , insert=3 ").unwrap(),
            Mix {
                insert: 3,
                update: 0,
                delete: 1
            }
        );
        assert_eq!(parse_mix("update=5").unwrap().update, 5);
        assert_eq!(
            Mix::default().to_string(),
            "insert=70,update=20,delete=10",
            "Display round-trips"
        );
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for (raw, reason) in [
            ("insert", "expected `operation=weight`"),
            ("insert=x", "whole number"),
            ("insert=-1", "whole number"),
            ("upsert=1", "unknown operation `upsert`"),
            ("insert=1,insert=2", "given twice"),
            ("insert=0,update=0", "at least one weight"),
            ("", "at least one weight"),
        ] {
            let err = parse_mix(raw).unwrap_err();
            assert!(err.contains(reason), "`{raw}`: {err}");
        }
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = parse_mix("insert=70,update=20,delete=10").unwrap();
        let mut rng = stream_rng(1);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        assert!((6_700..7_300).contains(&counts[0]), "{counts:?}");
        assert!((1_700..2_300).contains(&counts[1]), "{counts:?}");
        assert!((800..1_200).contains(&counts[2]), "{counts:?}");
        let only_deletes = parse_mix("delete=1").unwrap();
        assert!((0..100).all(|_| only_deletes.pick(&mut rng) == Op::Delete));
    }
}
