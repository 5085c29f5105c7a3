//! Which signers a keyless identity (`matchOIDCIdentity` issuer and subject) accepts, decided
//! from the language of its patterns.
//!
//! # How cosign reads a pattern
//! Flux hands both patterns to cosign, which compiles each with Go's `regexp` and calls
//! `MatchString`: the match is unanchored (`gitlab` accepts any issuer that contains
//! "gitlab"), an empty pattern is no constraint, and the syntax is Go's ([`go_syntax`]: ASCII
//! `\d \w \s \b`, simple case folding, no nested classes, ...). A pattern Go refuses makes
//! every verification fail: fluxgate denies it as invalid, saying Go's error.
//!
//! # What a pattern must name
//! A keyless identity is specific when the signers it accepts, for its issuer, are a finite
//! set of named principals, each written out. "Written out" is decided on the language, never
//! on the spelling: a set of more than [`MAX_NAMED`] is broad (`[b-z]` or `[a-z]{1,3}`
//! name 25 and 18,278 groups; `(?:app|web)` names two), and so is an infinite one. Letter
//! case does not make two principals (GitLab, GitHub and email providers refuse names that
//! differ only in case), so the sets are counted after mapping every string to lower case;
//! git refs are the exception (GitLab branches, below).
//!
//! - **Issuer**: the set of issuers itself, at most [`MAX_NAMED`]; each is then checked against
//!   `trustedIssuers` and the public Sigstore instance by the policy.
//! - **GitLab subjects** (gitlab.com, GitLab's other public instances, or a self-managed host
//!   listed in `trustedIssuers`): `https://<host>/<full project path>//<CI config path>@<ref>`
//!   ([`gitlab`]). The principal is the full project path (groups, subgroups and project),
//!   at most [`MAX_NAMED`] of them, and the branch:
//!   - `^https://gitlab\.com/acme/.*$` is broad: any project, in any subgroup, of acme,
//!     including the new or low-trust ones that anyone allowed to create projects in acme
//!     makes, signs as acme. A group is not one principal on GitLab: its projects have their
//!     own members, and Developers of any of them run pipelines.
//!   - Branches (`refs/heads/...`) must be a finite set, at most [`MAX_NAMED`]: an open branch
//!     (`refs/heads/.*`, `@.*`) lets anyone who can push a branch to the project sign from
//!     it. Tags may stay open (`refs/tags/v.*`): GitLab lets a project protect its tags, and
//!     Flux's own example trusts every tag of a workflow. Branches keep their letter case
//!     (git tells `Main` from `main`, and GitLab protects only the one named), so `(?i)` over
//!     a branch name accepts other branches; project paths are counted case-insensitively,
//!     as GitLab refuses a path that differs from an existing one only in case.
//!   - The CI config path may stay open. It is a project setting only Maintainers change (who
//!     can unprotect branches anyway): a Developer cannot make a pipeline start from another
//!     file; what they can change, the file's content on a branch they push, is what the branch
//!     rule stops. It must not swallow the ref, though: GitLab's subject is split at the first
//!     `@refs/`, so `//.*@refs/heads/main$` accepts a branch named `x@refs/heads/main` (git
//!     allows `@` in a ref) and is broad; `//[^@]+@refs/heads/main$` is not.
//! - **GitHub subjects** (`https://github.com/<owner>/<repo>/<workflow>@<ref>`): the principal
//!   is the owner (user or organisation), at most [`MAX_NAMED`]; what follows may stay open.
//!   This is weaker than the GitLab rule on purpose: Flux's own documentation verifies with
//!   `^https://github.com/stefanprodan/podinfo.*$` (every repository of owner stefanprodan
//!   whose name starts with podinfo, every workflow and branch) and Flux's test data with
//!   `...release\.yml@refs/tags/.*`, and fluxgate must not deny the vendors' documented
//!   setups. An owner on GitHub is one account or one organisation whose members are all
//!   trusted with its repositories; the residual risk (a branch or a new repository of that
//!   owner) is documented in SECURITY.md. GitLab's own documentation always writes a full
//!   project path and a ref, so GitLab gets the stricter rule the issue asks for.
//!   Subjects that are not of this shape (`https://gitlab.com/acme` without a project) name
//!   nobody these issuers certify.
//! - **Email addresses** (`local@domain`, any issuer): a finite set of addresses, or every
//!   address of a domain the operator lists in `trustedEmailDomains` (the organisation's own
//!   domain; a public webmail domain is refused there).
//! - **Any other subject** (other issuers' URLs, Buildkite or Kubernetes service account
//!   subjects, ...): the set of whole subjects, at most [`MAX_NAMED`].
//!
//! Every shape a subject pattern accepts is judged, whatever the issuer: a GitLab identity
//! whose subject also accepts `release-bot@<any domain>` is broad.
//!
//! # Bounds
//! A pattern's analysis is bounded ([`MAX_PATTERN_LEN`], [`MAX_NESTING`], [`LIMITS`]): one
//! that would exceed a bound is broad, never specific. Within the bounds the verdict depends
//! on the language alone, so equivalent spellings agree.

mod gitlab;
mod go_syntax;
mod go_unicode_names;
mod issuers;
mod language;

use std::cell::{Cell, OnceCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use regex_automata::Anchored;
use regex_automata::nfa::thompson::{self, pikevm::PikeVM};
use regex_syntax::hir::{Class, ClassUnicode, ClassUnicodeRange, Hir, Look, Repetition};

pub use go_syntax::MAX_NESTING;
pub use issuers::{IssuerKind, is_public_email_domain, is_public_sigstore_issuer, issuer_kind};
pub use language::LIMITS;

use self::go_syntax::{Lowering, Node, ParseError};
use self::language::{Count, EMAIL, Graph, Language, OTHER, Part, START, URL, e, s};

/// The most distinct places `@refs/heads/` can take a pattern's GitLab subjects to.
const MAX_BRANCH_ENTRIES: usize = 64;

/// Which half of an identity a pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityField {
    /// The OIDC issuer URL (`https://gitlab.com`).
    Issuer,
    /// The certificate subject: for GitLab CI
    /// `https://gitlab.com/<group>/<project>//.gitlab-ci.yml@refs/heads/<branch>`.
    Subject,
}

impl IdentityField {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityField::Issuer => "issuer",
            IdentityField::Subject => "subject",
        }
    }
}

/// Patterns longer than this are not analysed (broad).
pub const MAX_PATTERN_LEN: usize = 1024;
/// The most principals (issuers, namespaces, addresses, subjects) one pattern may name.
pub const MAX_NAMED: usize = 8;
/// The most distinct places an `@` can take a pattern's email addresses to.
const MAX_AT_STATES: usize = 64;

/// A host nobody can own (RFC 2606), for identities an attacker controls in examples.
const ATTACKER_HOST: &str = "attacker.invalid";
const ATTACKER_GITLAB_SUBJECT: &str = "project//.gitlab-ci.yml@refs/heads/main";

/// Why a pattern accepts signers nobody meant to trust: `reason` names the open part, and
/// `example` is an identity the pattern accepts that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broad {
    pub reason: String,
    pub example: String,
}

/// The verdict on an issuer pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breadth {
    /// Not a regular expression Go can compile: verification always fails.
    Invalid(String),
    /// Accepts issuers nobody meant to trust.
    Broad(Broad),
    /// Accepts finitely many issuers, few of them public.
    Specific(Issuers),
}

/// The issuers a specific issuer pattern accepts, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuers {
    /// Those the public Sigstore instance certifies, at most [`MAX_NAMED`].
    pub public: Vec<String>,
    /// All of them, when there are at most [`MAX_LISTED`]. An unescaped `.` makes many
    /// (`gitlab.com` also accepts `gitlabXcom`), which only a private Sigstore could certify.
    pub listed: Option<Vec<String>>,
    /// One of them, readably spelled, for messages (empty when it accepts none).
    pub example: String,
}

