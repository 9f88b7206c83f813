//! DLQ records keep the raw bytes losslessly.

mod common;

use pulsewire_model::dlq::DlqRecord;

#[test]
fn utf8_raw_is_text_and_other_bytes_are_base64_too() {
    let parser = common::parser();
    let raw = b"1,heart_rate,2024-06-19 13:58:37,300";
    let rejection = parser.parse(raw).unwrap_err();
    let record = DlqRecord::rejected("aggregator", &rejection, raw, "heartrate.raw", 2, 41);
    assert_eq!(
        serde_json::to_string(&record).unwrap(),
        r#"{"stage":"aggregator","reason":"value 300 out of range 30..=250 for heart_rate","raw":"1,heart_rate,2024-06-19 13:58:37,300","topic":"heartrate.raw","partition":2,"offset":41}"#
    );
    assert_eq!(record.raw_bytes().unwrap(), raw);

    let binary = b"\x00\xff\xfe1,heart_rate\r";
    let rejection = parser.parse(binary).unwrap_err();
    let record = DlqRecord::rejected("aggregator", &rejection, binary, "heartrate.raw", 0, 7);
    assert_eq!(record.reason, "not valid UTF-8");
    assert_eq!(
        record.raw_base64.as_deref(),
        Some("AP/+MSxoZWFydF9yYXRlDQ==")
    );
    let back: DlqRecord = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
    assert_eq!(back.raw_bytes().unwrap(), binary);
}
