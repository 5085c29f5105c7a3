//! The GitLab agent configuration file (`.gitlab/agents/<name>/config.yaml`).
