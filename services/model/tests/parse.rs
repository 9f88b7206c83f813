//! The line format: every accepted form and every rejection with its exact text.

mod common;

use chrono::{DateTime, Utc};
use pulsewire_model::parse::{KindRule, Parser, Rejection, MAX_LINE_BYTES};
use pulsewire_model::reading::Reading;

fn parse(line: &str) -> Result<Option<Reading>, Rejection> {
    common::parser().parse(line.as_bytes())
}

fn reading(line: &str) -> Reading {
    parse(line)
        .unwrap_or_else(|e| panic!("{line:?} rejected: {e}"))
        .unwrap_or_else(|| panic!("{line:?} skipped"))
}

fn reason(line: &[u8]) -> String {
    match common::parser().parse(line) {
        Err(rejection) => rejection.to_string(),
        Ok(r) => panic!("{:?} accepted: {r:?}", String::from_utf8_lossy(line)),
    }
}

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

#[test]
fn pipeline_configures_heart_rate_30_to_250() {
    assert_eq!(common::kinds(), vec![KindRule::new("heart_rate", 30, 250)]);
}

#[test]
fn seed_line() {
    assert_eq!(
        reading("1,heart_rate,2024-06-19 13:58:37.074766,80"),
        Reading {
            sensor_id: 1,
            kind: "heart_rate".into(),
            time: utc("2024-06-19T13:58:37.074766Z"),
            value: 80,
        }
    );
}

#[test]
fn naive_timestamps_with_0_to_9_fraction_digits_are_utc() {
    let cases = [
        ("2024-06-19 13:58:37", "2024-06-19T13:58:37Z"),
        ("2024-06-19 13:58:37.1", "2024-06-19T13:58:37.1Z"),
        ("2024-06-19 13:58:37.12", "2024-06-19T13:58:37.12Z"),
        ("2024-06-19 13:58:37.123", "2024-06-19T13:58:37.123Z"),
        ("2024-06-19 13:58:37.1234", "2024-06-19T13:58:37.1234Z"),
        ("2024-06-19 13:58:37.12345", "2024-06-19T13:58:37.12345Z"),
        ("2024-06-19 13:58:37.123456", "2024-06-19T13:58:37.123456Z"),
        (
            "2024-06-19 13:58:37.1234567",
            "2024-06-19T13:58:37.1234567Z",
        ),
        (
            "2024-06-19 13:58:37.12345678",
            "2024-06-19T13:58:37.12345678Z",
        ),
        (
            "2024-06-19 13:58:37.123456789",
            "2024-06-19T13:58:37.123456789Z",
        ),
    ];
    for (input, expected) in cases {
        let r = reading(&format!("7,heart_rate,{input},60"));
        assert_eq!(r.time, utc(expected), "{input}");
    }
}

#[test]
fn rfc3339_timestamps_are_normalised_to_utc() {
    let cases = [
        ("2024-06-19T13:58:37Z", "2024-06-19T13:58:37Z"),
        ("2024-06-19T13:58:37.074766Z", "2024-06-19T13:58:37.074766Z"),
        (
            "2024-06-19T15:58:37.074766+02:00",
            "2024-06-19T13:58:37.074766Z",
        ),
        ("2024-06-19T08:28:37-05:30", "2024-06-19T13:58:37Z"),
        ("2024-06-20T00:58:37.5+11:00", "2024-06-19T13:58:37.5Z"),
    ];
    for (input, expected) in cases {
        let r = reading(&format!("7,heart_rate,{input},60"));
        assert_eq!(r.time, utc(expected), "{input}");
        assert_eq!(r.time.timezone(), Utc);
    }
    // Every notation of one instant gives one identity.
    let a = reading("7,heart_rate,2024-06-19 13:58:37.5,60").key();
    let b = reading("7,heart_rate,2024-06-19T15:58:37.500+02:00,60").key();
    let c = reading("7,heart_rate,2024-06-19T13:58:37.500000000Z,60").key();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.time_ns, 1_718_805_517_500_000_000);
}

