//! Per-review budgets: every review does bounded work, whatever its size.
//!
//! One [`Budget`] is made for each review (the webhook, `fluxgate check` and the audit scan
//! alike) and handed to every policy through [`crate::policy::Context::budget`]. Code that
//! loops over something the requester controls (identity patterns, RBAC rules and subjects,
//! aggregated roles) charges the budget as it goes and stops at the first error:
//!
//! ```
//! use fluxgate::budget::{Budget, Exceeded, Limits, Resource};
//!
//! fn judge_rules(rules: &[&str], budget: &Budget) -> Result<usize, Exceeded> {
//!     let mut broad = 0;
//!     for rule in rules {
//!         budget.charge(Resource::RbacRules, 1)?; // before the work it pays for
//!         broad += usize::from(rule.contains('*'));
//!     }
//!     Ok(broad)
//! }
//!
//! let budget = Budget::new(Limits::default().with(Resource::RbacRules, 2));
//! assert!(judge_rules(&["get", "*"], &budget).is_ok());
//! assert!(judge_rules(&["list"], &budget).is_err());
//! // The first error is remembered: the engine turns it into a denial naming the budget.
//! assert_eq!(budget.exceeded().map(|e| e.budget()), Some("rbac-rules"));
//! ```
//!
//! - [`Budget::charge`] counts `n` units of a [`Resource`] and fails when the review's limit
//!   is passed, when its deadline has passed, or (inline reviews) when the work is more than
//!   the request path does without moving to the evaluation pool.
//! - [`Budget::check`] fails on the deadline alone: call it in a long loop that has nothing
//!   to charge.
//! - Either error is sticky: a policy may bail out with `?` or simply return what it has;
//!   the engine sees [`Budget::exceeded`] after the policy returns and denies the review
//!   (fail closed) with [`Exceeded`]'s text, which names the budget. Findings a policy made
//!   before it stopped are kept.
//!
//! A policy never needs to know whether it runs inline or on the pool, nor to read a clock:
//! the budget does both. Charging is a few instructions; the clock is read only by budgets
//! with a deadline (pool and audit work), which are the ones that can run long.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// What a review's work is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Distinct `matchOIDCIdentity` issuer and subject patterns of one object.
    IdentityPatterns,
    /// Regular expressions compiled for this review (identity patterns not found in the
    /// memo): the slow step of judging an identity, never done on the request path's
    /// async workers.
    RegexCompilations,
    /// Bytes of the compiled programs of the identity patterns judged (memoised ones
    /// included, so that a verdict does not depend on what the memo holds).
    RegexBytes,
    /// RBAC rules judged: the object's own, and those of every role it binds or aggregates.
    RbacRules,
    /// RBAC subjects judged.
    RbacSubjects,
    /// ClusterRole aggregation followed: each role a selector picks up, each aggregator of a
    /// changed role.
    AggregationSteps,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::IdentityPatterns,
        Resource::RegexCompilations,
        Resource::RegexBytes,
        Resource::RbacRules,
        Resource::RbacSubjects,
        Resource::AggregationSteps,
    ];
    const COUNT: usize = Resource::ALL.len();

    /// The budget's name in messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::IdentityPatterns => "identity-patterns",
            Resource::RegexCompilations => "regex-compilations",
            Resource::RegexBytes => "regex-bytes",
            Resource::RbacRules => "rbac-rules",
            Resource::RbacSubjects => "rbac-subjects",
            Resource::AggregationSteps => "aggregation-steps",
        }
    }

    /// What was too much, for a person.
    fn describe(self, limit: u64) -> String {
        match self {
            Resource::IdentityPatterns => {
                format!("more than {limit} distinct matchOIDCIdentity patterns in one object")
            }
            Resource::RegexCompilations => {
                format!("more than {limit} regular expressions to compile")
            }
            Resource::RegexBytes => format!(
                "identity patterns whose compiled programs take more than {} KiB together",
                limit / 1024
            ),
            Resource::RbacRules => format!("more than {limit} RBAC rules to judge"),
            Resource::RbacSubjects => format!("more than {limit} RBAC subjects to judge"),
            Resource::AggregationSteps => {
                format!("more than {limit} steps of ClusterRole aggregation to follow")
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of each [`Resource`] one review may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits([u64; Resource::COUNT]);

impl Limits {
    /// The limits of every review. Each is far above what real objects need (Flux's and
    /// GitLab's examples name one or two identities; Kubernetes' largest aggregated
    /// ClusterRole, `admin`, has about 80 rules before CRDs add theirs), and low enough that
    /// the worst review within them is judged within the default deadline on one core
    /// (docs/RELIABILITY.md has the measurements).
    pub const DEFAULT: Limits = Limits([
        // IdentityPatterns
        128,
        // RegexCompilations: every distinct pattern, issuer and subject alike.
        128,
        // RegexBytes: 32 MiB of programs; one pattern may take 1 MiB.
        32 << 20,
        // RbacRules
        20_000,
        // RbacSubjects
        5_000,
        // AggregationSteps: across the review (ci-impersonation's resolver also stops each
        // walk at 4096 roles, with its own message).
        8_192,
    ]);

    /// What the webhook judges on its async workers before moving a review to the
    /// evaluation pool: no regex compilation (a memo hit costs none), and RBAC work a few
    /// times that of the largest default roles.
    pub const INLINE: Limits = Limits([
        Limits::DEFAULT.0[0],
        0,
        Limits::DEFAULT.0[2],
        2_000,
        500,
        200,
    ]);

    pub fn get(&self, resource: Resource) -> u64 {
        self.0[resource.index()]
    }

    /// These limits with one changed.
    pub fn with(mut self, resource: Resource, limit: u64) -> Self {
        self.0[resource.index()] = limit;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a review was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// The review needs more of a resource than any review may use: it is denied.
    #[error("the object needs {} (budget {resource})", resource.describe(*limit))]
    Limit { resource: Resource, limit: u64 },
    /// The review's deadline passed: the webhook has answered 503 already.
    #[error("judging it took longer than the {timeout:?} deadline (--eval-timeout-ms)")]
    Deadline { timeout: Duration },
    /// An inline review needs more work than the request path does: the webhook judges it
    /// again on the evaluation pool, under the full limits. Never seen by `check` or the
    /// audit scan, whose budgets are not inline.
    #[error("judging it needs more {resource} work than fluxgate does inline")]
    Offload { resource: Resource },
}

impl Exceeded {
    /// The budget's name (`deadline` for the deadline), for messages and metric labels.
    pub fn budget(&self) -> &'static str {
        match self {
            Exceeded::Limit { resource, .. } | Exceeded::Offload { resource } => resource.as_str(),
            Exceeded::Deadline { .. } => "deadline",
        }
    }
}

/// The work one review may still do. Not shared between threads: one review is judged on
/// one thread, so the counters are plain cells.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    /// Set for the webhook's first, inline attempt at a review.
    inline: Option<Limits>,
    deadline: Option<(Instant, Duration)>,
    used: [Cell<u64>; Resource::COUNT],
    exceeded: Cell<Option<Exceeded>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::DEFAULT)
    }
}

