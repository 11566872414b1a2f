//! Key tracking for `generate-data`: the keys of a table's rows held in memory, where foreign key
//! values come from, the row identities of a load, and the order tables are filled in. Pure: the
//! command reads keys and reserves sequence values through `clients::postgres`, then hands them
//! here. No IO and no CLI knowledge.

use std::collections::HashSet;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::schema::{KeyMode, ParentKeys, TableSpec};
use crate::clients::postgres::TableName;

/// A primary key value: an integer, or the text of each key column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyVal {
    /// A single integer key column.
    Int(i64),
    /// The text of each key column, in key order.
    Text(Box<[String]>),
}

impl KeyVal {
    /// The key from the text of each key column: an integer when the table has integer keys
    /// ([`int_keys`]) and the text parses as one, else text.
    pub fn from_parts(int_key: bool, parts: Vec<String>) -> KeyVal {
        match (int_key, parts.first().and_then(|p| p.parse().ok())) {
            (true, Some(i)) => KeyVal::Int(i),
            _ => KeyVal::Text(parts.into_boxed_slice()),
        }
    }

    /// The text of each key column.
    pub fn parts(&self) -> Vec<String> {
        match self {
            KeyVal::Int(i) => vec![i.to_string()],
            KeyVal::Text(parts) => parts.to_vec(),
        }
    }

    /// Appends the text of the first key column.
    pub fn push_first(&self, out: &mut String) {
        match self {
            KeyVal::Int(i) => out.push_str(&i.to_string()),
            KeyVal::Text(parts) => out.push_str(parts.first().map_or("", |s| s.as_str())),
        }
    }
}

/// Keys of a table's rows, in load order, with rows deleted since kept aside until drawn.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Keys, live or dead, in load order (then in insert order).
    pub keys: Vec<KeyVal>,
    /// Keys of rows deleted since, dropped from `keys` when drawn.
    pub dead: HashSet<KeyVal>,
}

impl KeySet {
    /// A set of live keys.
    pub fn new(keys: Vec<KeyVal>) -> KeySet {
        KeySet {
            keys,
            dead: HashSet::new(),
        }
    }

    /// Index of a live key drawn uniformly, dropping dead ones met on the way.
    fn draw(&mut self, rng: &mut ChaCha8Rng) -> Option<usize> {
        while !self.keys.is_empty() {
            let i = rng.random_range(0..self.keys.len());
            if self.dead.remove(&self.keys[i]) {
                self.keys.swap_remove(i);
            } else {
                return Some(i);
            }
        }
        None
    }

    /// A live key drawn uniformly, kept in the set.
    pub fn pick(&mut self, rng: &mut ChaCha8Rng) -> Option<KeyVal> {
        self.draw(rng).map(|i| self.keys[i].clone())
    }

    /// A live key drawn uniformly, removed from the set.
    pub fn take(&mut self, rng: &mut ChaCha8Rng) -> Option<KeyVal> {
        self.draw(rng).map(|i| self.keys.swap_remove(i))
    }
}

/// True when the table's key is one integer column (kept as `i64`).
pub fn int_keys(spec: &TableSpec) -> bool {
    matches!(spec.key_mode, KeyMode::Sequence | KeyMode::Integer)
}

/// The key of row `r` of a table whose integer key has no sequence: above the start maximum.
pub fn integer_key(spec: &TableSpec, r: u64) -> u64 {
    let base = spec
        .primary_key
        .first()
        .map_or(0, |&i| spec.columns[i].unique_base);
    (base.max(0) as u64) + 1 + r
}

/// Where a foreign key column of a target gets its values.
#[derive(Debug, Clone)]
pub enum ParentSource {
    /// The referenced column is the single-column key of target `n`: its live keys.
    Target(usize),
    /// Any other table or column: values present at start.
    Fixed(Arc<Vec<KeyVal>>),
}

/// Foreign key values for bulk rows: fixed lists, taken at the start of each table's load.
pub struct FixedParents {
    /// Keys per parent of the table's spec.
    pub lists: Vec<Arc<Vec<KeyVal>>>,
    /// Index (in its ordered list) of the first parent key picked for the current row.
    pub first_pick: Option<usize>,
}

impl ParentKeys for FixedParents {
    fn pick(&mut self, parent: usize, rng: &mut ChaCha8Rng, out: &mut String) -> bool {
        let list = &self.lists[parent];
        if list.is_empty() {
            return false;
        }
        let i = rng.random_range(0..list.len());
        self.first_pick.get_or_insert(i);
        list[i].push_first(out);
        true
    }
}

/// Foreign key values for stream inserts: live keys of targets, fixed lists otherwise.
pub struct LiveParents<'a> {
    /// Per parent of the table's spec.
    pub sources: &'a [ParentSource],
    /// Keys per target.
    pub keys: &'a mut [KeySet],
}

impl ParentKeys for LiveParents<'_> {
    fn pick(&mut self, parent: usize, rng: &mut ChaCha8Rng, out: &mut String) -> bool {
        let key = match &self.sources[parent] {
            ParentSource::Target(j) => self.keys[*j].pick(rng),
            ParentSource::Fixed(list) if list.is_empty() => None,
            ParentSource::Fixed(list) => Some(list[rng.random_range(0..list.len())].clone()),
        };
        match key {
            Some(k) => {
                k.push_first(out);
                true
            }
            None => false,
        }
    }
}

