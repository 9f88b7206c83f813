//! What every tool shares: the result type, the producer settings and a
//! send with back-pressure; and the topic admin (`mktopic`, `rmtopics`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord};

pub(crate) type Res = Result<(), Box<dyn std::error::Error>>;

/// The stages' producer settings (services/runtime/src/runner/client.rs): acks=all, idempotence,
/// linger.ms=5, and (for the passthrough) the same compression. The fillers stay
/// uncompressed, like Kafka Connect's default producer.
pub(crate) fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.num.messages", "10000");
    c
}

/// Sends with back-pressure: on a full local queue, serve delivery reports and retry.
pub(crate) fn send_retry(p: &BaseProducer, mut rec: BaseRecord<'_, [u8], [u8]>) -> Res {
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

pub(crate) fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    ClientConfig::new().set("bootstrap.servers", brokers).create()
}

pub(crate) fn mktopic(brokers: &str, names: &[String], compact: bool) -> Res {
    let a = admin(brokers)?;
    let policy = if compact { "compact" } else { "delete" };
    let new: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, 3, TopicReplication::Fixed(3))
                .set("min.insync.replicas", "2")
                .set("cleanup.policy", policy)
        })
        .collect();
    for r in futures::executor::block_on(a.create_topics(&new, &AdminOptions::new()))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("creating {t}: {e}").into()),
        }
    }
    // Wait until every new topic has leaders, so the first producer does not race creation.
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    for n in names {
        for _ in 0..100 {
            let md = c.fetch_metadata(Some(n), Duration::from_secs(5))?;
            let t = &md.topics()[0];
            if t.error().is_none() && t.partitions().len() == 3 && t.partitions().iter().all(|p| p.leader() >= 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

pub(crate) fn rmtopics(brokers: &str, prefixes: &[String]) -> Res {
    let a = admin(brokers)?;
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let md = c.fetch_metadata(None, Duration::from_secs(10))?;
    let doomed: Vec<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    if !doomed.is_empty() {
        futures::executor::block_on(a.delete_topics(&doomed, &AdminOptions::new()))?;
    }
    eprintln!("deleted {} topics", doomed.len());
    Ok(())
}
