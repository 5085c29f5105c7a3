//! The identities the GitLab agent impersonates for CI/CD jobs and users.
