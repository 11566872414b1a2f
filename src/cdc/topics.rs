//! Which Kafka topics hold which tables: Debezium names a table's topic
//! `<prefix>.<schema>.<table>`. Shared by the commands that read change topics (`tail`, `load`).
//! Pure: resolves names against a topic list the caller fetched.

use regex::Regex;

use crate::clients::kafka::TopicInfo;
use crate::error::CliError;

/// Which topics to read.
#[derive(Debug)]
pub struct Selection {
    tables: Vec<String>,
    topics: Vec<String>,
    pattern: Option<Regex>,
}

impl Selection {
    /// Tables (`users`, `commerce.products`), exact topic names, and a regular expression that
    /// must match a whole topic name. Fails (usage) on an invalid expression.
    pub fn new(
        tables: &[String],
        topics: &[String],
        pattern: Option<&str>,
    ) -> Result<Self, CliError> {
        let pattern = match pattern {
            Some(p) => Some(
                Regex::new(&format!("^(?:{p})$")).map_err(|e| CliError::Usage {
                    message: format!("--pattern `{p}` is not a valid regular expression: {e}"),
                    hint: Some(
                        "the syntax is Rust's `regex` crate, e.g. `cdc\\.public\\..*`".into(),
                    ),
                })?,
            ),
            None => None,
        };
        Ok(Selection {
            tables: tables.to_vec(),
            topics: topics.to_vec(),
            pattern,
        })
    }

    /// Picks the topics to read from the cluster's topics.
    pub fn resolve(&self, prefix: &str, all: &[TopicInfo]) -> Result<Vec<TopicInfo>, CliError> {
        let by_name = |name: &str| all.iter().find(|t| t.name == name);
        let mut chosen: Vec<TopicInfo> = Vec::new();
        fn add(chosen: &mut Vec<TopicInfo>, topic: &TopicInfo) {
            if !chosen.iter().any(|t| t.name == topic.name) {
                chosen.push(topic.clone());
            }
        }
        let table_topics: Vec<&TopicInfo> = all
            .iter()
            .filter(|t| table_of_topic(prefix, &t.name).is_some())
            .collect();
        for table in &self.tables {
            let found = match table.split_once('.') {
                Some(_) => by_name(&format!("{prefix}.{table}")),
                None => by_name(&format!("{prefix}.public.{table}")).or_else(|| {
                    let mut matches = table_topics
                        .iter()
                        .filter(|t| table_of_topic(prefix, &t.name).map(|(_, n)| n) == Some(table));
                    match (matches.next(), matches.next()) {
                        (Some(one), None) => Some(*one),
                        _ => None,
                    }
                }),
            };
            match found {
                Some(topic) => add(&mut chosen, topic),
                None => return Err(missing_table(table, prefix, &table_topics)),
            }
        }
        for name in &self.topics {
            match by_name(name) {
                Some(topic) => add(&mut chosen, topic),
                None => {
                    return Err(CliError::Usage {
                        message: format!("topic `{name}` does not exist"),
                        hint: Some(
                            "list the topics with `kcat -L`; Debezium creates a table's topic \
                             with its first change"
                                .into(),
                        ),
                    });
                }
            }
        }
        if let Some(pattern) = &self.pattern {
            let before = chosen.len();
            for topic in all.iter().filter(|t| pattern.is_match(&t.name)) {
                add(&mut chosen, topic);
            }
            if chosen.len() == before && self.tables.is_empty() && self.topics.is_empty() {
                return Err(CliError::Usage {
                    message: format!("no topic matches --pattern `{}`", whole_name(pattern)),
                    hint: Some("the pattern must match the whole topic name".into()),
                });
            }
        }
        if self.tables.is_empty() && self.topics.is_empty() && self.pattern.is_none() {
            for topic in &table_topics {
                add(&mut chosen, topic);
            }
            if chosen.is_empty() {
                return Err(CliError::Usage {
                    message: format!("there are no change topics with the prefix `{prefix}`"),
                    hint: Some(
                        "create the connector first (`cdcctl create-connector`), or pass \
                         `--topic-prefix` or `--topic`"
                            .into(),
                    ),
                });
            }
        }
        Ok(chosen)
    }
}

