//! Recognising a GitLab agent (agentk) installation.
