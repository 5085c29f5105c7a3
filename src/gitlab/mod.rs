//! What fluxgate knows about GitLab: the agent (agentk) and the identities it impersonates.

pub mod agent;
pub mod agent_config;
pub mod identity;
pub mod installation;
