//! gala-spider: the cluster topology service. It reads gala-gopher's
//! tcp_link and load-balancer records (Kafka, or a local agent's metric log
//! files), builds the process-level topology ([`topology`], pure and
//! incremental), and writes it to Neo4j ([`neo4j`]), a legacy REST API, a
//! JSON snapshot and a web page ([`server`]).
//!
//! Threads: one source thread folds records into the shared [`topology::Builder`];
//! one period thread snapshots it, publishes the snapshot and applies the
//! change to Neo4j; the HTTP server (tokio) serves the last snapshot.

pub mod config;
pub mod neo4j;
pub mod server;
pub mod service;
pub mod source;
pub mod stats;
pub mod topology;
pub mod web;
