//! The provisioning defaults and the flags every stage shares.
//!
//! `provisioning/pipeline.toml` is the one place where topic names, ports,
//! group ids and sizes are written; the NixOS modules and the local test stack
//! read the same file. It is compiled into every binary (`include_str!`) so a
//! service's flag defaults can never drift from what the appliance provisions:
//! an operator overrides a value with a flag or a `PULSEWIRE_*` variable, never
//! by editing a second copy.
//!
//! Flag values are checked by clap value parsers defined here, so a bad value
//! stops the service at start with a message that names the flag
//! (`invalid value '0' for '--batch-size <N>': must be at least 1`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;
use serde::Deserialize;

use pulsewire_model::parse::KindRule;

/// The text of `provisioning/pipeline.toml`, as built into this binary.
pub const PIPELINE_TOML: &str = include_str!("../../../provisioning/pipeline.toml");

/// `provisioning/pipeline.toml`, typed. Only the parts the services use are
/// declared; the rest (Connect, Grafana) is read by Nix and the local stack.
#[derive(Debug, Clone, Deserialize)]
pub struct Pipeline {
    pub kafka: Kafka,
    pub topics: Topics,
    pub services: Services,
    pub influxdb: Influxdb,
    pub connect: Connect,
    pub kinds: BTreeMap<String, KindSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kafka {
    pub brokers: u16,
    pub host: String,
    pub plaintext_port_base: u16,
}

impl Kafka {
    /// `host:port` of every broker's client listener, comma-separated: broker N
    /// (1-based) listens on `plaintext_port_base + 2*(N-1)`.
    pub fn bootstrap_servers(&self) -> String {
        (0..self.brokers)
            .map(|n| format!("{}:{}", self.host, self.plaintext_port_base + 2 * n))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Topic {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Topics {
    pub raw: Topic,
    pub readings: Topic,
    pub stats: Topic,
    pub dlq: Topic,
    pub processor_state: Topic,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Services {
    pub aggregator: Aggregator,
    pub processor: Processor,
    pub uploader: Uploader,
    pub simulator: Simulator,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Aggregator {
    pub group_id: String,
    pub transactional_id: String,
    pub metrics_port: u16,
    pub batch_size: usize,
    pub batch_interval_ms: u64,
    pub batch_idle_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Processor {
    pub group_id: String,
    pub transactional_id: String,
    pub metrics_port: u16,
    pub batch_size: usize,
    pub batch_interval_ms: u64,
    pub batch_idle_ms: u64,
    pub dedup_window: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Uploader {
    pub group_id: String,
    pub metrics_port: u16,
    pub batch_size: usize,
    pub batch_interval_ms: u64,
    pub batch_idle_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Simulator {
    pub metrics_port: u16,
    pub sensors: u32,
    pub rate_per_sensor: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Influxdb {
    pub port: u16,
    pub org: String,
    pub bucket: String,
}

impl Influxdb {
    /// The appliance's InfluxDB runs on the same host as everything else.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Connect {
    pub file: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KindSpec {
    pub min: i64,
    pub max: i64,
}

impl Pipeline {
    /// Parses a pipeline file; the error says which key is wrong.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let pipeline: Self = toml::from_str(text).context("provisioning/pipeline.toml")?;
        pipeline.validate()?;
        Ok(pipeline)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.kafka.brokers >= 1, "kafka.brokers must be at least 1");
        anyhow::ensure!(
            !self.kinds.is_empty(),
            "at least one [kinds.*] table is needed"
        );
        for (name, spec) in &self.kinds {
            anyhow::ensure!(
                spec.min <= spec.max,
                "kinds.{name}: min {} is above max {}",
                spec.min,
                spec.max
            );
        }
        Ok(())
    }

    /// The configured kinds as parser rules, in name order.
    pub fn kind_rules(&self) -> Vec<KindRule> {
        self.kinds
            .iter()
            .map(|(name, spec)| KindRule {
                name: name.clone(),
                min: spec.min,
                max: spec.max,
            })
            .collect()
    }
}

/// The pipeline this binary was built with. Parsed once; a broken file is a
/// build defect caught by the unit tests, so panicking here is acceptable.
pub fn pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        Pipeline::from_toml(PIPELINE_TOML).expect("built-in provisioning/pipeline.toml is valid")
    })
}

/// The pipeline's brokers as `--bootstrap-servers` default.
pub fn default_bootstrap_servers() -> &'static str {
    static SERVERS: OnceLock<String> = OnceLock::new();
    SERVERS.get_or_init(|| pipeline().kafka.bootstrap_servers())
}

/// `127.0.0.1:<port>`, the default of a service's `--metrics-addr`: the
/// metrics endpoint is only for the local scraper unless an operator opens it.
pub fn local_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The Kafka connection flags every Kafka-facing stage takes.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(
        long,
        env = "PULSEWIRE_BOOTSTRAP_SERVERS",
        value_name = "HOST:PORT,...",
        default_value = default_bootstrap_servers(),
        value_parser = parse_bootstrap
    )]
    pub bootstrap_servers: String,

    /// Extra librdkafka client properties, `KEY=VALUE[,KEY=VALUE...]`
    /// (repeatable; e.g. `security.protocol=SSL`). A comma starts a new
    /// property only where `KEY=` follows, so list values such as
    /// `debug=eos,broker` stay whole. Applied to every Kafka client of the
    /// stage, after Pulsewire's own settings, so use with care.
    #[arg(
        long = "kafka-property",
        env = "PULSEWIRE_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_parser = parse_properties
    )]
    pub properties: Vec<Properties>,
}

/// The `KEY=VALUE` pairs of one `--kafka-property`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties(pub Vec<(String, String)>);

impl KafkaArgs {
    /// Every extra property, in the order given.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties
            .iter()
            .flat_map(|p| p.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// Logging flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter when `RUST_LOG` is not set: a level (`error`, `warn`,
    /// `info`, `debug`, `trace`) or a tracing directive such as
    /// `info,rdkafka=debug`. `RUST_LOG`, when set, wins.
    #[arg(long, env = "PULSEWIRE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// clap parser: a comma-separated list of `host:port`.
pub fn parse_bootstrap(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("must list at least one host:port".into());
    }
    for server in value.split(',') {
        let server = server.trim();
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| format!("`{server}` is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{server}` is not host:port"));
        }
    }
    Ok(value.to_string())
}