/// The pattern as the user wrote it, without the anchors that make it match whole names.
fn whole_name(pattern: &Regex) -> &str {
    let text = pattern.as_str();
    text.strip_prefix("^(?:")
        .and_then(|t| t.strip_suffix(")$"))
        .unwrap_or(text)
}

/// `(schema, table)` when `topic` is a table topic `<prefix>.<schema>.<table>`.
pub fn table_of_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('.')?;
    let (schema, table) = rest.split_once('.')?;
    (!schema.is_empty() && !table.is_empty() && !table.contains('.')).then_some((schema, table))
}

fn missing_table(table: &str, prefix: &str, table_topics: &[&TopicInfo]) -> CliError {
    let known: Vec<String> = table_topics
        .iter()
        .filter_map(|t| table_of_topic(prefix, &t.name))
        .map(|(s, t)| format!("{s}.{t}"))
        .collect();
    let looked_for = if table.contains('.') {
        format!("{prefix}.{table}")
    } else {
        format!("{prefix}.public.{table}")
    };
    CliError::Usage {
        message: format!("no topic for table `{table}` (looked for `{looked_for}`)"),
        hint: Some(if known.is_empty() {
            format!(
                "no table has a topic under the prefix `{prefix}` yet: is the connector created \
                 (`cdcctl create-connector`) and has the table changed since?"
            )
        } else {
            format!("tables with topics under `{prefix}`: {}", known.join(", "))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicInfo {
        TopicInfo {
            name: name.into(),
            partitions: vec![0],
        }
    }

    fn selection(tables: &[&str], topics: &[&str], pattern: Option<&str>) -> Selection {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&strings(tables), &strings(topics), pattern).unwrap()
    }

    fn names(topics: Vec<TopicInfo>) -> Vec<String> {
        topics.into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn tables_resolve_to_their_topics() {
        let all = [
            topic("cdc.public.users"),
            topic("cdc.commerce.products"),
            topic("cdc.commerce.users"),
            topic("other.public.users"),
            topic("cdc.dlq"),
            topic("__debezium-heartbeat.cdc"),
        ];
        let got = selection(&["users", "products"], &[], None)
            .resolve("cdc", &all)
            .unwrap();
        assert_eq!(names(got), ["cdc.public.users", "cdc.commerce.products"]);
        let got = selection(&["commerce.users"], &[], None)
            .resolve("cdc", &all)
            .unwrap();
        assert_eq!(names(got), ["cdc.commerce.users"]);
        // Nothing named: every table topic of the prefix, never the DLQ or heartbeats.
        let got = selection(&[], &[], None).resolve("cdc", &all).unwrap();
        assert_eq!(
            names(got),
            [
                "cdc.public.users",
                "cdc.commerce.products",
                "cdc.commerce.users"
            ]
        );
        let got = selection(&[], &["cdc.dlq"], Some(r"other\..*"))
            .resolve("cdc", &all)
            .unwrap();
        assert_eq!(names(got), ["cdc.dlq", "other.public.users"]);
    }

    #[test]
    fn a_missing_table_names_what_exists() {
        let all = [topic("cdc.public.users"), topic("cdc.public.orders")];
        let err = selection(&["invoices"], &[], None)
            .resolve("cdc", &all)
            .unwrap_err();
        assert!(err.to_string().contains("cdc.public.invoices"), "{err}");
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("public.users") && hint.contains("public.orders"),
            "{hint}"
        );
        let err = selection(&[], &[], None).resolve("cdc", &[]).unwrap_err();
        assert!(err.hint().unwrap().contains("create-connector"));
        let err = selection(&[], &[], Some("nope.*"))
            .resolve("cdc", &all)
            .unwrap_err();
        assert!(err.to_string().contains("--pattern `nope.*`"), "{err}");
    }

    #[test]
    fn table_topics_have_three_parts() {
        assert_eq!(
            table_of_topic("cdc", "cdc.public.users"),
            Some(("public", "users"))
        );
        assert_eq!(table_of_topic("cdc", "cdc.dlq"), None);
        assert_eq!(table_of_topic("cdc", "cdcx.public.users"), None);
        assert_eq!(table_of_topic("cdc", "cdc.a.b.c"), None);
    }
}
