//! Shared by the integration tests: the parser as pipeline.toml configures it,
//! and the paths of the provisioned test dataset.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use pulsewire_model::parse::{KindRule, Parser};
use pulsewire_model::state::StateTable;

/// `tests/data/` of this crate: tables of expected results.
pub fn tests_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// `provisioning/` at the repository root.
pub fn provisioning() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../provisioning")
}

/// The `[kinds.*]` rules of pipeline.toml: the tests check the configured
/// ranges rather than a copy of them.
pub fn kinds() -> Vec<KindRule> {
    let text = std::fs::read_to_string(provisioning().join("pipeline.toml")).unwrap();
    let pipeline: toml::Table = text.parse().unwrap();
    let mut kinds: Vec<KindRule> = pipeline["kinds"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, rule)| {
            KindRule::new(
                name.clone(),
                rule["min"].as_integer().unwrap(),
                rule["max"].as_integer().unwrap(),
            )
        })
        .collect();
    kinds.sort_by(|a, b| a.name.cmp(&b.name));
    kinds
}

pub fn parser() -> Parser {
    Parser::new(kinds())
}

/// A setting of `[services.processor]`.
fn processor_setting(name: &str) -> usize {
    let text = std::fs::read_to_string(provisioning().join("pipeline.toml")).unwrap();
    let pipeline: toml::Table = text.parse().unwrap();
    pipeline["services"]["processor"][name]
        .as_integer()
        .unwrap() as usize
}

/// `dedup_window` of `[services.processor]`.
pub fn dedup_window() -> usize {
    processor_setting("dedup_window")
}

/// An empty state table with the processor's `dedup_window` and `max_states`.
pub fn table() -> StateTable {
    StateTable::new(dedup_window()).with_max_states(processor_setting("max_states"))
}
