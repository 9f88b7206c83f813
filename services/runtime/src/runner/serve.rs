//! The wiring every transactional stage's binary shares after its own
//! settings: start, then run its [`Transform`] on a blocking thread.

use std::sync::Arc;

use super::{run_transactional, Output, StageSpec, Transform};
use crate::config::{ConsumerSettings, Layers, StageSettings, TxnSettings};
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// A transactional stage (aggregator, processor), started: logging and
/// metrics are up, signals are heard; what is left is to build its
/// [`Transform`] and [`TransactionalStage::run`] it.
pub struct TransactionalStage {
    common: StageSettings,
    spec: StageSpec,
    notifier: Arc<Notifier>,
    shutdown: Shutdown,
}

impl TransactionalStage {
    /// Extracts the consumer and transaction settings from `layers`, starts
    /// logging and metrics ([`Layers::start`]) and listens for signals. The
    /// stage's client id is `name`, its input `input_topic`. Needs a Tokio
    /// runtime.
    pub fn start(layers: &Layers, name: &str, input_topic: &str) -> anyhow::Result<Self> {
        let consumer: ConsumerSettings = layers.extract()?;
        let transactional_id = layers.extract::<TxnSettings>()?.transactional_id()?;
        let common = layers.start()?;
        let spec = StageSpec {
            name: name.into(),
            input_topic: input_topic.into(),
            group_id: consumer.group_id.clone(),
            transactional_id: Some(transactional_id),
            limits: consumer.limits(),
        };
        Ok(Self {
            common,
            spec,
            notifier: Arc::new(Notifier::from_env()),
            shutdown: Shutdown::listen()?,
        })
    }

    /// Runs `transform` with [`run_transactional`] until shutdown, or ends
    /// the process if the stage refuses to run ([`super::Refused`]). The Kafka
    /// loop is synchronous (librdkafka's transactional calls block); it runs
    /// on a blocking thread while the async runtime serves signals and
    /// metrics.
    pub async fn run<T>(self, mut transform: T) -> anyhow::Result<()>
    where
        T: Transform<Output = Output> + Send + 'static,
    {
        let Self {
            common,
            spec,
            notifier,
            shutdown,
        } = self;
        let result = tokio::task::spawn_blocking(move || {
            run_transactional(&common.kafka, &spec, &mut transform, &shutdown, &notifier)
        })
        .await?;
        super::exit_if_refused(result)?;
        tracing::info!("stopped");
        Ok(())
    }
}