/// clap parser: `KEY=VALUE`.
pub fn parse_property(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{value}` is not KEY=VALUE")),
    }
}

/// clap parser: `KEY=VALUE[,KEY=VALUE...]`, where a comma followed by
/// something that is not `KEY=` belongs to the value before it
/// (`debug=eos,broker,linger.ms=5` is two properties).
pub fn parse_properties(value: &str) -> Result<Properties, String> {
    fn starts_property(segment: &str) -> bool {
        segment.split_once('=').is_some_and(|(key, _)| {
            let key = key.trim();
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
    }
    let mut items: Vec<String> = Vec::new();
    for segment in value.split(',') {
        match items.last_mut() {
            Some(last) if !starts_property(segment) => {
                last.push(',');
                last.push_str(segment);
            }
            _ => items.push(segment.to_string()),
        }
    }
    items
        .iter()
        .map(|item| parse_property(item))
        .collect::<Result<_, _>>()
        .map(Properties)
}

/// clap parser: a socket address such as `127.0.0.1:9301` or `[::1]:9301`.
pub fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an IP:port socket address"))
}

/// clap parser: a count that must be at least 1 (batch sizes, windows).
pub fn parse_positive(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{value}` is not a whole number")),
    }
}

/// clap parser: milliseconds, at least 1.
pub fn parse_millis(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 (milliseconds)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{value}` is not a whole number of milliseconds")),
    }
}

/// clap parser: a non-empty name (topics, group ids, transactional ids).
pub fn parse_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_string())
    }
}

/// Where the InfluxDB token comes from: the file named by
/// `--influx-token-file` (systemd `LoadCredential`), else the
/// `PULSEWIRE_INFLUX_TOKEN` variable. Never a flag value, which `ps` would show.
pub const INFLUX_TOKEN_ENV: &str = "PULSEWIRE_INFLUX_TOKEN";

/// Reads the InfluxDB token. The error names the flag and the path so the
/// operator knows which credential is missing.
pub fn influx_token(file: Option<&Path>, env: Option<String>) -> anyhow::Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --influx-token-file {}", path.display()))?,
        None => env.unwrap_or_default(),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        match file {
            Some(path) => anyhow::bail!("--influx-token-file {} is empty", path.display()),
            None => anyhow::bail!(
                "no InfluxDB token: pass --influx-token-file PATH or set {INFLUX_TOKEN_ENV}"
            ),
        }
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

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

    #[derive(Debug, clap::Parser)]
    struct Probe {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[arg(long, value_parser = parse_positive, default_value = "1")]
        batch_size: usize,
        #[arg(long, value_parser = parse_socket_addr, default_value = "127.0.0.1:1")]
        metrics_addr: SocketAddr,
    }

    fn error_of(args: &[&str]) -> String {
        let mut argv = vec!["probe"];
        argv.extend_from_slice(args);
        Probe::try_parse_from(argv).unwrap_err().to_string()
    }

    #[test]
    fn invalid_flags_are_named_in_the_error() {
        let err = error_of(&["--batch-size", "0"]);
        assert!(
            err.contains("--batch-size") && err.contains("must be at least 1"),
            "{err}"
        );
        let err = error_of(&["--metrics-addr", "localhost"]);
        assert!(err.contains("--metrics-addr"), "{err}");
        let err = error_of(&["--bootstrap-servers", "a:1,b"]);
        assert!(
            err.contains("--bootstrap-servers") && err.contains("`b`"),
            "{err}"
        );
        let err = error_of(&["--kafka-property", "nokey"]);
        assert!(err.contains("--kafka-property"), "{err}");
    }

    #[test]
    fn flags_default_to_the_pipeline() {
        let probe = Probe::try_parse_from(["probe", "--kafka-property", "a=b=c"]).unwrap();
        assert_eq!(
            probe.kafka.bootstrap_servers,
            pipeline().kafka.bootstrap_servers()
        );
        assert_eq!(
            probe.kafka.properties().collect::<Vec<_>>(),
            vec![("a", "b=c")]
        );
    }

    #[test]
    fn kafka_properties_keep_list_values_whole() {
        let probe = Probe::try_parse_from([
            "probe",
            "--kafka-property",
            "debug=eos,broker,linger.ms=5",
            "--kafka-property",
            "sasl.mechanism=PLAIN",
        ])
        .unwrap();
        assert_eq!(
            probe.kafka.properties().collect::<Vec<_>>(),
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
}
