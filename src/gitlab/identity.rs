//! The identities the GitLab agent impersonates, as they appear in RBAC subjects.
//!
//! With `ci_access ... access_as: ci_job` the agent acts for a CI/CD job as user
//! `gitlab:ci_job:<job id>` with groups `gitlab:ci_job`, `gitlab:group:<id>`,
//! `gitlab:group_env_tier:<id>:<tier>`, `gitlab:project:<id>`, `gitlab:project_env:<id>:<slug>`
//! and `gitlab:project_env_tier:<id>:<tier>`. With `user_access ... access_as: user` it acts
//! for a dashboard user as `gitlab:user:<username>` with groups `gitlab:user`,
//! `gitlab:project_role:<id>:<role>` and `gitlab:group_role:<id>:<role>`.
//!
//! Parsing is exact: a name is a GitLab identity only if it has one of these shapes. Names
//! that merely look alike (`gitlab-ci`, `xgitlab:ci_job`, `gitlab:ci_jobs`,
//! `gitlab:project:abc`) are never sent by the agent, so they grant nothing to its jobs and
//! users and are not judged as GitLab identities.

use std::fmt;

/// Every GitLab identity starts with this.
pub const PREFIX: &str = "gitlab:";

/// An environment tier, as GitLab names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Production,
    Staging,
    Testing,
    Development,
    Other,
}

impl Tier {
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "production" => Some(Tier::Production),
            "staging" => Some(Tier::Staging),
            "testing" => Some(Tier::Testing),
            "development" => Some(Tier::Development),
            "other" => Some(Tier::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Production => "production",
            Tier::Staging => "staging",
            Tier::Testing => "testing",
            Tier::Development => "development",
            Tier::Other => "other",
        }
    }
}

/// Whether the agent sends an identity as the user or as one of the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Group,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "User",
            SubjectKind::Group => "Group",
        }
    }
}

/// A GitLab identity, borrowed from the subject name it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// Group `gitlab:ci_job`: every CI/CD job the agent serves.
    AllCiJobs,
    /// Group `gitlab:user`: every dashboard user the agent serves.
    AllUsers,
    /// User `gitlab:ci_job:<job id>`: one job, gone when the job ends.
    CiJob { job_id: u64 },
    /// User `gitlab:user:<username>`.
    User { username: &'a str },
    /// Group `gitlab:group:<id>`: jobs of projects in this group or its subgroups.
    Group { group_id: u64 },
    /// Group `gitlab:group_env_tier:<id>:<tier>`.
    GroupEnvTier { group_id: u64, tier: Tier },
    /// Group `gitlab:project:<id>`.
    Project { project_id: u64 },
    /// Group `gitlab:project_env:<id>:<environment slug>`.
    ProjectEnv {
        project_id: u64,
        environment: &'a str,
    },
    /// Group `gitlab:project_env_tier:<id>:<tier>`.
    ProjectEnvTier { project_id: u64, tier: Tier },
    /// Group `gitlab:project_role:<id>:<role>` (user access).
    ProjectRole { project_id: u64, role: &'a str },
    /// Group `gitlab:group_role:<id>:<role>` (user access).
    GroupRole { group_id: u64, role: &'a str },
}

impl<'a> Identity<'a> {
    /// Parses an RBAC subject name. `None` for anything the agent never sends.
    pub fn parse(name: &'a str) -> Option<Identity<'a>> {
        let rest = name.strip_prefix(PREFIX)?;
        let (head, tail) = match rest.split_once(':') {
            Some((head, tail)) => (head, Some(tail)),
            None => (rest, None),
        };
        match (head, tail) {
            ("ci_job", None) => Some(Identity::AllCiJobs),
            ("user", None) => Some(Identity::AllUsers),
            ("ci_job", Some(id)) => Some(Identity::CiJob {
                job_id: parse_id(id)?,
            }),
            ("user", Some(username)) => Some(Identity::User {
                username: parse_word(username)?,
            }),
            ("group", Some(id)) => Some(Identity::Group {
                group_id: parse_id(id)?,
            }),
            ("project", Some(id)) => Some(Identity::Project {
                project_id: parse_id(id)?,
            }),
            ("group_env_tier", Some(tail)) => {
                let (id, tier) = tail.split_once(':')?;
                Some(Identity::GroupEnvTier {
                    group_id: parse_id(id)?,
                    tier: Tier::parse(tier)?,
                })
            }
            ("project_env_tier", Some(tail)) => {
                let (id, tier) = tail.split_once(':')?;
                Some(Identity::ProjectEnvTier {
                    project_id: parse_id(id)?,
                    tier: Tier::parse(tier)?,
                })
            }
            ("project_env", Some(tail)) => {
                let (id, slug) = tail.split_once(':')?;
                Some(Identity::ProjectEnv {
                    project_id: parse_id(id)?,
                    environment: parse_word(slug)?,
                })
            }
            ("project_role", Some(tail)) => {
                let (id, role) = tail.split_once(':')?;
                Some(Identity::ProjectRole {
                    project_id: parse_id(id)?,
                    role: parse_word(role)?,
                })
            }
            ("group_role", Some(tail)) => {
                let (id, role) = tail.split_once(':')?;
                Some(Identity::GroupRole {
                    group_id: parse_id(id)?,
                    role: parse_word(role)?,
                })
            }
            _ => None,
        }
    }

    /// Covers every job or every user the agent serves.
    pub fn is_catch_all(self) -> bool {
        matches!(self, Identity::AllCiJobs | Identity::AllUsers)
    }

    /// A single CI/CD job: ephemeral, so a binding to it outlives its purpose.
    pub fn is_per_job(self) -> bool {
        matches!(self, Identity::CiJob { .. })
    }

    /// Jobs deploying to production environments.
    pub fn is_production(self) -> bool {
        matches!(
            self,
            Identity::GroupEnvTier {
                tier: Tier::Production,
                ..
            } | Identity::ProjectEnvTier {
                tier: Tier::Production,
                ..
            }
        )
    }

    /// How the agent presents this identity to the API server.
    pub fn kind(self) -> SubjectKind {
        match self {
            Identity::CiJob { .. } | Identity::User { .. } => SubjectKind::User,
            _ => SubjectKind::Group,
        }
    }

    /// Whom this identity covers, for messages.
    pub fn describe(self) -> String {
        match self {
            Identity::AllCiJobs => "every CI/CD job the agent serves".into(),
            Identity::AllUsers => "every GitLab user the agent serves".into(),
            Identity::CiJob { job_id } => format!("the single CI/CD job {job_id}"),
            Identity::User { username } => format!("GitLab user {username}"),
            Identity::Group { group_id } => format!("CI/CD jobs of GitLab group {group_id}"),
            Identity::GroupEnvTier { group_id, tier } => format!(
                "CI/CD jobs of GitLab group {group_id} deploying to {} environments",
                tier.as_str()
            ),
            Identity::Project { project_id } => {
                format!("CI/CD jobs of GitLab project {project_id}")
            }
            Identity::ProjectEnv {
                project_id,
                environment,
            } => format!(
                "CI/CD jobs of GitLab project {project_id} deploying to environment {environment}"
            ),
            Identity::ProjectEnvTier { project_id, tier } => format!(
                "CI/CD jobs of GitLab project {project_id} deploying to {} environments",
                tier.as_str()
            ),
            Identity::ProjectRole { project_id, role } => {
                format!("{role}s of GitLab project {project_id}")
            }
            Identity::GroupRole { group_id, role } => {
                format!("{role}s of GitLab group {group_id}")
            }
        }
    }
}

impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Identity::AllCiJobs => write!(f, "gitlab:ci_job"),
            Identity::AllUsers => write!(f, "gitlab:user"),
            Identity::CiJob { job_id } => write!(f, "gitlab:ci_job:{job_id}"),
            Identity::User { username } => write!(f, "gitlab:user:{username}"),
            Identity::Group { group_id } => write!(f, "gitlab:group:{group_id}"),
            Identity::GroupEnvTier { group_id, tier } => {
                write!(f, "gitlab:group_env_tier:{group_id}:{}", tier.as_str())
            }
            Identity::Project { project_id } => write!(f, "gitlab:project:{project_id}"),
            Identity::ProjectEnv {
                project_id,
                environment,
            } => write!(f, "gitlab:project_env:{project_id}:{environment}"),
            Identity::ProjectEnvTier { project_id, tier } => {
                write!(f, "gitlab:project_env_tier:{project_id}:{}", tier.as_str())
            }
            Identity::ProjectRole { project_id, role } => {
                write!(f, "gitlab:project_role:{project_id}:{role}")
            }
            Identity::GroupRole { group_id, role } => {
                write!(f, "gitlab:group_role:{group_id}:{role}")
            }
        }
    }
}

