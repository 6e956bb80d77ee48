//! Integration tests: the real `gala-gopher` binary on temporary configs,
//! scraped over real HTTP and checked with the real `promtool`.

#![expect(clippy::unwrap_used, reason = "tests panic on failure by design")]

mod container;
mod harness;

mod agent;
mod ansible;
mod bad_input;
mod cgroups;
mod cprobes;
mod ctl;
mod dashboards;
mod deploy;
mod deps;
mod dnsmasq_link;
mod ebpf;
mod events;
mod haproxy_link;
mod kafka;
mod legacy_bin;
mod legacy_c;
mod legacy_conf;
mod middleware;
mod nginx_link;
mod promlint;
mod repo_hygiene;
mod rest;
mod rpm;
mod service;
mod snoopers;
mod soak;
mod spider;
mod spider_group;
mod spider_identity;
mod spider_notify;
mod spider_web;
mod systemd_notify;
mod tail;