/// The most issuers listed for checks against `trustedIssuers` with a private Sigstore.
pub const MAX_LISTED: usize = 64;

/// The verdict on a subject pattern, for every kind of issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectBreadth {
    Invalid(String),
    Judged(Box<Subjects>),
}

/// What a subject pattern names, shape by shape.
///
/// Counts are taken over what an issuer can certify ([`Subjects::broad`]): a GitLab issuer
/// puts its own host in every subject, so `gitlab.com` with an unescaped dot still names
/// one host there. Infinitely many URL hosts, or email domains, is broad for GitLab and
/// GitHub issuers too: such a pattern does not say whose identities it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// Why the pattern accepts URLs of infinitely many hosts, if it does.
    pub hosts: Option<Broad>,
    /// URL subjects under each host asked about, by first path segment (GitHub's owners).
    pub namespaces: Vec<(String, Named)>,
    /// GitLab subjects under each host asked about but `github.com`.
    pub gitlab: Vec<(String, GitLabNamed)>,
    /// URL subjects, whole (other issuers).
    pub urls: Named,
    pub emails: Emails,
    /// Subjects that are neither URLs nor email addresses, whole.
    pub others: Named,
}

/// What a subject pattern names under one GitLab host
/// (`https://<host>/<full project path>//<CI config path>@<ref>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitLabNamed {
    /// Full project paths (groups, subgroups and project), letter case aside.
    pub projects: Named,
    /// Branches (`refs/heads/...`), letter case kept: git tells `Main` from `main`. Tags
    /// (`refs/tags/...`) are not counted: GitLab protects tags as it protects branches.
    pub branches: Named,
}

/// A set of principals that is either named (how many) or open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    Finite(usize),
    Open(Broad),
}

/// The email addresses a subject pattern accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emails {
    /// At most [`MAX_NAMED`] domains, each with its addresses.
    Domains(Vec<Domain>),
    /// Infinitely many, or too many, domains.
    Open(Broad),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub domain: String,
    pub addresses: Named,
}

/// How the subjects of an issuer are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectRule<'h> {
    /// GitLab (gitlab.com, GitLab's public instances, a self-managed host listed in
    /// `trustedIssuers`): by full project path and branch.
    GitLab { host: &'h str },
    /// GitHub: `https://<host>/<owner>/...`, by owner.
    Namespaces { host: &'h str },
    /// Issuers of email addresses.
    Emails,
    /// Every other issuer: subjects whole.
    Whole,
    /// An issuer fluxgate could not tell: only what is open whatever the issuer.
    AnyIssuer,
}

impl Subjects {
    /// Why the pattern is broad for an issuer judged by `rule`, with these trusted email
    /// domains; `None` when it names its signers.
    pub fn broad(
        &self,
        rule: SubjectRule<'_>,
        trusted_domain: &dyn Fn(&str) -> bool,
    ) -> Option<Broad> {
        let open_whatever_the_issuer = || {
            self.hosts.clone().or_else(|| match &self.emails {
                Emails::Open(broad) => Some(broad.clone()),
                Emails::Domains(_) => None,
            })
        };
        match rule {
            SubjectRule::Namespaces { host } => {
                if let Some(open) = open_whatever_the_issuer() {
                    return Some(open);
                }
                match self
                    .namespaces
                    .iter()
                    .find(|(h, _)| h.eq_ignore_ascii_case(host))
                {
                    Some((_, Named::Open(broad))) => Some(broad.clone()),
                    Some((_, Named::Finite(_))) => None,
                    // Not asked about: nothing is known, so nothing is named.
                    None => Some(Broad {
                        reason: format!("fluxgate did not analyse it for host {host}"),
                        example: String::new(),
                    }),
                }
            }
            SubjectRule::GitLab { host } => {
                if let Some(open) = open_whatever_the_issuer() {
                    return Some(open);
                }
                match self
                    .gitlab
                    .iter()
                    .find(|(h, _)| h.eq_ignore_ascii_case(host))
                {
                    Some((_, named)) => {
                        [&named.projects, &named.branches]
                            .into_iter()
                            .find_map(|n| match n {
                                Named::Open(broad) => Some(broad.clone()),
                                Named::Finite(_) => None,
                            })
                    }
                    None => Some(Broad {
                        reason: format!("fluxgate did not analyse it for GitLab host {host}"),
                        example: String::new(),
                    }),
                }
            }
            SubjectRule::Emails => self.email_breadth(trusted_domain),
            SubjectRule::AnyIssuer => open_whatever_the_issuer(),
            SubjectRule::Whole => {
                for named in [&self.urls, &self.others] {
                    if let Named::Open(broad) = named {
                        return Some(broad.clone());
                    }
                }
                self.email_breadth(trusted_domain)
            }
        }
    }

    fn email_breadth(&self, trusted_domain: &dyn Fn(&str) -> bool) -> Option<Broad> {
        let domains = match &self.emails {
            Emails::Open(broad) => return Some(broad.clone()),
            Emails::Domains(domains) => domains,
        };
        let mut named = 0;
        for domain in domains {
            if trusted_domain(&domain.domain) {
                continue;
            }
            match &domain.addresses {
                Named::Finite(n) => named += n,
                Named::Open(open) => {
                    let why = if is_public_email_domain(&domain.domain) {
                        format!(
                            "{} is a public email domain, where anyone can register an address",
                            domain.domain
                        )
                    } else {
                        format!(
                            "{} is not in trustedEmailDomains (list it there if it is your organisation's own domain)",
                            domain.domain
                        )
                    };
                    return Some(Broad {
                        reason: format!("{}, and {why}", open.reason),
                        example: open.example.clone(),
                    });
                }
            }
        }
        (named > MAX_NAMED).then(|| Broad {
            reason: format!(
                "it names more than {MAX_NAMED} email addresses; split them into several matchOIDCIdentity entries, or list their domain in trustedEmailDomains"
            ),
            example: String::new(),
        })
    }
}

/// [`analyze_issuer`], and the bytes its analysis took (automaton and graph): what a
/// review's `regex-bytes` budget is charged.
pub fn analyze_issuer_costed(pattern: &str) -> (Breadth, usize) {
    let cost = std::cell::Cell::new(0);
    let breadth = analyze_issuer_with(pattern, &cost);
    (breadth, cost.get())
}

/// [`analyze_subject`], and the bytes its analysis took.
pub fn analyze_subject_costed(pattern: &str, hosts: &[&str]) -> (SubjectBreadth, usize) {
    let cost = std::cell::Cell::new(0);
    let breadth = analyze_subject_with(pattern, hosts, &cost);
    (breadth, cost.get())
}

/// Judges an issuer pattern.
pub fn analyze_issuer(pattern: &str) -> Breadth {
    analyze_issuer_with(pattern, &std::cell::Cell::new(0))
}

/// Judges an issuer pattern: infinitely many issuers is broad; so is more than
/// [`MAX_NAMED`] of those the public Sigstore instance certifies.
fn analyze_issuer_with(pattern: &str, cost: &std::cell::Cell<usize>) -> Breadth {
    let analysed = match Analysed::new(pattern, IdentityField::Issuer) {
        Ok(analysed) => analysed,
        Err(Early::Invalid(e)) => return Breadth::Invalid(e),
        Err(Early::Broad(broad)) => return Breadth::Broad(broad),
    };
    cost.set(analysed.memory_usage());
    let g = &analysed.graph;
    let part = Part {
        graph: g,
        start: START,
        inside: Box::new(move |_| true),
        ends_at: Box::new(move |n| g.accept[n as usize] != 0),
        ends_by: Box::new(move |_, _| false),
    };
    let text = |s: Vec<u8>| String::from_utf8_lossy(&s).into_owned();
    let listed = match part.count(MAX_LISTED as u64) {
        Count::Infinite => return Breadth::Broad(analysed.issuer_broad(&part, Count::Infinite)),
        Count::TooMany => None,
        Count::Finite(_) => Some(
            part.strings(MAX_LISTED)
                .into_iter()
                .map(|(s, _)| text(s))
                .collect::<Vec<_>>(),
        ),
    };
    let public = match issuers::public_language() {
        Some(public) => g.intersection(public, MAX_NAMED, 200_000),
        None => Err(Count::TooMany),
    };
    let public: Vec<String> = match public {
        Ok(found) => found.into_iter().map(text).collect(),
        Err(count) => {
            return Breadth::Broad(Broad {
                reason: format!(
                    "it accepts {} the public Sigstore instance certifies",
                    Analysed::how_many(count, "issuers")
                ),
                example: analysed.show(&analysed.first_example(&part)),
            });
        }
    };
    let example = analysed.first_example(&part);
    Breadth::Specific(Issuers {
        public,
        listed,
        example: if example.is_empty() {
            example
        } else {
            analysed.show(&example)
        },
    })
}

/// Judges a subject pattern, for issuers of every kind; GitLab and GitHub namespaces are
/// counted under each of `hosts` (lower case, such as `gitlab.com`).
pub fn analyze_subject(pattern: &str, hosts: &[&str]) -> SubjectBreadth {
    analyze_subject_with(pattern, hosts, &std::cell::Cell::new(0))
}

fn analyze_subject_with(
    pattern: &str,
    hosts: &[&str],
    cost: &std::cell::Cell<usize>,
) -> SubjectBreadth {
    let analysed = match Analysed::new(pattern, IdentityField::Subject) {
        Ok(analysed) => analysed,
        Err(Early::Invalid(e)) => return SubjectBreadth::Invalid(e),
        Err(Early::Broad(broad)) => {
            return SubjectBreadth::Judged(Box::new(Subjects {
                hosts: Some(broad.clone()),
                namespaces: Vec::new(),
                gitlab: Vec::new(),
                urls: Named::Open(broad.clone()),
                emails: Emails::Open(broad.clone()),
                others: Named::Open(broad),
            }));
        }
    };
    let subjects = Subjects {
        hosts: analysed.open_hosts(),
        namespaces: hosts
            .iter()
            .map(|host| (host.to_string(), analysed.namespaces_under(host)))
            .collect(),
        gitlab: hosts
            .iter()
            .filter(|host| **host != GITHUB_HOST)
            .map(|host| (host.to_string(), analysed.gitlab_under(host)))
            .collect(),
        urls: analysed.whole(URL),
        emails: analysed.emails(),
        others: analysed.whole(OTHER),
    };
    cost.set(analysed.memory_usage());
    SubjectBreadth::Judged(Box::new(subjects))
}

/// GitHub's subjects' host: read by owner, never as GitLab subjects.
pub const GITHUB_HOST: &str = "github.com";

/// An issuer a fluxgate setting's pattern (Rust regex syntax, matched whole) accepts, for
/// suggestions: the shortest one, readably spelled.
pub fn an_accepted_string(hir: &Hir) -> Option<String> {
    let anchored = Hir::concat(vec![
        Hir::look(Look::Start),
        hir.clone(),
        Hir::look(Look::End),
    ]);
    let language = Language::new(anchored, false, &LIMITS).ok()?;
    let graph = Graph::new(&language, &LIMITS).ok()?;
    let g = &graph;
    let part = Part {
        graph: g,
        start: START,
        inside: Box::new(move |_| true),
        ends_at: Box::new(move |n| g.accept[n as usize] != 0),
        ends_by: Box::new(move |_, _| false),
    };
    let (text, _) = part.first_strings(1, 10_000).into_iter().next()?;
    String::from_utf8(text).ok()
}

/// A pattern read as Go's `regexp` reads it: the reading every verdict of this module rests
/// on, public so that tests can hold it to Go itself (`tests/go_regexp.rs`).
pub struct GoRegexp {
    language: Language,
}

/// Why a pattern has no [`GoRegexp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoRegexpError {
    /// Go's `regexp.Compile` refuses it, with this error.
    Go(String),
    /// It is past one of fluxgate's analysis bounds.
    Bound,
}

