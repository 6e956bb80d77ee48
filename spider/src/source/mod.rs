//! Where records come from: a Kafka consumer group on the metric topic, or
//! the metric log files of a local gala-gopher.

pub mod kafka;
pub mod logfile;

use crate::config::{Config, DataSource};
use crate::service::Shared;

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// librdkafka refused the configuration.
    #[error("kafka: cannot create the consumer for broker = \"{broker}\", group_id = \"{group}\": {reason}")]
    Kafka {
        /// `[kafka] broker`.
        broker: String,
        /// `[kafka] group_id`.
        group: String,
        /// librdkafka's message.
        reason: String,
    },
}

/// Runs the configured source on this thread until shutdown.
pub fn run(cfg: &Config, shared: &Shared) -> Result<(), SourceError> {
    match cfg.global.data_source {
        DataSource::Kafka => kafka::run(&cfg.kafka, shared),
        DataSource::Logfile => {
            logfile::run(&cfg.logfile, shared);
            Ok(())
        }
    }
}
