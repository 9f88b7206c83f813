//! DLQ records keep the raw bytes losslessly, up to a bound.

mod common;

use pulsewire_model::dlq::{DlqRecord, MAX_RAW_BYTES, MAX_REASON_BYTES};

#[test]
fn utf8_raw_is_text_and_other_bytes_are_base64_too() {
    let parser = common::parser();
    let raw = b"1,heart_rate,2024-06-19 13:58:37,300";
    let rejection = parser.parse(raw).unwrap_err();
    let record = DlqRecord::rejected("aggregator", &rejection, raw, "heartrate.raw", 2, 41);
    assert_eq!(
        serde_json::to_string(&record).unwrap(),
        r#"{"stage":"aggregator","code":"value_out_of_range","reason":"value 300 out of range 30..=250 for heart_rate","raw":"1,heart_rate,2024-06-19 13:58:37,300","topic":"heartrate.raw","partition":2,"offset":41}"#
    );
    assert_eq!(record.raw_bytes().unwrap().unwrap(), raw);

    let binary = b"\x00\xff\xfe1,heart_rate\r";
    let rejection = parser.parse(binary).unwrap_err();
    let record = DlqRecord::rejected("aggregator", &rejection, binary, "heartrate.raw", 0, 7);
    assert_eq!(record.reason, "not valid UTF-8");
    assert_eq!(record.code, "not_utf8");
    assert_eq!(
        record.raw_base64.as_deref(),
        Some("AP/+MSxoZWFydF9yYXRlDQ==")
    );
    let back: DlqRecord = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
    assert_eq!(back.raw_bytes().unwrap().unwrap(), binary);
}

#[test]
fn a_huge_line_keeps_its_start_length_and_hash() {
    // What a file often ends with after an unclean shutdown: 1.2 MB of NULs,
    // ~7.2 MB as escaped JSON, far over Kafka's 1,000,000-byte message limit.
    let nul = vec![0u8; 1_200_000];
    let record = DlqRecord::new(
        "aggregator",
        "too_long",
        "line too long",
        &nul,
        "heartrate.raw",
        1,
        9,
    );
    let json = serde_json::to_vec(&record).unwrap();
    assert!(json.len() < 30_000, "{} bytes", json.len());
    assert_eq!(record.raw, "\0".repeat(MAX_RAW_BYTES));
    assert_eq!(record.raw_length, Some(1_200_000));
    // sha256 of 1,200,000 zero bytes (Python's hashlib).
    assert_eq!(
        record.raw_sha256.as_deref(),
        Some("61fff2faaf6ddcfa769eb8b37aeca30342bfa713f535114c6217d14b000aecb3")
    );
    assert!(!record.is_whole());
    assert!(record.raw_bytes().is_none(), "a prefix is not the line");
    let back: DlqRecord = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, record);

    // Not UTF-8: the kept start in base64 too, still bounded.
    let binary = vec![0xffu8; 1_200_000];
    let record = DlqRecord::new(
        "aggregator",
        "not_utf8",
        "not valid UTF-8",
        &binary,
        "heartrate.raw",
        1,
        10,
    );
    assert!(serde_json::to_vec(&record).unwrap().len() < 30_000);
    assert_eq!(record.raw_length, Some(1_200_000));

    // A UTF-8 line is cut before a character that would not fit whole.
    let text = format!("{}é{}", "a".repeat(MAX_RAW_BYTES - 1), "b".repeat(200_000));
    let record = DlqRecord::new(
        "aggregator",
        "too_long",
        "line too long",
        text.as_bytes(),
        "t",
        0,
        0,
    );
    assert_eq!(record.raw, "a".repeat(MAX_RAW_BYTES - 1));
    assert_eq!(record.raw_base64, None);
    assert_eq!(record.raw_length, Some(text.len() as u64));

    // A line of exactly the bound is whole.
    let line = vec![b'x'; MAX_RAW_BYTES];
    let record = DlqRecord::new("aggregator", "too_long", "r", &line, "t", 0, 0);
    assert!(record.is_whole());
    assert_eq!(record.raw_bytes().unwrap().unwrap(), line);
}

#[test]
fn a_long_reason_is_cut_at_a_character() {
    let reason = "é".repeat(MAX_REASON_BYTES);
    let record = DlqRecord::new("uploader", "influx_refused", reason, b"x", "t", 0, 0);
    assert_eq!(record.reason, "é".repeat(MAX_REASON_BYTES / 2));
}

#[test]
fn a_record_written_before_codes_reads_as_unknown() {
    let old = r#"{"stage":"aggregator","reason":"empty line","raw":"","topic":"heartrate.raw","partition":0,"offset":3}"#;
    let record: DlqRecord = serde_json::from_str(old).unwrap();
    assert_eq!(record.code, pulsewire_model::dlq::UNKNOWN_CODE);
    assert_eq!(record.reason, "empty line");
    assert_eq!(record.offset, 3);
}