impl GoRegexp {
    pub fn new(pattern: &str) -> Result<GoRegexp, GoRegexpError> {
        let tree = match go_syntax::parse(pattern) {
            Ok(tree) => tree,
            Err(ParseError::Go(e)) => return Err(GoRegexpError::Go(e.to_string())),
            Err(ParseError::TooDeep) => return Err(GoRegexpError::Bound),
        };
        let (hir, _) = go_syntax::lower(
            &tree,
            Lowering {
                fold: false,
                captures: false,
            },
        );
        let language = Language::new(hir, false, &LIMITS).map_err(|_| GoRegexpError::Bound)?;
        Ok(GoRegexp { language })
    }

    /// Go's `MatchString`.
    pub fn is_match(&self, text: &str) -> bool {
        self.language.accepts(text.as_bytes())
    }
}

enum Early {
    Invalid(String),
    Broad(Broad),
}

/// A pattern read, with the graph of its lower-cased language.
struct Analysed<'p> {
    pattern: &'p str,
    field: IdentityField,
    tree: Node,
    folded: Language,
    graph: Graph,
    /// The language as written (letter case kept), for GitLab branches.
    plain: OnceCell<Option<Language>>,
    /// The bytes of the GitLab subject graphs built so far.
    extra_bytes: Cell<usize>,
    /// For messages only, built on the first broad verdict.
    display: OnceCell<Option<Display>>,
}

impl<'p> Analysed<'p> {
    fn new(pattern: &'p str, field: IdentityField) -> Result<Analysed<'p>, Early> {
        let noun = field.as_str();
        if pattern.is_empty() {
            return Err(Early::Broad(Broad {
                reason: "it is empty, and cosign treats an empty pattern as no constraint".into(),
                example: match field {
                    IdentityField::Issuer => format!("https://{ATTACKER_HOST}"),
                    IdentityField::Subject => {
                        format!("https://{ATTACKER_HOST}/attacker/{ATTACKER_GITLAB_SUBJECT}")
                    }
                },
            }));
        }
        let bounded = |what: &str| {
            Early::Broad(Broad {
                reason: format!(
                    "fluxgate cannot tell which {noun}s it accepts: {what}; write the {noun}s out"
                ),
                example: String::new(),
            })
        };
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(bounded(&format!(
                "it is longer than {MAX_PATTERN_LEN} characters"
            )));
        }
        let tree = match go_syntax::parse(pattern) {
            Ok(tree) => tree,
            Err(ParseError::Go(e)) => {
                let gloss = if e.code == "missing closing )" {
                    " (an unclosed group)"
                } else {
                    ""
                };
                return Err(Early::Invalid(format!("{e}{gloss}")));
            }
            Err(ParseError::TooDeep) => {
                return Err(bounded(&format!(
                    "its groups nest deeper than {MAX_NESTING}"
                )));
            }
        };
        let (hir, _) = go_syntax::lower(
            &tree,
            Lowering {
                fold: true,
                captures: false,
            },
        );
        let too_big = || bounded("its automaton is larger than fluxgate's analysis bound");
        let folded = Language::new(hir, true, &LIMITS).map_err(|_| too_big())?;
        let graph = Graph::new(&folded, &LIMITS).map_err(|_| too_big())?;
        Ok(Analysed {
            pattern,
            field,
            tree,
            folded,
            graph,
            plain: OnceCell::new(),
            extra_bytes: Cell::new(0),
            display: OnceCell::new(),
        })
    }