#[test]
fn trailing_cr_and_spaces_around_fields_are_accepted() {
    let plain = reading("3,heart_rate,2024-06-19 13:58:37.074766,75");
    assert_eq!(
        reading("3,heart_rate,2024-06-19 13:58:37.074766,75\r"),
        plain
    );
    assert_eq!(
        reading("3,heart_rate,2024-06-19 13:58:37.074766,75\r\n"),
        plain
    );
    assert_eq!(
        reading(" 3 , heart_rate , 2024-06-19 13:58:37.074766 , 75 "),
        plain
    );
    assert_eq!(
        reading("3,\"heart_rate\",\"2024-06-19 13:58:37.074766\",75"),
        plain
    );
}

#[test]
fn json_string_payloads_are_decoded_first() {
    let plain = reading("3,heart_rate,2024-06-19 13:58:37.074766,75");
    // Connect's JsonConverter with schemas.enable=false: a JSON string.
    assert_eq!(
        reading(r#""3,heart_rate,2024-06-19 13:58:37.074766,75""#),
        plain
    );
    assert_eq!(
        reading(r#""3,heart_rate,2024-06-19 13:58:37.074766,75\r""#),
        plain
    );
    assert_eq!(
        reading(r#""3,heart_rate,2024-06-19 13:58:37.074766,75\u000d\n""#),
        plain
    );
    // ... and with schemas.enable=true: an envelope.
    assert_eq!(
        reading(
            r#"{"schema":{"type":"string","optional":false},"payload":"3,heart_rate,2024-06-19 13:58:37.074766,75"}"#
        ),
        plain
    );
    // The decoded line is validated like any other.
    assert_eq!(
        reason(br#""3,heart_rate,2024-06-19 13:58:37.074766,300""#),
        "value 300 out of range 30..=250 for heart_rate"
    );
    assert_eq!(parse(r#""""#), Ok(None));
    assert_eq!(parse(r#""sensor_id,data_type,timestamp,value""#), Ok(None));
}

#[test]
fn blank_lines_and_header_rows_are_skipped() {
    for line in [
        "",
        "\r",
        "\n",
        "\r\n",
        "   ",
        " \t \r",
        "sensor_id,data_type,timestamp,value",
        "sensor_id,data_type,timestamp,value\r",
        "sensor_id,kind,timestamp,value",
        " sensor_id , data_type,timestamp ,value",
    ] {
        assert_eq!(parse(line), Ok(None), "{line:?}");
    }
}

#[test]
fn a_line_starting_with_sensor_id_that_is_no_header_is_rejected() {
    // Such lines used to be skipped without a trace.
    for (line, reason) in [
        (
            "sensor_id,this,is,garbage,with,six",
            "wrong column count: expected 4, got 6",
        ),
        ("sensor_id", "wrong column count: expected 4, got 1"),
        (
            "sensor_id,heart_rate,2024-06-19 13:58:37,80",
            "bad sensor id \"sensor_id\": not a positive integer",
        ),
    ] {
        assert_eq!(parse(line).unwrap_err().to_string(), reason, "{line:?}");
    }
}

#[test]
fn times_influxdb_cannot_store_are_impossible() {
    // i64::MAX ns is 2262-04-11T23:47:16.854775807Z, i64::MIN ns
    // 1677-09-21T00:12:43.145224192Z; InfluxDB refuses both and MIN + 1.
    let at = |time: &str| parse(&format!("1,heart_rate,{time},80"));
    for time in [
        "2262-04-11T23:47:16.854775807Z",
        "1677-09-21T00:12:43.145224192Z",
        "1677-09-21T00:12:43.145224193Z",
    ] {
        assert_eq!(
            at(time).unwrap_err().to_string(),
            format!("impossible time \"{time}\": outside 1677-09-21..2262-04-11 UTC")
        );
    }
    let last = at("2262-04-11T23:47:16.854775806Z").unwrap().unwrap();
    assert_eq!(last.time_ns(), i64::MAX - 1);
    let first = at("1677-09-21T00:12:43.145224194Z").unwrap().unwrap();
    assert_eq!(first.time_ns(), i64::MIN + 2);
}

#[test]
fn every_rejection_has_its_exact_text_and_code() {
    let long = format!("1,heart_rate,2024-06-19 13:58:37,80{}", " ".repeat(4100));
    // Lines that are not UTF-8 or too long to show; every other case is a
    // row of tests/data/rejections.jsonl: the line, its exact text, its code.
    let mut cases: Vec<(Vec<u8>, String, String)> = vec![
        (
            long.into_bytes(),
            "line too long: 4135 bytes, limit 4096".into(),
            "too_long".into(),
        ),
        (
            b"1,heart_rate,2024-06-19 13:58:37,\xff80".to_vec(),
            "not valid UTF-8".into(),
            "not_utf8".into(),
        ),
        (
            b"\xc3\x28".to_vec(),
            "not valid UTF-8".into(),
            "not_utf8".into(),
        ),
    ];
    let table = std::fs::read_to_string(common::tests_data().join("rejections.jsonl")).unwrap();
    for row in table.lines() {
        let row: serde_json::Value = serde_json::from_str(row).unwrap();
        let field = |name: &str| row[name].as_str().unwrap().to_owned();
        cases.push((field("line").into_bytes(), field("reason"), field("code")));
    }
    assert_eq!(cases.len(), 45);
    let parser = common::parser();
    let mut codes_seen = std::collections::BTreeSet::new();
    for (line, text, code) in cases {
        let shown = String::from_utf8_lossy(&line).into_owned();
        let rejection = parser.parse(&line).expect_err(&shown);
        assert_eq!(rejection.to_string(), text, "{shown:?}");
        assert_eq!(rejection.reason_code(), code, "{shown:?}");
        assert!(Rejection::CODES.contains(&code.as_str()));
        codes_seen.insert(code);
    }
    // Every code but the csv crate's own error (unreachable once the text is
    // UTF-8 and free of line breaks) is exercised above.
    let all: std::collections::BTreeSet<_> =
        Rejection::CODES.iter().map(|c| c.to_string()).collect();
    let missing: Vec<_> = all.difference(&codes_seen).collect();
    // `future_time` needs a clock: its own test below.
    assert_eq!(missing, vec!["bad_csv", "future_time"]);
}

#[test]
fn range_bounds_are_inclusive() {
    assert_eq!(reading("1,heart_rate,2024-06-19 13:58:37,30").value, 30);
    assert_eq!(reading("1,heart_rate,2024-06-19 13:58:37,250").value, 250);
    assert_eq!(reading("1,heart_rate,2024-06-19 13:58:37,+80").value, 80);
}

#[test]
fn a_line_of_1135_bytes_is_within_the_default_limit() {
    // The aggregator has always accepted lines up to 4096 bytes; `replay`, with
    // the parser's default, refused this one as too long (limit 1024).
    let line = "1,heart_rate,2024-06-19 13:58:37,80";
    let padded = format!("{line}{}", " ".repeat(1135 - line.len()));
    assert_eq!(parse(&padded).unwrap().unwrap().value, 80);
}

#[test]
fn length_bound_is_on_the_raw_bytes() {
    let line = "1,heart_rate,2024-06-19 13:58:37,80";
    let padded = format!("{line}{}", " ".repeat(MAX_LINE_BYTES - line.len()));
    assert_eq!(padded.len(), MAX_LINE_BYTES);
    assert!(parse(&padded).unwrap().is_some());
    let small = Parser::new(common::kinds()).with_max_line_bytes(10);
    assert_eq!(
        small.parse(line.as_bytes()).unwrap_err().to_string(),
        "line too long: 35 bytes, limit 10"
    );
}

#[test]
fn other_kinds_follow_their_own_rules() {
    let parser = Parser::new(vec![
        KindRule::new("heart_rate", 30, 250),
        KindRule::new("spo2", 70, 100),
    ]);
    let r = parser
        .parse(b"9,spo2,2024-06-19 13:58:37Z,97")
        .unwrap()
        .unwrap();
    assert_eq!((r.sensor_id, r.kind.as_str(), r.value), (9, "spo2", 97));
    assert_eq!(
        parser
            .parse(b"9,spo2,2024-06-19 13:58:37Z,120")
            .unwrap_err()
            .to_string(),
        "value 120 out of range 70..=100 for spo2"
    );
}

#[test]
fn leap_second_is_the_next_instant() {
    let leap = reading("1,heart_rate,2016-12-31T23:59:60Z,80");
    let next = reading("1,heart_rate,2017-01-01 00:00:00,80");
    assert_eq!(leap.key(), next.key());
    assert_eq!(leap.time, next.time);
}

#[test]
fn reading_json_round_trips() {
    let r = reading("4,heart_rate,2024-06-19 13:58:37.123456789,66");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        r#"{"sensor_id":4,"kind":"heart_rate","time":"2024-06-19T13:58:37.123456789Z","value":66}"#
    );
    assert_eq!(serde_json::from_str::<Reading>(&json).unwrap(), r);
}

mod never_panics {
    //! The fuzz target's property, on stable and in every test run: whatever
    //! the bytes, `parse` answers; and what it accepts is valid.

    use proptest::prelude::*;

    fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(Some(r)) = super::common::parser().parse(bytes) {
            prop_assert!(r.sensor_id > 0);
            prop_assert!((30..=250).contains(&r.value));
            prop_assert_eq!(r.time, chrono::DateTime::from_timestamp_nanos(r.time_ns()));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1100)) {
            check(&bytes)?;
        }

        #[test]
        fn on_line_shaped_text(
            line in r#"[ "{}\\r\n]{0,2}[0-9+-]{0,4},(heart_rate|x|),[0-9T:. Z+-]{0,40},[0-9+.-]{0,5}[ "\r\n]{0,2}"#
        ) {
            check(line.as_bytes())?;
        }

        #[test]
        fn on_mutated_seed_lines(
            pos in 0_usize..45,
            byte in any::<u8>(),
            cut in 0_usize..46,
        ) {
            let mut line = b"1,heart_rate,2024-06-19 13:58:37.074766,80".to_vec();
            let pos = pos % line.len();
            line[pos] = byte;
            line.truncate(cut.min(line.len()));
            check(&line)?;
        }
    }
}

#[test]
fn a_time_ahead_of_the_clock_by_more_than_the_limit_is_refused() {
    let parser = common::parser().with_max_ahead(std::time::Duration::from_secs(300));
    let now = Some(utc("2026-11-29T12:00:00Z"));
    let at = |time: &str| parser.parse_at(format!("7,heart_rate,{time},80").as_bytes(), now);
    // Up to the limit (inclusive), and anything in the past, is a reading.
    assert_eq!(
        at("2026-11-29 12:05:00").unwrap().unwrap().time,
        utc("2026-11-29T12:05:00Z")
    );
    assert!(at("2020-01-01 00:00:00").unwrap().is_some());
    // A second, and a year, beyond: refused with the reason and its own code.
    let beyond = at("2026-11-29 12:05:00.000000001").unwrap_err();
    assert_eq!(
        beyond.to_string(),
        "time \"2026-11-29 12:05:00.000000001\" is 300 s ahead of the clock (at most 300 s allowed)"
    );
    assert_eq!(beyond.reason_code(), "future_time");
    let year = at("2027-11-29T12:00:00+00:00").unwrap_err();
    assert_eq!(
        year.to_string(),
        "time \"2027-11-29T12:00:00+00:00\" is 31536000 s ahead of the clock (at most 300 s allowed)"
    );
    // The pipeline's furthest time, which pinned last_value.
    assert_eq!(
        at("2262-04-11 23:47:16").unwrap_err().reason_code(),
        "future_time"
    );
    // An invalid value is reported as such first (rules in order).
    assert_eq!(
        at("2027-11-29 12:00:00").map_err(|e| e.reason_code()),
        Err("future_time")
    );
    let both = parser
        .parse_at(b"7,heart_rate,2027-11-29 12:00:00,999", now)
        .unwrap_err();
    assert_eq!(both.reason_code(), "value_out_of_range");
    // Without a clock limit (the default), only the representable range applies.
    assert!(common::parser()
        .parse(b"7,heart_rate,2262-04-11 23:47:16,80")
        .unwrap()
        .is_some());
    // parse() reads the real clock: a time a day ahead of it is refused.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d %H:%M:%S");
    let line = format!("7,heart_rate,{tomorrow},80");
    assert_eq!(
        parser.parse(line.as_bytes()).unwrap_err().reason_code(),
        "future_time"
    );
}
