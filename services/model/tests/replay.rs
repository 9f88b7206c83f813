//! `replay` over the provisioned seed dataset and over a file with bad lines.

mod common;

use std::path::Path;

use pulsewire_model::replay::{self, Totals};
use serde_json::Value;

fn run_file(path: &Path) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    replay::run(path, &common::parser(), common::table(), &mut out, &mut err).unwrap();
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn run_bytes(input: &[u8]) -> (Totals, Vec<Value>, Vec<Value>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let totals = replay::run_reader(
        input,
        &common::parser(),
        common::table(),
        &mut out,
        &mut err,
    )
    .unwrap();
    (totals, json_lines(&out), json_lines(&err))
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn seed_dataset_gives_exactly_the_expected_results() {
    let (out, err) = run_file(&common::provisioning().join("data/seed-readings.csv"));
    let expected =
        std::fs::read_to_string(common::provisioning().join("data/seed-expected.jsonl")).unwrap();
    // Same objects, same order, after JSON normalisation.
    assert_eq!(json_lines(out.as_bytes()), json_lines(expected.as_bytes()));
    assert_eq!(err, "");
    // And the exact bytes we print, for people diffing by eye.
    assert_eq!(
        out.lines().next().unwrap(),
        r#"{"sensor_id":1,"kind":"heart_rate","count":5,"min":60,"max":80,"mean":70.0,"last_value":60,"last_time":"2024-06-19T13:58:41.074766Z"}"#
    );
}

#[test]
fn seed_dataset_shuffled_with_crlf_and_redelivery_gives_the_same_results() {
    let seed =
        std::fs::read_to_string(common::provisioning().join("data/seed-readings.csv")).unwrap();
    let mut lines: Vec<&str> = seed.lines().collect();
    lines.reverse(); // latest first: last_value must still be by event time
    let mut input = String::from("sensor_id,data_type,timestamp,value\r\n");
    for line in &lines {
        input.push_str(line);
        input.push_str("\r\n");
    }
    // Redelivered in another notation: duplicates, not counted.
    input.push_str("1,heart_rate,2024-06-19T15:58:41.074766+02:00,60\n");
    input.push_str("\"2,heart_rate,2024-06-19T13:58:37.074766Z,60\"");
    let (totals, out, err) = run_bytes(input.as_bytes());
    let expected =
        std::fs::read_to_string(common::provisioning().join("data/seed-expected.jsonl")).unwrap();
    assert_eq!(out, json_lines(expected.as_bytes()));
    assert_eq!(
        totals,
        Totals {
            lines: 28,
            counted: 25,
            skipped: 1,
            rejected: 0,
            duplicates: 2,
            late: 0,
            conflicts: 0,
            full: 0
        }
    );
    assert_eq!(err.len(), 2);
    assert_eq!(err[0]["line"], 27);
    assert_eq!(err[0]["code"], "duplicate");
    assert_eq!(
        err[0]["reason"],
        "duplicate: sensor 1 heart_rate already has a reading at 2024-06-19T13:58:41.074766Z"
    );
    assert_eq!(err[1]["line"], 28);
}

#[test]
fn bad_lines_are_reported_on_stderr_and_the_rest_is_counted() {
    let input: &[u8] = b"sensor_id,data_type,timestamp,value\n\
        1,heart_rate,2024-06-19 13:58:37.074766,80\n\
        \n\
        1,heart_rate,2024-06-19 13:58:38.074766\n\
        x,heart_rate,2024-06-19 13:58:38.074766,80\n\
        1,temp,2024-06-19 13:58:38.074766,80\n\
        1,heart_rate,2024-13-19 13:58:38.074766,80\n\
        1,heart_rate,2024-06-19 13:58:38.074766,300\r\n\
        1,heart_rate,2024-06-19 13:58:38.074766,\xff\xfe\n\
        2,heart_rate,2024-06-19T13:58:39.5Z,61\n\
        1,heart_rate,2024-06-19 13:58:39.074766,100";
    let (totals, out, err) = run_bytes(input);
    assert_eq!(
        totals,
        Totals {
            lines: 11,
            counted: 3,
            skipped: 2,
            rejected: 6,
            duplicates: 0,
            late: 0,
            conflicts: 0,
            full: 0
        }
    );
    assert_eq!(
        out,
        vec![
            serde_json::json!({"sensor_id": 1, "kind": "heart_rate", "count": 2, "min": 80,
                "max": 100, "mean": 90.0, "last_value": 100,
                "last_time": "2024-06-19T13:58:39.074766Z"}),
            serde_json::json!({"sensor_id": 2, "kind": "heart_rate", "count": 1, "min": 61,
                "max": 61, "mean": 61.0, "last_value": 61,
                "last_time": "2024-06-19T13:58:39.500Z"}),
        ]
    );
    let summary: Vec<(u64, &str, &str)> = err
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (4, "column_count", "wrong column count: expected 4, got 3"),
            (
                5,
                "bad_sensor_id",
                "bad sensor id \"x\": not a positive integer"
            ),
            (6, "unknown_kind", "unknown kind \"temp\""),
            (
                7,
                "impossible_time",
                "impossible time \"2024-13-19 13:58:38.074766\": no such date or time"
            ),
            (
                8,
                "value_out_of_range",
                "value 300 out of range 30..=250 for heart_rate"
            ),
            (9, "not_utf8", "not valid UTF-8"),
        ]
    );
    // raw is the line as it was (its \r kept), lossless for non-UTF-8.
    assert_eq!(
        err[4]["raw"],
        "1,heart_rate,2024-06-19 13:58:38.074766,300\r"
    );
    assert_eq!(
        err[5]["raw"],
        "1,heart_rate,2024-06-19 13:58:38.074766,\u{fffd}\u{fffd}"
    );
    assert_eq!(
        err[5]["raw_base64"],
        "MSxoZWFydF9yYXRlLDIwMjQtMDYtMTkgMTM6NTg6MzguMDc0NzY2LP/+"
    );
    assert!(err[0].get("raw_base64").is_none());
}