    /// The heap the pattern's automata and graphs take.
    fn memory_usage(&self) -> usize {
        self.folded.memory_usage()
            + self.graph.memory_usage()
            + self
                .plain
                .get()
                .and_then(Option::as_ref)
                .map_or(0, Language::memory_usage)
            + self.extra_bytes.get()
    }

    fn plain(&self) -> Option<&Language> {
        self.plain
            .get_or_init(|| {
                let (hir, _) = go_syntax::lower(
                    &self.tree,
                    Lowering {
                        fold: false,
                        captures: false,
                    },
                );
                Language::new(hir, false, &LIMITS).ok()
            })
            .as_ref()
    }

    fn noun(&self) -> &'static str {
        self.field.as_str()
    }

    /// Infinitely many hosts in URLs with a namespace.
    fn open_hosts(&self) -> Option<Broad> {
        let g = &self.graph;
        let part = Part {
            graph: g,
            start: START,
            inside: Box::new(move |n| {
                let s = g.shape[n as usize].s;
                s <= s::HOST && s != s::NOT_URL
            }),
            ends_at: Box::new(move |_| false),
            ends_by: Box::new(move |from, to| {
                g.shape[from as usize].s == s::HOST
                    && g.shape[to as usize].s == s::NS_START
                    && g.live[to as usize] & URL != 0
            }),
        };
        match part.count(MAX_NAMED as u64) {
            Count::Infinite => Some(self.host_broad(&part)),
            _ => None,
        }
    }

    fn host_broad(&self, part: &Part<'_>) -> Broad {
        let base = self
            .examples(part, URL)
            .into_iter()
            .next()
            .map(|(_, whole)| whole)
            .unwrap_or_default();
        let host = |example: &str| {
            split_url(example)
                .map(|(scheme, host, _)| scheme.len() + 3..scheme.len() + 3 + host.len())
                .unwrap_or(0..example.len())
        };
        if let Some(mut broad) = self.first_probe(&self.url_probes(&base)) {
            if broad.reason.contains("pin the host")
                && let Some(fragment) = self.fragment(&broad.example, host(&broad.example))
            {
                broad.reason.push_str(&format!(": {fragment} is open"));
            }
            return broad;
        }
        let example = self.show(&base);
        let open = host(&example);
        let fragment = self
            .fragment(&example, open)
            .map(|f| format!(": {f} accepts infinitely many"))
            .unwrap_or_default();
        Broad {
            reason: format!("it does not pin the host{fragment}"),
            example,
        }
    }

    /// The namespaces of `https://<host>/<namespace>/...` subjects.
    fn namespaces_under(&self, host: &str) -> Named {
        let g = &self.graph;
        let prefix = format!("https://{host}/");
        let Some(start) = g.walk(START, prefix.as_bytes()) else {
            return Named::Finite(0);
        };
        let part = Part {
            graph: g,
            start,
            inside: Box::new(move |n| {
                let s = g.shape[n as usize].s;
                s == s::NS_START || s == s::NS
            }),
            ends_at: Box::new(move |_| false),
            ends_by: Box::new(move |from, to| {
                g.shape[from as usize].s == s::NS
                    && g.shape[to as usize].s == s::REST
                    && g.live[to as usize] & URL != 0
            }),
        };
        match part.count(MAX_NAMED as u64) {
            Count::Finite(n) => Named::Finite(n as usize),
            count => Named::Open(self.namespace_broad(&part, count, &prefix)),
        }
    }

    /// The full project paths and branches of `https://<host>/...` GitLab subjects: project
    /// paths counted on the lower-case image (GitLab refuses a path that differs from another
    /// only in case), branches on the language as written (git does not).
    fn gitlab_under(&self, host: &str) -> GitLabNamed {
        let bounded = |what: &str| {
            Named::Open(Broad {
                reason: format!(
                    "fluxgate cannot tell which {what} it accepts (its automaton is larger than fluxgate's analysis bound); write them out"
                ),
                example: String::new(),
            })
        };
        let prefix = format!("https://{host}/");
        let projects = match gitlab::graph(&self.folded, host, &LIMITS) {
            Err(_) => bounded("project paths"),
            Ok(None) => Named::Finite(0),
            Ok(Some(g)) => {
                self.extra_bytes
                    .set(self.extra_bytes.get() + g.memory_usage());
                let part = gitlab::project_paths(&g);
                match part.count(MAX_NAMED as u64) {
                    Count::Finite(n) => Named::Finite(n as usize),
                    count => Named::Open(self.project_broad(&g, &part, count, &prefix)),
                }
            }
        };
        let branches = match self
            .plain()
            .map(|plain| gitlab::graph(plain, host, &LIMITS))
        {
            None | Some(Err(_)) => bounded("branches"),
            Some(Ok(None)) => Named::Finite(0),
            Some(Ok(Some(g))) => {
                self.extra_bytes
                    .set(self.extra_bytes.get() + g.memory_usage());
                self.branches(&g, &prefix)
            }
        };
        GitLabNamed { projects, branches }
    }

    fn branches(&self, g: &Graph, prefix: &str) -> Named {
        let entries = gitlab::branch_entries(g);
        if entries.len() > MAX_BRANCH_ENTRIES {
            return Named::Open(Broad {
                reason: "fluxgate cannot tell which branches it accepts (its automaton is larger than fluxgate's analysis bound); write them out".into(),
                example: String::new(),
            });
        }
        let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
        for &entry in &entries {
            let part = gitlab::branch_names(g, entry);
            match part.count(MAX_NAMED as u64) {
                Count::Finite(_) => {
                    names.extend(part.strings(MAX_NAMED).into_iter().map(|(s, _)| s))
                }
                count => return Named::Open(self.branch_broad(g, entry, count, prefix)),
            }
            if names.len() > MAX_NAMED {
                return Named::Open(self.branch_broad(g, entry, Count::TooMany, prefix));
            }
        }
        Named::Finite(names.len())
    }

    /// Why the full project paths under `prefix` (`https://<host>/`) are open.
    fn project_broad(&self, g: &Graph, part: &Part<'_>, count: Count, prefix: &str) -> Broad {
        // The node after `<path>//`, if a subject can still follow.
        let after = |path: &str| {
            g.walk(START, format!("{path}//").as_bytes())
                .filter(|&n| g.live[n as usize] & gitlab::SUBJECT != 0)
        };
        let mut strings = part.first_strings(6, 20_000);
        if strings.len() < 3 && count == Count::TooMany {
            // Finite: the shortest paths may all be one spelling (`acme[0-9]?` gives `acme`
            // only); walk the strings themselves.
            strings = part.strings(6);
        }
        let found: Vec<String> = strings
            .into_iter()
            .map(|(text, _)| {
                // The text ends with the `//` that ends the path.
                let text = String::from_utf8_lossy(&text).into_owned();
                text.strip_suffix("//").unwrap_or(&text).to_string()
            })
            .filter(|path| !path.is_empty())
            .collect();
        let first = found.first().cloned().unwrap_or_default();
        let group = first.rsplit_once('/').map_or(first.as_str(), |(g, _)| g);
        let mut probes = vec!["attacker/project".to_string()];
        if !first.is_empty() {
            probes.extend([
                format!("{group}/attacker"),
                format!("{first}/attacker"),
                format!("{first}-attacker"),
                format!("{group}/attacker/project"),
            ]);
        }
        let mut paths: Vec<String> = probes
            .into_iter()
            .filter(|probe| after(probe).is_some())
            .collect();
        paths.dedup();
        paths.truncate(2);
        let any_group = paths.first().is_some_and(|p| p == "attacker/project");
        // Without a probe, the example of a finite set is a path past the first, which often
        // skips the open part (`acme/app` for `acme[0-9]?/app`).
        let skip_first = paths.is_empty() && found.len() > 1 && count == Count::TooMany;
        for path in found {
            if paths.len() < 3 && !paths.contains(&path) {
                paths.push(path);
            }
        }
        let whole = |path: &str| {
            let node = after(path)?;
            let rest = gitlab_tail(g, node)?;
            Some(self.show(&format!("{prefix}{path}//{rest}")))
        };
        let example = paths
            .get(usize::from(skip_first))
            .and_then(|p| whole(p))
            .unwrap_or_default();
        let shown: Vec<String> = paths
            .iter()
            .map(|path| {
                let spelled = whole(path);
                let spelled = spelled.as_deref().and_then(gitlab_path).unwrap_or(path);
                format!("`{spelled}`")
            })
            .collect();
        let path_end = example
            .get(prefix.len()..)
            .and_then(|rest| rest.find("//"))
            .map_or(example.len(), |i| prefix.len() + i);
        let open = self.open_part(&example, prefix.len().min(path_end)..path_end);
        let what = if any_group {
            "projects of any group".to_string()
        } else {
            Self::how_many(count, "project paths")
        };
        // The fix keeps the groups every named path shares.
        let shared = paths
            .iter()
            .filter(|p| p.contains('/') && !p.starts_with("attacker/"))
            .map(String::as_str)
            .reduce(|a, b| &a[..common_prefix(a, b)])
            .map(|p| &p[..p.rfind('/').map_or(0, |i| i + 1)])
            .unwrap_or("");
        let project = if shared.is_empty() {
            "<group>/<project>".to_string()
        } else {
            format!("{}<project>", go_escape(shared))
        };
        let fix = format!(
            "^{}{project}//\\.gitlab-ci\\.yml@refs/heads/main$",
            go_escape(prefix)
        );
        Broad {
            reason: format!(
                "it does not pin the full project path (groups, subgroups and project): {open} accepts {what}, such as {}, and anyone who can create a project at such a path can sign as it; write out the full project path of each signing project (one matchOIDCIdentity entry each, or alternatives), such as `{fix}`",
                shown.join(", ")
            ),
            example,
        }
    }

    /// Why the branches that follow `entry` are open.
    fn branch_broad(&self, g: &Graph, entry: u32, count: Count, prefix: &str) -> Broad {
        let Some(plain) = self.plain() else {
            return Broad {
                reason: "fluxgate cannot tell which branches it accepts".into(),
                example: String::new(),
            };
        };
        let open_after = |head: &str| {
            let node = g.walk(START, head.get(prefix.len()..)?.as_bytes())?;
            (g.shape[node as usize] == gitlab::BRANCH_ENTRY
                && !matches!(
                    gitlab::branch_names(g, node).count(MAX_NAMED as u64),
                    Count::Finite(_)
                ))
            .then_some(node)
        };
        // The project and config path that lead there (`https://gitlab.com/acme/app//
        // .gitlab-ci.yml@refs/heads/`), with GitLab's default config path if it leads there.
        let shortest = language::shortest(g, START, |n| n == entry, gitlab::BRANCH_END)
            .map(|text| format!("{prefix}{}", String::from_utf8_lossy(&text)))
            .unwrap_or_default();
        let usual = shortest
            .get(prefix.len()..)
            .and_then(|rest| rest.split_once("//"))
            .map(|(project, _)| format!("{prefix}{project}//.gitlab-ci.yml@refs/heads/"));
        let (head, entry) = usual
            .and_then(|usual| open_after(&usual).map(|node| (usual, node)))
            .unwrap_or((shortest, entry));
        let names: Vec<String> = gitlab::branch_names(g, entry)
            .first_strings(4, 20_000)
            .into_iter()
            .map(|(name, _)| String::from_utf8_lossy(&name).into_owned())
            .filter(|name| !name.is_empty())
            .take(3)
            .collect();
        let first = names.first().map_or("main", String::as_str);
        let accepted = |branch: &str| {
            let text = format!("{head}{branch}");
            plain.accepts(text.as_bytes()).then_some(text)
        };
        // A branch that swallows the ref the config path part was meant to end at.
        let swallowed = gitlab::swallowing_branch(g, entry)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map(|b| {
                // `attacker@refs/heads/main` reads better than `@refs/heads/main`.
                let named = format!("attacker{b}");
                if accepted(&named).is_some() { named } else { b }
            })
            .unwrap_or_default();
        // A name that merely extends a named branch (`main-attacker`, a missing `$`) is
        // told before the `@refs/` swallowing that such a name also allows.
        let extended = (!first.contains("@refs/"))
            .then(|| accepted(&format!("{first}-attacker")))
            .flatten();
        let (example, why) = if let Some(example) = accepted("attacker") {
            (example, None)
        } else if let Some(example) = extended {
            (example, None)
        } else if let Some(example) = accepted(&swallowed).filter(|_| !swallowed.is_empty()) {
            let why = format!(
                "the part before `@refs/` accepts `@` too, so a branch named `{swallowed}` makes a matching subject (git allows `@` in a branch name): write the CI config path without `@` (`[^@]+`) or spell it out"
            );
            (example, Some(why))
        } else if let Some(example) =
            accepted(&first.to_uppercase()).filter(|_| first.to_uppercase() != first)
        {
            let why = format!(
                "it accepts `refs/heads/{}` as well as `refs/heads/{first}`, and git tells them apart (GitLab protects only the branch named): keep `(?i)` off the ref",
                first.to_uppercase()
            );
            (example, Some(why))
        } else {
            (
                format!("{head}{}", names.last().map_or(first, String::as_str)),
                None,
            )
        };
        let name_at = head.len().min(example.len());
        let open = self.open_part(&example, name_at..example.len());
        let why = why.unwrap_or_else(|| {
            let shown: Vec<String> = names.iter().map(|n| format!("`refs/heads/{n}`")).collect();
            let such_as = if shown.is_empty() {
                String::new()
            } else {
                format!(", such as {}", shown.join(", "))
            };
            format!(
                "{open} accepts {}{such_as}",
                Self::how_many(count, "branches")
            )
        });
        // The fix: this project and config path, one branch; or its tags.
        let rest = head.get(prefix.len()..).unwrap_or("");
        let (project, config) = rest
            .split_once("//")
            .map(|(p, c)| (p, c.strip_suffix("@refs/heads/").unwrap_or(c)))
            .unwrap_or(("<group>/<project>", ".gitlab-ci.yml"));
        let config = if config.ends_with(".yml") || config.ends_with(".yaml") {
            config
        } else {
            ".gitlab-ci.yml"
        };
        let pinned = format!(
            "^{}{}//{}@refs/",
            go_escape(prefix),
            go_escape(project),
            go_escape(config)
        );
        Broad {
            reason: format!(
                "it does not pin the branch: {why}; anyone who can push a branch to {project} can run a pipeline on it and sign; name the protected branches, or accept tags only (GitLab can protect tags), such as `{pinned}heads/main$` or `{pinned}tags/.*$`"
            ),
            example,
        }
    }

    /// Whole subjects of one shape (URL or other).
    fn whole(&self, shape: u8) -> Named {
        let part = self.whole_part(shape);
        match part.count(MAX_NAMED as u64) {
            Count::Finite(n) => Named::Finite(n as usize),
            count => Named::Open(self.whole_broad(&part, count, shape)),
        }
    }

    fn whole_part(&self, shape: u8) -> Part<'_> {
        let g = &self.graph;
        let url = shape == URL;
        Part {
            graph: g,
            start: START,
            inside: Box::new(move |n| {
                let s = g.shape[n as usize].s;
                if url { s != s::NOT_URL } else { !s::is_url(s) }
            }),
            ends_at: Box::new(move |n| g.accept[n as usize] & shape != 0),
            ends_by: Box::new(move |_, _| false),
        }
    }

    fn emails(&self) -> Emails {
        let g = &self.graph;
        let at_states: Vec<u32> = (0..g.len() as u32)
            .filter(|&n| {
                let shape = g.shape[n as usize];
                shape.s == s::NOT_URL
                    && shape.e == e::DOMAIN_START
                    && g.live[n as usize] & EMAIL != 0
            })
            .collect();
        if at_states.is_empty() {
            return Emails::Domains(Vec::new());
        }
        if at_states.len() > MAX_AT_STATES {
            return Emails::Open(Broad {
                reason: "fluxgate cannot tell which email addresses it accepts (its automaton is larger than fluxgate's analysis bound)".into(),
                example: String::new(),
            });
        }
        let local_region = |n: u32| {
            let shape = g.shape[n as usize];
            !s::is_url(shape.s) && (shape.e == e::START || shape.e == e::LOCAL)
        };
        let domain_region = |n: u32| {
            let shape = g.shape[n as usize];
            shape.s == s::NOT_URL && (shape.e == e::DOMAIN_START || shape.e == e::DOMAIN)
        };
        let mut domains: BTreeMap<String, (Count, u32)> = BTreeMap::new();
        for &at in &at_states {
            let locals = Part {
                graph: g,
                start: START,
                inside: Box::new(local_region),
                ends_at: Box::new(move |_| false),
                ends_by: Box::new(move |_, to| to == at),
            }
            .count(MAX_NAMED as u64);
            let domain_part = Part {
                graph: g,
                start: at,
                inside: Box::new(domain_region),
                ends_at: Box::new(move |n| g.accept[n as usize] & EMAIL != 0),
                ends_by: Box::new(move |_, _| false),
            };
            match domain_part.count(MAX_NAMED as u64) {
                Count::Finite(_) => {}
                count => return Emails::Open(self.email_domain_broad(at, count)),
            }
            for (domain, _) in domain_part.strings(MAX_NAMED) {
                let domain = String::from_utf8_lossy(&domain).into_owned();
                let entry = domains.entry(domain).or_insert((Count::Finite(0), at));
                entry.0 = add(entry.0, locals);
            }
            if domains.len() > MAX_NAMED {
                return Emails::Open(self.email_domain_broad(at, Count::TooMany));
            }
        }
        Emails::Domains(
            domains
                .into_iter()
                .map(|(domain, (count, at))| {
                    let addresses = match count {
                        Count::Finite(n) if n as usize <= MAX_NAMED => Named::Finite(n as usize),
                        count => Named::Open(self.local_broad(&domain, at, count)),
                    };
                    Domain { domain, addresses }
                })
                .collect(),
        )
    }

    // -------------------------------------------------------------------------------
    // Messages: built only for broad verdicts.

    fn display(&self) -> Option<&Display> {
        self.display
            .get_or_init(|| Display::new(self.pattern, &self.tree))
            .as_ref()
    }

    /// An accepted identity as the pattern spells it (letter case restored).
    fn show(&self, folded: &str) -> String {
        self.display()
            .and_then(|d| d.unfold(folded))
            .unwrap_or_else(|| folded.to_string())
    }

    fn accepts(&self, folded: &str) -> bool {
        self.folded.accepts(folded.as_bytes())
    }

    /// The first string of a part (of strings the pattern accepts), readably spelled.
    fn first_example(&self, part: &Part<'_>) -> String {
        part.first_strings(1, 20_000)
            .into_iter()
            .next()
            .map(|(s, _)| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default()
    }

    /// The first strings of a part, completed to accepted identities of `shapes`.
    fn examples(&self, part: &Part<'_>, shapes: u8) -> Vec<(String, String)> {
        part.first_strings(3, 20_000)
            .into_iter()
            .filter_map(|(text, node)| {
                let rest = language::completion(&self.graph, node, shapes)?;
                let principal = String::from_utf8_lossy(&text).into_owned();
                let mut whole = text;
                whole.extend(rest);
                Some((principal, String::from_utf8_lossy(&whole).into_owned()))
            })
            .collect()
    }

    /// The part of the pattern that accepts the text at `range` of `example` (an accepted
    /// identity as the pattern spells it), in words.
    fn fragment(&self, example: &str, range: Range<usize>) -> Option<String> {
        let display = self.display()?;
        match display.attribute(example, range)? {
            Attribution::Prefix => Some("(the pattern is not anchored with ^)".into()),
            Attribution::Suffix => Some("(the pattern is not anchored with $)".into()),
            Attribution::Span(span) => Some(format!("`{}`", &self.pattern[span])),
        }
    }

    /// The part of the pattern that accepts `range` of `example`, as the subject of a sentence.
    fn open_part(&self, example: &str, range: Range<usize>) -> String {
        match self.display().and_then(|d| d.attribute(example, range)) {
            Some(Attribution::Prefix) => "the pattern (not anchored with ^)".into(),
            Some(Attribution::Suffix) => "the pattern (not anchored with $)".into(),
            Some(Attribution::Span(span)) => format!("`{}`", &self.pattern[span]),
            None => "the pattern".into(),
        }
    }

    fn anchored_start(&self) -> bool {
        starts_anchored(&self.tree)
    }

    fn anchored_end(&self) -> bool {
        ends_anchored(&self.tree)
    }

    fn how_many(count: Count, what: &str) -> String {
        match count {
            Count::Infinite => format!("infinitely many {what}"),
            _ => format!("more than {MAX_NAMED} {what}"),
        }
    }

    fn prefix_reason(&self) -> String {
        let noun = self.noun();
        if self.anchored_start() {
            format!("it accepts any text in front of the {noun} it names")
        } else {
            format!(
                "it is not anchored with ^, and cosign matches the pattern anywhere in the {noun}"
            )
        }
    }

    fn suffix_reason(&self) -> String {
        let noun = self.noun();
        if self.anchored_end() {
            format!("it accepts any text after the {noun} it names")
        } else {
            format!("it is not anchored with $, so longer {noun}s match too")
        }
    }

    fn issuer_broad(&self, part: &Part<'_>, count: Count) -> Broad {
        let base = self.first_example(part);
        let unrelated = format!("https://{ATTACKER_HOST}");
        let probes = [
            (
                unrelated.clone(),
                "it matches unrelated issuers".to_string(),
            ),
            (format!("{unrelated}/{base}"), self.prefix_reason()),
            (format!("{base}.{ATTACKER_HOST}"), self.suffix_reason()),
            (
                format!("{}/attacker", base.trim_end_matches('/')),
                if self.anchored_end() {
                    "it accepts other issuers on the same host".into()
                } else {
                    "it is not anchored with $, and issuers differing only in their path match too (GitHub Enterprise issuers are https://token.actions.githubusercontent.com/<enterprise>)".into()
                },
            ),
        ];
        if let Some(broad) = self.first_probe(&probes) {
            return broad;
        }
        let example = self.show(&base);
        let fragment = self
            .fragment(&example, 0..example.len())
            .map(|f| format!(": {f} is open"))
            .unwrap_or_default();
        Broad {
            reason: format!("it accepts {}{fragment}", Self::how_many(count, "issuers")),
            example,
        }
    }

    fn first_probe(&self, probes: &[(String, String)]) -> Option<Broad> {
        probes
            .iter()
            .find(|(probe, _)| !probe.is_empty() && self.accepts(probe))
            .map(|(probe, reason)| Broad {
                reason: reason.clone(),
                example: self.show(probe),
            })
    }

    fn url_probes(&self, base: &str) -> Vec<(String, String)> {
        let mut probes = vec![
            (
                format!("https://{ATTACKER_HOST}/attacker/{ATTACKER_GITLAB_SUBJECT}"),
                "it matches unrelated subjects".to_string(),
            ),
            (
                format!("https://{ATTACKER_HOST}/{base}"),
                self.prefix_reason(),
            ),
        ];
        if let Some((scheme, host, path)) = split_url(base) {
            probes.push((
                format!("{scheme}://{ATTACKER_HOST}{path}"),
                "it does not pin the host".into(),
            ));
            probes.push((
                format!("{scheme}://{host}.{ATTACKER_HOST}{path}"),
                "it does not pin the host".into(),
            ));
            probes.push((
                format!("{scheme}://{host}/attacker/{ATTACKER_GITLAB_SUBJECT}"),
                "it accepts projects of any group or owner".into(),
            ));
            let path = path.trim_start_matches('/');
            let (owner, rest) = match path.split_once('/') {
                Some((owner, rest)) => (owner, format!("/{rest}")),
                None => (path, String::new()),
            };
            probes.push((
                format!("{scheme}://{host}/attacker{rest}"),
                "it accepts projects of any group or owner".into(),
            ));
            if !owner.is_empty() {
                probes.push((
                    format!("{scheme}://{host}/{owner}-attacker{rest}"),
                    "it does not pin the group or owner (other groups whose name starts the same match too)".into(),
                ));
            }
        }
        probes
    }

    /// `prefix` is the text that leads to the part's start (`https://gitlab.com/`).
    fn namespace_broad(&self, part: &Part<'_>, count: Count, prefix: &str) -> Broad {
        let examples: Vec<(String, String)> = self
            .examples(part, URL)
            .into_iter()
            .map(|(principal, whole)| (format!("{prefix}{principal}"), format!("{prefix}{whole}")))
            .collect();
        let base = examples.first().map(|(_, w)| w.clone()).unwrap_or_default();
        let namespace = |example: &str| {
            split_url(example)
                .filter(|(_, _, path)| !path.is_empty())
                .map(|(scheme, host, path)| {
                    let start = scheme.len() + 3 + host.len() + 1;
                    let end = path[1..].find('/').map_or(example.len(), |i| start + i);
                    start..end
                })
                .unwrap_or(0..example.len())
        };
        if let Some(mut broad) = self.first_probe(&self.url_probes(&base)) {
            if broad.reason.contains("group or owner")
                && let Some(fragment) = self.fragment(&broad.example, namespace(&broad.example))
            {
                broad.reason.push_str(&format!(": {fragment} is open"));
            }
            return broad;
        }
        let example = self.show(&base);
        let open = namespace(&example);
        let fragment = self
            .fragment(&example, open)
            .map(|f| format!(": {f} accepts {}", Self::how_many(count, "of them")))
            .unwrap_or_else(|| format!(": it accepts {}", Self::how_many(count, "of them")));
        let named: Vec<String> = examples
            .iter()
            .map(|(principal, _)| format!("`{principal}`"))
            .collect();
        Broad {
            reason: format!(
                "it does not pin the group or owner (the host and first path segment){fragment}, such as {}",
                named.join(", ")
            ),
            example,
        }
    }

    fn whole_broad(&self, part: &Part<'_>, count: Count, shape: u8) -> Broad {
        let examples = self.examples(part, shape);
        let base = examples.first().map(|(_, w)| w.clone()).unwrap_or_default();
        let mut probes = if shape == URL {
            self.url_probes(&base)
        } else {
            vec![(
                format!("attacker@{ATTACKER_HOST}"),
                "it matches unrelated subjects".to_string(),
            )]
        };
        probes.push((format!("attacker/{base}"), self.prefix_reason()));
        probes.push((format!("{base}/attacker"), self.suffix_reason()));
        probes.push((format!("{base}-attacker"), self.suffix_reason()));
        if let Some(broad) = self.first_probe(&probes) {
            return broad;
        }
        let example = self.show(&base);
        let fragment = self
            .fragment(&example, 0..example.len())
            .map(|f| format!(" ({f} is open)"))
            .unwrap_or_default();
        let what = if shape == URL {
            "subjects, and this issuer's subjects are not read by namespace (only GitLab's and GitHub's are)"
        } else {
            "subjects"
        };
        Broad {
            reason: format!("it accepts {}{fragment}", Self::how_many(count, what)),
            example,
        }
    }

    fn email_domain_broad(&self, at: u32, count: Count) -> Broad {
        let g = &self.graph;
        let domain_region = |n: u32| {
            let shape = g.shape[n as usize];
            shape.s == s::NOT_URL && (shape.e == e::DOMAIN_START || shape.e == e::DOMAIN)
        };
        let local = self.a_local_part(at).unwrap_or_default();
        let domain = Part {
            graph: g,
            start: at,
            inside: Box::new(domain_region),
            ends_at: Box::new(move |n| g.accept[n as usize] & EMAIL != 0),
            ends_by: Box::new(move |_, _| false),
        }
        .first_strings(1, 20_000)
        .into_iter()
        .next()
        .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
        .unwrap_or_default();
        let base = format!("{local}@{domain}");
        let probes = [
            (
                format!("attacker@{ATTACKER_HOST}"),
                "it matches unrelated subjects".to_string(),
            ),
            (
                format!("{local}@{ATTACKER_HOST}"),
                "it does not pin the email domain".to_string(),
            ),
            (format!("{base}.{ATTACKER_HOST}"), self.suffix_reason()),
        ];
        if let Some(broad) = self.first_probe(&probes) {
            return broad;
        }
        let example = self.show(&base);
        let open = example
            .rfind('@')
            .map_or(0..example.len(), |i| i + 1..example.len());
        let fragment = self
            .fragment(&example, open)
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        Broad {
            reason: format!(
                "it does not pin the email domain: it accepts addresses at {}{fragment}",
                Self::how_many(count, "domains")
            ),
            example,
        }
    }

    /// The readable shortest local part that reaches `at` (the state after its `@`).
    fn a_local_part(&self, at: u32) -> Option<String> {
        let g = &self.graph;
        let part = Part {
            graph: g,
            start: START,
            inside: Box::new(move |n| {
                let shape = g.shape[n as usize];
                !s::is_url(shape.s) && (shape.e == e::START || shape.e == e::LOCAL)
            }),
            ends_at: Box::new(move |_| false),
            ends_by: Box::new(move |_, to| to == at),
        };
        let (text, _) = part.first_strings(1, 20_000).into_iter().next()?;
        let text = String::from_utf8_lossy(&text).into_owned();
        Some(text.trim_end_matches('@').to_string())
    }

    fn local_broad(&self, domain: &str, at: u32, count: Count) -> Broad {
        let local = self.a_local_part(at).unwrap_or_default();
        let example = self.show(&format!("{local}@{domain}"));
        let open = 0..example.rfind('@').unwrap_or(example.len());
        let fragment = self
            .fragment(&example, open)
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        let what = match count {
            Count::Infinite => format!("every address at {domain}"),
            _ => format!("more than {MAX_NAMED} addresses at {domain}"),
        };
        Broad {
            reason: format!("it accepts {what}{fragment}"),
            example,
        }
    }
}