impl Budget {
    /// A budget with these limits and no deadline (`fluxgate check`, tests).
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            inline: None,
            deadline: None,
            used: Default::default(),
            exceeded: Cell::new(None),
        }
    }

    /// This budget, ending `timeout` after `started`.
    pub fn with_deadline(mut self, started: Instant, timeout: Duration) -> Self {
        self.deadline = Some((started + timeout, timeout));
        self
    }

    /// This budget for an inline attempt: past `allowance` (within the limits), the review
    /// stops with [`Exceeded::Offload`].
    pub fn inline(mut self, allowance: Limits) -> Self {
        self.inline = Some(allowance);
        self
    }

    /// Counts `n` units of `resource`; fails once the review is over a limit or past its
    /// deadline (and stays failed).
    #[inline]
    pub fn charge(&self, resource: Resource, n: u64) -> Result<(), Exceeded> {
        if let Some(exceeded) = self.exceeded.get() {
            return Err(exceeded);
        }
        let i = resource.index();
        let used = self.used[i].get().saturating_add(n);
        self.used[i].set(used);
        let limit = self.limits.0[i];
        if used > limit {
            return Err(self.stop(Exceeded::Limit { resource, limit }));
        }
        if let Some(allowance) = &self.inline
            && used > allowance.0[i]
        {
            return Err(self.stop(Exceeded::Offload { resource }));
        }
        self.check_deadline()
    }

    /// Fails once the review is past its deadline or was stopped before.
    #[inline]
    pub fn check(&self) -> Result<(), Exceeded> {
        if let Some(exceeded) = self.exceeded.get() {
            return Err(exceeded);
        }
        self.check_deadline()
    }

    #[inline]
    fn check_deadline(&self) -> Result<(), Exceeded> {
        match self.deadline {
            Some((at, timeout)) if Instant::now() >= at => {
                Err(self.stop(Exceeded::Deadline { timeout }))
            }
            _ => Ok(()),
        }
    }

    fn stop(&self, exceeded: Exceeded) -> Exceeded {
        self.exceeded.set(Some(exceeded));
        exceeded
    }

    /// Why the review was stopped, if it was.
    pub fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded.get()
    }

    /// How much of `resource` the review used so far.
    pub fn used(&self, resource: Resource) -> u64 {
        self.used[resource.index()].get()
    }

    /// The limit of `resource` in this budget.
    pub fn limit(&self, resource: Resource) -> u64 {
        self.limits.get(resource)
    }

    /// Whether this is the webhook's inline attempt.
    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_over_the_limit_fails_and_names_the_budget() {
        let budget = Budget::new(Limits::DEFAULT.with(Resource::IdentityPatterns, 3));
        assert!(budget.charge(Resource::IdentityPatterns, 3).is_ok());
        let err = budget
            .charge(Resource::IdentityPatterns, 1)
            .expect_err("over");
        assert_eq!(
            err,
            Exceeded::Limit {
                resource: Resource::IdentityPatterns,
                limit: 3
            }
        );
        let text = err.to_string();
        assert!(text.contains("identity-patterns"), "{text}");
        assert!(text.contains("more than 3 distinct"), "{text}");
    }

    #[test]
    fn the_first_error_sticks() {
        let budget = Budget::new(Limits::DEFAULT.with(Resource::RbacRules, 1));
        let _ = budget.charge(Resource::RbacRules, 2);
        // Another resource, well within its own limit, still fails: the review is stopped.
        assert_eq!(
            budget.charge(Resource::RbacSubjects, 1),
            Err(Exceeded::Limit {
                resource: Resource::RbacRules,
                limit: 1
            })
        );
        assert!(budget.check().is_err());
        assert_eq!(budget.exceeded().map(|e| e.budget()), Some("rbac-rules"));
    }

    #[test]
    fn an_inline_budget_asks_for_the_pool_before_its_limits() {
        let budget = Budget::default().inline(Limits::INLINE);
        assert_eq!(
            budget.charge(Resource::RegexCompilations, 1),
            Err(Exceeded::Offload {
                resource: Resource::RegexCompilations
            })
        );
        let pool = Budget::default();
        assert!(pool.charge(Resource::RegexCompilations, 1).is_ok());
        assert!(!pool.is_inline());
    }

    #[test]
    fn a_passed_deadline_stops_charges_and_checks() {
        let started = Instant::now() - Duration::from_secs(2);
        let budget = Budget::default().with_deadline(started, Duration::from_secs(1));
        assert_eq!(
            budget.check(),
            Err(Exceeded::Deadline {
                timeout: Duration::from_secs(1)
            })
        );
        assert!(budget.charge(Resource::RbacRules, 1).is_err());
        let open = Budget::default().with_deadline(Instant::now(), Duration::from_secs(3600));
        assert!(open.charge(Resource::RbacRules, 1).is_ok());
        assert!(open.check().is_ok());
    }

    #[test]
    fn limits_are_named_and_ordered_as_resources() {
        for (i, resource) in Resource::ALL.iter().enumerate() {
            assert_eq!(resource.index(), i);
            assert!(Limits::INLINE.get(*resource) <= Limits::DEFAULT.get(*resource));
        }
    }
}