/// GitLab ids are decimal numbers.
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Usernames, environment slugs and role names: anything non-empty without a separator or
/// whitespace. Deliberately lenient: refusing a real name would leave it unjudged.
fn parse_word(s: &str) -> Option<&str> {
    if s.is_empty() || s.contains(':') || s.chars().any(char::is_whitespace) {
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_shape_parses_and_prints_back() {
        for name in [
            "gitlab:ci_job",
            "gitlab:user",
            "gitlab:ci_job:4711",
            "gitlab:user:jane.doe",
            "gitlab:group:12",
            "gitlab:group_env_tier:12:production",
            "gitlab:project:34",
            "gitlab:project_env:34:review-feature-x",
            "gitlab:project_env_tier:34:staging",
            "gitlab:project_role:123:maintainer",
            "gitlab:group_role:12:developer",
        ] {
            let identity = Identity::parse(name).unwrap_or_else(|| panic!("{name} parses"));
            assert_eq!(identity.to_string(), name);
        }
    }

    #[test]
    fn look_alikes_are_not_gitlab_identities() {
        for name in [
            "gitlab-ci",
            "xgitlab:ci_job",
            "gitlab:ci_jobs",
            "GITLAB:ci_job",
            "gitlab:",
            "gitlab:ci_job:",
            "gitlab:ci_job:abc",
            "gitlab:ci_job:-1",
            "gitlab:ci_job:+1",
            "gitlab:project:1:2",
            "gitlab:project_env:1",
            "gitlab:project_env:x:prod",
            "gitlab:project_env_tier:1:prod",
            "gitlab:group_env_tier:1:Production",
            "gitlab:user:",
            "gitlab:user:a:b",
            "gitlab:users",
            "system:masters",
            " gitlab:ci_job",
            "gitlab:ci_job ",
        ] {
            assert_eq!(Identity::parse(name), None, "{name}");
        }
    }

    #[test]
    fn catch_all_per_job_and_production_are_told_apart() {
        let parse = |n| Identity::parse(n).expect("parses");
        assert!(parse("gitlab:ci_job").is_catch_all());
        assert!(parse("gitlab:user").is_catch_all());
        assert!(parse("gitlab:ci_job:1").is_per_job());
        assert!(!parse("gitlab:project:1").is_catch_all());
        assert!(parse("gitlab:project_env_tier:1:production").is_production());
        assert!(parse("gitlab:group_env_tier:1:production").is_production());
        assert!(!parse("gitlab:project_env:1:production").is_production());
        assert_eq!(parse("gitlab:ci_job:1").kind(), SubjectKind::User);
        assert_eq!(parse("gitlab:ci_job").kind(), SubjectKind::Group);
    }
}
