use std::path::PathBuf;

use clap::Parser as _;
use pulsewire_model::parse::KindRule;

use super::*;

#[test]
fn builtin_pipeline_parses_with_expected_defaults() {
    let p = pipeline();
    assert_eq!(
        p.kafka.bootstrap_servers(),
        "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    );
    assert_eq!(p.topics.raw.name, "heartrate.raw");
    assert_eq!(p.topics.processor_state.name, "heartrate.processor-state");
    assert_eq!(p.services.processor.dedup_window, 1024);
    assert_eq!(p.services.aggregator.max_line_bytes, 4096);
    let s = &p.services;
    for (size, interval, idle) in [
        (
            s.aggregator.batch_size,
            s.aggregator.batch_interval_ms,
            s.aggregator.batch_idle_ms,
        ),
        (
            s.processor.batch_size,
            s.processor.batch_interval_ms,
            s.processor.batch_idle_ms,
        ),
        (
            s.uploader.batch_size,
            s.uploader.batch_interval_ms,
            s.uploader.batch_idle_ms,
        ),
    ] {
        // The idle gap only shortens a batch: it must fit in the interval.
        assert!(
            size >= 1 && idle >= 1 && idle < interval,
            "{size} {interval} {idle}"
        );
    }
    assert_eq!(p.influxdb.url(), "http://127.0.0.1:8086");
    assert_eq!(
        p.kind_rules(),
        vec![KindRule {
            name: "heart_rate".into(),
            min: 30,
            max: 250
        }]
    );
}

#[test]
fn pipeline_errors_name_the_key() {
    let broken = PIPELINE_TOML.replace("min = 30", "min = 300");
    let err = Pipeline::from_toml(&broken).unwrap_err().to_string();
    assert!(err.contains("kinds.heart_rate"), "{err}");
    let missing = PIPELINE_TOML.replace("[topics.dlq]", "[topics.other]");
    let err = format!("{:#}", Pipeline::from_toml(&missing).unwrap_err());
    assert!(err.contains("dlq"), "{err}");
}

/// A pipeline file in the temporary directory, removed on drop.
struct TempPipeline(PathBuf);

impl TempPipeline {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("pw-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn source(&self) -> PipelineSource {
        PipelineSource::choose(Some(&self.0), None)
    }

    fn flag(&self) -> [&str; 2] {
        ["--pipeline", self.0.to_str().unwrap()]
    }
}

impl Drop for TempPipeline {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn file_errors_name_the_key_and_the_file() {
    let file = TempPipeline::new(
        "bad-value",
        &PIPELINE_TOML.replace("batch_size = 5000", "batch_size = 0"),
    );
    let err = Pipeline::load(&file.source()).unwrap_err().to_string();
    assert!(
        err.contains("must be at least 1")
            && err.contains("services.uploader.batch_size")
            && err.contains(&file.0.display().to_string())
            && err.contains("--pipeline"),
        "{err}"
    );
    let file = TempPipeline::new(
        "bad-key",
        &PIPELINE_TOML.replace("dedup_window = ", "dedup_windw = "),
    );
    let err = Pipeline::load(&file.source()).unwrap_err().to_string();
    assert!(
        err.contains("dedup_windw") && err.contains(&file.0.display().to_string()),
        "{err}"
    );
    let env_named = PipelineSource::choose(None, Some("/nonexistent/pipeline.toml".into()));
    let err = format!("{:#}", Pipeline::load(&env_named).unwrap_err());
    assert!(
        err.contains("/nonexistent/pipeline.toml") && err.contains(PIPELINE_ENV),
        "{err}"
    );
}

#[derive(Debug, clap::Parser, serde::Serialize)]
struct Probe {
    #[command(flatten)]
    #[serde(flatten)]
    flags: ConsumerFlags,
}

fn parse(args: &[&str]) -> Result<Probe, clap::Error> {
    Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied()))
}

fn probe(args: &[&str]) -> Probe {
    parse(args).unwrap()
}

fn error_of(args: &[&str]) -> String {
    parse(args).unwrap_err().to_string()
}

fn builtin(env: &[(&str, &str)], flags: &Probe) -> anyhow::Result<Layers> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Layers::new(Stage::Uploader, env, flags)
}