/// The usual rest of a GitLab subject after `<path>//` from `node`, or the shortest.
fn gitlab_tail(g: &Graph, node: u32) -> Option<String> {
    for usual in [
        ".gitlab-ci.yml@refs/heads/main",
        ".gitlab-ci.yml@refs/tags/v1",
    ] {
        if g.walk(node, usual.as_bytes())
            .is_some_and(|n| g.accept[n as usize] & gitlab::SUBJECT != 0)
        {
            return Some(usual.to_string());
        }
    }
    let rest = language::completion(g, node, gitlab::SUBJECT)?;
    Some(String::from_utf8_lossy(&rest).into_owned())
}

/// Go's `regexp.QuoteMeta`: the text as a pattern that matches only itself.
fn go_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The full project path of a GitLab subject (`https://<host>/<path>//...`).
fn gitlab_path(subject: &str) -> Option<&str> {
    let (_, _, path) = split_url(subject)?;
    let path = path.strip_prefix('/')?;
    Some(path.split_once("//").map_or(path, |(p, _)| p))
}

/// The length of the longest common prefix of two strings, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

fn add(a: Count, b: Count) -> Count {
    match (a, b) {
        (Count::Infinite, _) | (_, Count::Infinite) => Count::Infinite,
        (Count::TooMany, _) | (_, Count::TooMany) => Count::TooMany,
        (Count::Finite(a), Count::Finite(b)) => Count::Finite(a.saturating_add(b)),
    }
}

