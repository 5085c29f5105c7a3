//! fluxgate: a Kubernetes admission webhook that enforces GitLab's best practices for GitOps
//! with Flux and the GitLab agent for Kubernetes.
//!
//! One engine ([`engine::Engine`]) judges requests with the [`policy`] modules; the webhook
//! (`server`), the audit scan and `fluxgate check` differ only in where requests come from
//! and where verdicts go.

pub mod admission;
pub mod audit;
pub mod budget;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod finding;
pub mod flux;
pub mod gitlab;
pub mod json_view;
pub mod kubelet;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod rbac;
pub mod report;
pub mod selector;
pub mod server;
pub mod tls;