/// Values reserved from a key sequence.
#[derive(Debug)]
pub enum Reservation {
    /// `first`, `first + step`, ...
    Range {
        /// The first value.
        first: i64,
        /// The sequence's increment.
        step: i64,
    },
    /// Values drawn one by one, ascending.
    List(Vec<i64>),
}

impl Reservation {
    /// The `i`-th value.
    pub fn get(&self, i: u64) -> i64 {
        match self {
            Reservation::Range { first, step } => first + step * i as i64,
            Reservation::List(ids) => ids[i as usize],
        }
    }
}

/// Row identities of one table's bulk load.
pub enum Identities {
    /// Reserved sequence values, one per row.
    Reserved(Reservation),
    /// Integer key: `base + 1 + r`.
    Integer(u64),
    /// Salted: `first + r`.
    Counter(u64),
}

impl Identities {
    /// The identity of row `r` of the load.
    pub fn n(&self, r: u64) -> u64 {
        match self {
            Identities::Reserved(ids) => ids.get(r) as u64,
            Identities::Integer(first) => first + r,
            Identities::Counter(first) => first + r,
        }
    }
}

/// Sorts tables so that every parent comes before the tables referencing it (given order
/// otherwise; cycles and self-references keep the given order).
pub fn parents_first(specs: Vec<TableSpec>) -> Vec<TableSpec> {
    let names: Vec<TableName> = specs.iter().map(|s| s.name.clone()).collect();
    let mut placed = vec![false; specs.len()];
    let mut order = Vec::with_capacity(specs.len());
    while order.len() < specs.len() {
        // The first table, in the given order, whose parents among the targets are placed.
        let ready = (0..specs.len()).find(|&i| {
            !placed[i]
                && specs[i].parents.iter().all(|p| {
                    p.table == specs[i].name
                        || names
                            .iter()
                            .position(|n| *n == p.table)
                            .is_none_or(|j| placed[j])
                })
        });
        match ready {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                // A cycle: take the rest in the given order.
                order.extend((0..specs.len()).filter(|&i| !placed[i]));
                break;
            }
        }
    }
    let mut slots: Vec<Option<TableSpec>> = specs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::schema::ParentRef;
    use crate::datagen::stream_rng;

    fn spec(name: &str, parents: &[&str]) -> TableSpec {
        TableSpec {
            name: TableName::new("public", name),
            id: 0,
            columns: Vec::new(),
            key_mode: KeyMode::Sequence,
            primary_key: vec![],
            parents: parents
                .iter()
                .map(|p| ParentRef {
                    table: TableName::new("public", *p),
                    column: "id".into(),
                })
                .collect(),
            overriding_system_value: false,
        }
    }

    #[test]
    fn parents_come_first_and_cycles_keep_the_given_order() {
        let order = |specs: Vec<TableSpec>| -> Vec<String> {
            parents_first(specs)
                .into_iter()
                .map(|s| s.name.name)
                .collect()
        };
        assert_eq!(
            order(vec![
                spec("tx", &["users"]),
                spec("users", &[]),
                spec("items", &["tx", "elsewhere"]),
                spec("tree", &["tree"]),
            ]),
            ["users", "tx", "items", "tree"]
        );
        assert_eq!(
            order(vec![spec("a", &["b"]), spec("b", &["a"]), spec("c", &[])]),
            ["c", "a", "b"]
        );
    }

    #[test]
    fn key_sets_skip_deleted_keys_and_stay_deterministic() {
        let mut set = KeySet {
            keys: (1..=10).map(KeyVal::Int).collect(),
            dead: HashSet::new(),
        };
        for i in 1..=9 {
            set.dead.insert(KeyVal::Int(i));
        }
        let mut rng = stream_rng(1);
        assert_eq!(set.pick(&mut rng), Some(KeyVal::Int(10)));
        assert_eq!(set.take(&mut rng), Some(KeyVal::Int(10)));
        assert_eq!(set.pick(&mut rng), None);
        assert!(
            set.keys.is_empty() && set.dead.is_empty(),
            "dead keys met on the way are dropped"
        );

        let draws = |seed| {
            let mut set = KeySet {
                keys: (1..=100).map(KeyVal::Int).collect(),
                dead: HashSet::new(),
            };
            let mut rng = stream_rng(seed);
            (0..20).map(|_| set.take(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn row_identities_follow_the_reservation() {
        let range = Identities::Reserved(Reservation::Range { first: 11, step: 2 });
        assert_eq!((0..3).map(|r| range.n(r)).collect::<Vec<_>>(), [11, 13, 15]);
        let list = Identities::Reserved(Reservation::List(vec![4, 9]));
        assert_eq!((list.n(0), list.n(1)), (4, 9));
        assert_eq!(Identities::Integer(101).n(5), 106);
        assert_eq!(Identities::Counter(1).n(0), 1);
    }
}