/// Whether every way through the pattern starts with `^` or `\A` (for wording only).
fn starts_anchored(node: &Node) -> bool {
    match node {
        Node::Look(Look::Start) => true,
        Node::Concat(items) => items.first().is_some_and(starts_anchored),
        Node::Alternate { alternatives, .. } => alternatives.iter().all(starts_anchored),
        _ => false,
    }
}

fn ends_anchored(node: &Node) -> bool {
    match node {
        Node::Look(Look::End) => true,
        Node::Concat(items) => items.last().is_some_and(ends_anchored),
        Node::Alternate { alternatives, .. } => alternatives.iter().all(ends_anchored),
        _ => false,
    }
}

/// `scheme://host/path` → (scheme, host, `/path` or empty).
fn split_url(text: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    {
        return None;
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    (!host.is_empty()).then_some((scheme, host, path))
}

/// What the pattern as written (not lower-cased) accepts, and which of its parts matched
/// which text: for messages.
struct Display {
    language: Language,
    vm: PikeVM,
    /// The pattern span of each capture group (group `i` at `i - 1`).
    spans: Vec<Range<usize>>,
    /// Whether each group is a repetition.
    repeats: Vec<bool>,
}

enum Attribution {
    Prefix,
    Suffix,
    Span(Range<usize>),
}

impl Display {
    fn new(pattern: &str, tree: &Node) -> Option<Display> {
        let (plain, _) = go_syntax::lower(
            tree,
            Lowering {
                fold: false,
                captures: false,
            },
        );
        let language = Language::new(plain, false, &LIMITS).ok()?;
        let (captured, spans) = go_syntax::lower(
            tree,
            Lowering {
                fold: false,
                captures: true,
            },
        );
        let any = ClassUnicode::new([ClassUnicodeRange::new('\0', '\u{10FFFF}')]);
        let lazy_anything = |index: usize| {
            Hir::capture(regex_syntax::hir::Capture {
                index: index as u32,
                name: None,
                sub: Box::new(Hir::repetition(Repetition {
                    min: 0,
                    max: None,
                    greedy: false,
                    sub: Box::new(Hir::class(Class::Unicode(any.clone()))),
                })),
            })
        };
        let whole = Hir::concat(vec![
            lazy_anything(spans.len() + 1),
            captured,
            lazy_anything(spans.len() + 2),
            Hir::look(Look::End),
        ]);
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().nfa_size_limit(Some(LIMITS.nfa_bytes)))
            .build_from_hir(&whole)
            .ok()?;
        let vm = PikeVM::new_from_nfa(nfa).ok()?;
        let repeats = spans
            .iter()
            .map(|span| {
                pattern
                    .get(..span.end)
                    .is_some_and(|text| text.ends_with(['*', '+', '?', '}']))
            })
            .collect();
        Some(Display {
            language,
            vm,
            spans,
            repeats,
        })
    }

    /// A string the pattern accepts whose lower-case image is `folded`.
    fn unfold(&self, folded: &str) -> Option<String> {
        let chars: Vec<char> = folded.chars().collect();
        let mut failed = std::collections::HashSet::new();
        let mut out = String::new();
        self.unfold_from(&chars, 0, self.language.start(), &mut out, &mut failed)
            .then_some(out)
    }

    fn unfold_from(
        &self,
        chars: &[char],
        at: usize,
        state: regex_automata::util::primitives::StateID,
        out: &mut String,
        failed: &mut std::collections::HashSet<(usize, regex_automata::util::primitives::StateID)>,
    ) -> bool {
        if at == chars.len() {
            return self.language.accepting(state);
        }
        if failed.contains(&(at, state)) || failed.len() > 100_000 {
            return false;
        }
        let c = chars[at];
        let mut candidates = vec![c];
        if c.is_ascii_lowercase() {
            candidates.push(c.to_ascii_uppercase());
        }
        match c {
            's' => candidates.push('\u{17F}'),
            'k' => candidates.push('\u{212A}'),
            _ => {}
        }
        for candidate in candidates {
            let mut buf = [0u8; 4];
            let bytes = candidate.encode_utf8(&mut buf).as_bytes();
            if let Some(next) = self.language.walk(state, bytes) {
                out.push(candidate);
                if self.unfold_from(chars, at + 1, next, out, failed) {
                    return true;
                }
                out.pop();
            }
        }
        failed.insert((at, state));
        false
    }

    /// The part of the pattern that matched most of `range` in `text`.
    fn attribute(&self, text: &str, range: Range<usize>) -> Option<Attribution> {
        let mut cache = self.vm.create_cache();
        let mut caps = self.vm.create_captures();
        let input = regex_automata::Input::new(text).anchored(Anchored::Yes);
        self.vm.captures(&mut cache, input, &mut caps);
        if !caps.is_match() {
            return None;
        }
        let overlap = |span: regex_automata::Span| {
            span.end
                .min(range.end)
                .saturating_sub(span.start.max(range.start))
        };
        let mut best: Option<(usize, usize, Attribution)> = None;
        let groups = self.spans.len() + 2;
        for group in 1..=groups {
            let Some(span) = caps.get_group(group) else {
                continue;
            };
            let covered = overlap(span);
            if covered == 0 {
                continue;
            }
            let (width, attribution) = if group == self.spans.len() + 1 {
                (usize::MAX, Attribution::Prefix)
            } else if group == self.spans.len() + 2 {
                (usize::MAX, Attribution::Suffix)
            } else {
                let span = self.spans[group - 1].clone();
                (span.len(), Attribution::Span(span))
            };
            // Most of the range first; among equals, the smallest part of the pattern, unless
            // a repetition of it (`[b-z]+` over `[b-z]`).
            let repeats_over = |outer: &Attribution, inner: &Attribution| match (outer, inner) {
                (Attribution::Span(outer), Attribution::Span(inner)) => {
                    outer.start <= inner.start
                        && inner.end <= outer.end
                        && outer != inner
                        && self
                            .spans
                            .iter()
                            .position(|s| s == outer)
                            .is_some_and(|i| self.repeats[i])
                }
                _ => false,
            };
            let better = match &best {
                None => true,
                Some((c, w, held)) => {
                    covered > *c
                        || (covered == *c
                            && (repeats_over(&attribution, held)
                                || (width < *w && !repeats_over(held, &attribution))))
                }
            };
            if better {
                best = Some((covered, width, attribution));
            }
        }
        best.map(|(_, _, a)| a)
    }
}

#[cfg(test)]
mod tests;
