//! Fuzz target for the line parser: any bytes from the raw topic must give a
//! reading, a skip or a rejection — never a panic — and an accepted reading
//! must satisfy what the rest of the pipeline relies on.

#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use pulsewire_model::parse::{KindRule, Parser, MAX_LINE_BYTES};

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new(vec![
        KindRule::new("heart_rate", 30, 250),
        KindRule::new("spo2", 70, 100),
    ]);
    match parser.parse(data) {
        Ok(Some(reading)) => {
            assert!(data.len() <= MAX_LINE_BYTES);
            assert!(reading.sensor_id > 0);
            let rule = parser
                .kinds()
                .iter()
                .find(|rule| rule.name == reading.kind)
                .expect("kind is configured");
            assert!((rule.min..=rule.max).contains(&reading.value));
            // The event time is exactly its identity's nanoseconds.
            assert_eq!(
                reading.time,
                DateTime::from_timestamp_nanos(reading.time_ns())
            );
        }
        Ok(None) => {}
        Err(rejection) => {
            assert!(!rejection.to_string().is_empty());
            assert!(pulsewire_model::parse::Rejection::CODES.contains(&rejection.reason_code()));
        }
    }
});
