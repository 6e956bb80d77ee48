//! Exporters: Prometheus (pull), log files and Kafka (push).
//! Exporters know nothing about probes: they read the store or subscribe to
//! the ingress's stream of accepted records.

pub mod json;
pub mod kafka;
pub mod logfile;
pub mod prometheus;