#[test]
fn invalid_flags_are_named_in_the_error() {
    // The flags given, and what the error must say.
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--batch-size", "0"],
            &["--batch-size", "must be at least 1"],
        ),
        (&["--metrics-addr", "localhost"], &["--metrics-addr"]),
        (
            &["--bootstrap-servers", "a:1,b"],
            &["--bootstrap-servers", "`b`"],
        ),
        (&["--kafka-property", "nokey"], &["--kafka-property"]),
    ];
    for (args, said) in cases {
        let err = error_of(args);
        assert!(said.iter().all(|s| err.contains(s)), "{err}");
    }
}

#[test]
fn flags_default_to_the_pipeline() {
    let layers = builtin(&[], &probe(&["--kafka-property", "a=b=c"])).unwrap();
    let stage = layers.stage().unwrap();
    assert_eq!(
        stage.kafka.bootstrap_servers,
        pipeline().kafka.bootstrap_servers()
    );
    assert_eq!(
        stage.kafka.properties().collect::<Vec<_>>(),
        vec![("a", "b=c")]
    );
    assert_eq!(stage.metrics_addr.to_string(), "127.0.0.1:9303");
    assert_eq!(stage.log.log_level, "info");
    let consumer: ConsumerSettings = layers.extract().unwrap();
    assert_eq!(consumer.group_id, "pulsewire-uploader");
    assert_eq!(consumer.limits().max_records, 5000);
    assert_eq!(consumer.limits().max_wait.as_millis(), 200);
}

#[test]
fn kafka_properties_keep_list_values_whole() {
    let flags = probe(&[
        "--kafka-property",
        "debug=eos,broker,linger.ms=5",
        "--kafka-property",
        "sasl.mechanism=PLAIN",
    ]);
    let kafka = builtin(&[], &flags).unwrap().stage().unwrap().kafka;
    assert_eq!(
        kafka.properties().collect::<Vec<_>>(),
        vec![
            ("debug", "eos,broker"),
            ("linger.ms", "5"),
            ("sasl.mechanism", "PLAIN")
        ]
    );
    assert_eq!(
        parse_properties(",a=b"),
        Err("`` is not KEY=VALUE".to_string())
    );
    // The variable is one text, split the same way.
    let env = [("PULSEWIRE_KAFKA_PROPERTIES", "debug=eos,broker,acks=all")];
    let kafka = builtin(&env, &probe(&[])).unwrap().stage().unwrap().kafka;
    assert_eq!(
        kafka.properties().collect::<Vec<_>>(),
        vec![("debug", "eos,broker"), ("acks", "all")]
    );
}

#[test]
fn file_then_environment_then_flags() {
    let file = TempPipeline::new(
        "layers",
        &PIPELINE_TOML.replace("batch_size = 5000", "batch_size = 7"),
    );
    let size = |env: &[(&str, &str)], args: &[&str]| {
        builtin(env, &probe(&[&file.flag()[..], args].concat()))
            .unwrap()
            .extract::<ConsumerSettings>()
            .unwrap()
            .batch_size
    };
    assert_eq!(size(&[], &[]), 7);
    assert_eq!(size(&[("PULSEWIRE_BATCH_SIZE", "8")], &[]), 8);
    assert_eq!(
        size(&[("PULSEWIRE_BATCH_SIZE", "8")], &["--batch-size", "9"]),
        9
    );
    // A variable of another program's prefix, or none, is not a setting.
    assert_eq!(size(&[("BATCH_SIZE", "8"), ("X_BATCH_SIZE", "8")], &[]), 7);
}

#[test]
fn another_pipeline_file_changes_the_defaults() {
    #[derive(serde::Deserialize)]
    struct Topics {
        stats_topic: String,
        dlq_topic: String,
    }
    let file = TempPipeline::new(
        "topics",
        &PIPELINE_TOML.replace("\"heartrate.stats\"", "\"other.stats\""),
    );
    let topics: Topics = builtin(&[], &probe(&file.flag()))
        .unwrap()
        .extract()
        .unwrap();
    assert_eq!(topics.stats_topic, "other.stats");
    assert_eq!(topics.dlq_topic, "heartrate.dlq");
    // PULSEWIRE_PIPELINE names it as well; --pipeline wins over it.
    let env = [("PULSEWIRE_PIPELINE", file.0.to_str().unwrap())];
    let topics: Topics = builtin(&env, &probe(&[])).unwrap().extract().unwrap();
    assert_eq!(topics.stats_topic, "other.stats");
    let err = builtin(&env, &probe(&["--pipeline", "/nonexistent/p.toml"]))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("/nonexistent/p.toml (from --pipeline)"),
        "{err:#}"
    );
}