#[test]
fn empty_file_prints_nothing() {
    let (totals, out, err) = run_bytes(b"");
    assert_eq!(totals, Totals::default());
    assert!(out.is_empty() && err.is_empty());
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let missing = Path::new("/nonexistent/pulsewire/readings.csv");
    let e = replay::run(
        missing,
        &common::parser(),
        common::table(),
        &mut out,
        &mut err,
    )
    .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.starts_with("cannot read /nonexistent/pulsewire/readings.csv: "),
        "{text}"
    );
    // A directory opens but cannot be read.
    let dir = common::provisioning();
    let e = replay::run(&dir, &common::parser(), common::table(), &mut out, &mut err).unwrap_err();
    assert!(
        format!("{e:#}").contains(&dir.display().to_string()),
        "{e:#}"
    );
}

#[test]
fn readings_past_the_state_bound_are_reported_as_state_full() {
    // The processor's table, with room for two (sensor, kind) states.
    let input: &[u8] = b"1,heart_rate,2024-06-19 13:58:37.074766,80\n\
        2,heart_rate,2024-06-19 13:58:37.074766,81\n\
        3,heart_rate,2024-06-19 13:58:37.074766,82\n\
        1,heart_rate,2024-06-19 13:58:38.074766,90\n";
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let table = pulsewire_model::state::StateTable::new(common::dedup_window()).with_max_states(2);
    let totals = replay::run_reader(input, &common::parser(), table, &mut out, &mut err).unwrap();
    assert_eq!((totals.counted, totals.full), (3, 1));
    let err = json_lines(&err);
    assert_eq!(err.len(), 1);
    assert_eq!(err[0]["line"], 3);
    assert_eq!(err[0]["code"], "state_full");
    let out = json_lines(&out);
    let counts: Vec<(u64, u64)> = out
        .iter()
        .map(|s| {
            (
                s["sensor_id"].as_u64().unwrap(),
                s["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(1, 2), (2, 1)]);
}
