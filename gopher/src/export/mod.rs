//! Outputs: Prometheus (pull, reads the store) and the push sinks (log
//! files, Kafka) behind one [`sink::Sink`] trait.
//! Outputs know nothing about probes: they read the store or take the flows
//! that the ingress and the metadata ticker offer them.

pub mod json;
pub mod kafka;
pub mod logfile;
pub mod partition;
pub mod prometheus;
pub mod sink;
