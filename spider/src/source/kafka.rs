//! The Kafka source: a consumer GROUP on the metric topic, so that several
//! spiders share its partitions (each record reaches one of them). Offsets
//! are committed automatically. Broker trouble is logged once per outage
//! and counted; librdkafka reconnects by itself.

use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use super::SourceError;
use crate::config;
use crate::service::{now_ms, Shared};

/// Messages taken per lock of the builder.
const BATCH: usize = 512;

/// Consumes until shutdown.
pub fn run(cfg: &config::Kafka, shared: &Shared) -> Result<(), SourceError> {
    let err = |reason: String| SourceError::Kafka {
        broker: cfg.broker.clone(),
        group: cfg.group_id.clone(),
        reason,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.broker)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", &cfg.auto_offset_reset)
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set_log_level(RDKafkaLogLevel::Critical)
        .create()
        .map_err(|e| err(e.to_string()))?;
    consumer
        .subscribe(&[cfg.topic.as_str()])
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(broker = %cfg.broker, topic = %cfg.topic, group = %cfg.group_id, "kafka: consuming");
    let mut failing = false;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    while !shared.stopping() {
        let mut wait = Duration::from_millis(200);
        while batch.len() < BATCH {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    if failing {
                        tracing::info!(topic = %cfg.topic, "kafka: records flow again");
                        failing = false;
                    }
                    batch.push(m.payload().unwrap_or_default().to_vec());
                    wait = Duration::ZERO;
                }
                Some(Err(e)) => {
                    shared
                        .stats
                        .source_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(broker = %cfg.broker, error = %e, "kafka: cannot consume; retrying");
                        failing = true;
                    }
                    break;
                }
                None => break,
            }
        }
        if !batch.is_empty() {
            shared.ingest(batch.iter().map(Vec::as_slice), now_ms());
            batch.clear();
        }
    }
    Ok(())
}