#[test]
fn bad_values_name_the_variable_or_the_file() {
    let err = builtin(&[("PULSEWIRE_BATCH_SIZE", "0")], &probe(&[]))
        .unwrap()
        .extract::<ConsumerSettings>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be at least 1")
            && err.contains("PULSEWIRE_BATCH_SIZE")
            && err.contains("environment"),
        "{err}"
    );
    let err = builtin(&[("PULSEWIRE_METRICS_ADDR", "nowhere")], &probe(&[]))
        .unwrap()
        .stage()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`nowhere` is not an IP:port") && err.contains("PULSEWIRE_METRICS_ADDR"),
        "{err}"
    );
    // A numeric text stays text: a group id of digits keeps its zeros.
    let consumer: ConsumerSettings = builtin(&[("PULSEWIRE_GROUP_ID", "007")], &probe(&[]))
        .unwrap()
        .extract()
        .unwrap();
    assert_eq!(consumer.group_id, "007");
}

#[test]
fn token_file_errors_name_flag_and_path() {
    let err = influx_token(Some(Path::new("/nonexistent/token")), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--influx-token-file /nonexistent/token"),
        "{err}"
    );
    let err = influx_token(None, None).unwrap_err().to_string();
    assert!(err.contains(INFLUX_TOKEN_ENV), "{err}");
    assert_eq!(influx_token(None, Some(" tok\n".into())).unwrap(), "tok");
    let dir = std::env::temp_dir().join(format!("pw-token-{}", std::process::id()));
    std::fs::write(&dir, "secret\n").unwrap();
    assert_eq!(
        influx_token(Some(&dir), Some("env".into())).unwrap(),
        "secret"
    );
    std::fs::remove_file(&dir).unwrap();
}

#[derive(Debug, clap::Parser, serde::Serialize)]
struct TxnProbe {
    #[command(flatten)]
    #[serde(flatten)]
    flags: TxnFlags,
}

fn txn(env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<TxnSettings> {
    let flags = TxnProbe::try_parse_from(std::iter::once("probe").chain(args.iter().copied()))?;
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Layers::new(Stage::Aggregator, env, &flags)?.extract()
}

#[test]
fn the_transactional_id_is_the_prefix_and_the_instance() {
    let id = |env: &[(&str, &str)], args: &[&str]| txn(env, args)?.transactional_id();
    assert_eq!(
        id(&[], &["--instance", "host-a-1"]).unwrap(),
        "pulsewire-aggregator-host-a-1"
    );
    let env = [("PULSEWIRE_INSTANCE", "host-b.2")];
    assert_eq!(id(&env, &[]).unwrap(), "pulsewire-aggregator-host-b.2");
    // The flag wins over the variable; the prefix is the file's unless set.
    assert_eq!(
        id(&env, &["--instance", "c_3"]).unwrap(),
        "pulsewire-aggregator-c_3"
    );
    let prefix = [("PULSEWIRE_TRANSACTIONAL_ID_PREFIX", "p")];
    assert_eq!(id(&prefix, &["--instance", "x"]).unwrap(), "p-x");
    // Two instances, two ids: neither fences the other.
    assert_ne!(
        id(&[], &["--instance", "a"]).unwrap(),
        id(&[], &["--instance", "b"]).unwrap()
    );
}

#[test]
fn a_missing_or_unsafe_instance_stops_the_stage_naming_it() {
    let err = txn(&[], &[]).unwrap().transactional_id().unwrap_err();
    assert_eq!(
        err.to_string(),
        "no instance name: pass --instance NAME or set PULSEWIRE_INSTANCE, unique among the \
         running instances of this stage and the same across its restarts (its \
         transactional.id is pulsewire-aggregator-NAME)"
    );
    let err = txn(&[], &["--instance", "a/b"]).unwrap_err().to_string();
    assert!(
        err.contains("--instance") && err.contains("`a/b` has '/'"),
        "{err}"
    );
    let err = txn(&[("PULSEWIRE_INSTANCE", "a b")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PULSEWIRE_INSTANCE") && err.contains("`a b` has ' '"),
        "{err}"
    );
    let err = txn(&[("PULSEWIRE_INSTANCE", "")], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("PULSEWIRE_INSTANCE") && err.contains("must not be empty"));
    let long = "x".repeat(MAX_INSTANCE_LEN + 1);
    assert_eq!(
        parse_instance(&long),
        Err(format!("must be at most {MAX_INSTANCE_LEN} characters"))
    );
    assert_eq!(parse_instance(&long[1..]), Ok(long[1..].to_string()));
}
