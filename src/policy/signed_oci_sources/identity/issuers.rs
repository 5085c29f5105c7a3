//! Who issues which identities: the OIDC issuers the public Sigstore instance certifies, what
//! their certificates' subjects look like, and the email domains anyone can have an address at.

/// The issuers the public Sigstore instance (Fulcio at sigstore.dev) certifies, from Fulcio's
/// `config/identity/config.yaml`. Of GitLab instances it serves only gitlab.com and a few
/// run by GitLab and Arch Linux: a self-managed GitLab needs its own Sigstore, which Flux
/// trusts through `verify.trustedRootSecretRef`.
const PUBLIC_SIGSTORE_ISSUERS: &[&str] = &[
    "https://accounts.google.com",
    "https://agent.buildkite.com",
    "https://auth.eclipse.org/auth/realms/foundation-service-accounts",
    "https://dev.gitlab.org",
    "https://gitlab.archlinux.org",
    "https://gitlab.com",
    "https://issuer.chainops.dev",
    "https://issuer.enforce.dev",
    "https://issuer.hello.coop",
    "https://oauth2.sigstore.dev/auth",
    "https://oidc.circleci.com",
    "https://oidc.codefresh.io",
    "https://ops.gitlab.net",
    "https://sigstore.verify.ibm.com/oauth2",
    "https://token.actions.githubusercontent.com",
    "https://www.kaggle.com/api/v1/models/signing",
];

/// Fulcio's meta-issuers: `*` stands for one or more of `[-_a-zA-Z0-9]`.
const PUBLIC_SIGSTORE_META_ISSUERS: &[&str] = &[
    "https://*.oic.prod-aks.azure.com/*",
    "https://container.googleapis.com/v1/projects/*/locations/*/clusters/*",
    "https://oidc.circleci.com/org/*",
    "https://oidc.eks.*.amazonaws.com/id/*",
    "https://oidc.prod-aks.azure.com/*",
    "https://token.actions.githubusercontent.com/*",
];

/// The issuers the public Sigstore instance certifies, as a language of lower-case strings
/// (meta-issuers' `*` as `[-_a-z0-9]+`); built once.
pub(super) fn public_language() -> Option<&'static super::language::Language> {
    static PUBLIC: std::sync::OnceLock<Option<super::language::Language>> =
        std::sync::OnceLock::new();
    PUBLIC
        .get_or_init(|| {
            let alternatives: Vec<String> = PUBLIC_SIGSTORE_ISSUERS
                .iter()
                .chain(PUBLIC_SIGSTORE_META_ISSUERS)
                .map(|issuer| {
                    issuer
                        .split('*')
                        .map(regex_syntax::escape)
                        .collect::<Vec<_>>()
                        .join("[-_a-z0-9]+")
                })
                .collect();
            let pattern = format!("^(?:{})$", alternatives.join("|"));
            let hir = regex_syntax::parse(&pattern).ok()?;
            super::language::Language::new(hir, false, &super::language::LIMITS).ok()
        })
        .as_ref()
}

/// Whether the public Sigstore instance issues certificates for this OIDC issuer.
pub fn is_public_sigstore_issuer(issuer: &str) -> bool {
    let issuer = issuer.trim_end_matches('/');
    // Issuers are written in lower case; a copy is made only for one that is not.
    let lowered;
    let issuer = if issuer.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = issuer.to_ascii_lowercase();
        lowered.as_str()
    } else {
        issuer
    };
    PUBLIC_SIGSTORE_ISSUERS.contains(&issuer)
        || PUBLIC_SIGSTORE_META_ISSUERS
            .iter()
            .any(|meta| meta_issuer_matches(meta, issuer))
}

fn meta_issuer_matches(meta: &str, issuer: &str) -> bool {
    match meta.split_once('*') {
        None => meta == issuer,
        Some((literal, rest)) => {
            let Some(tail) = issuer.strip_prefix(literal) else {
                return false;
            };
            let run = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(tail.len());
            (1..=run).any(|n| meta_issuer_matches(rest, &tail[n..]))
        }
    }
}

/// What a certificate's subject names, by issuer (Fulcio's `config/identity/config.yaml`
/// gives each issuer a type; the subject formats are GitLab's and GitHub's OIDC token
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKind {
    /// GitLab CI (`gitlab-pipeline`): `https://<host>/<project path>//<CI config>@<ref>`.
    GitLab,
    /// GitHub Actions (`github-workflow`): `https://github.com/<owner>/<repo>/<workflow>@<ref>`.
    GitHub,
    /// An email address (`email`): Google accounts, Sigstore's own Dex, Hello.
    Email,
    /// Any other issuer, public or private, whose subjects fluxgate does not know.
    Other,
}

/// GitLab instances the public Sigstore instance certifies (type `gitlab-pipeline`).
const PUBLIC_GITLAB_ISSUERS: &[&str] = &[
    "https://dev.gitlab.org",
    "https://gitlab.archlinux.org",
    "https://gitlab.com",
    "https://ops.gitlab.net",
];

/// Issuers of type `email` in Fulcio's configuration.
const EMAIL_ISSUERS: &[&str] = &[
    "https://accounts.google.com",
    "https://issuer.hello.coop",
    "https://oauth2.sigstore.dev/auth",
];

/// The kind of a known issuer; [`IssuerKind::Other`] for the rest.
pub fn issuer_kind(issuer: &str) -> IssuerKind {
    let issuer = issuer.trim_end_matches('/').to_ascii_lowercase();
    if PUBLIC_GITLAB_ISSUERS.contains(&issuer.as_str()) {
        IssuerKind::GitLab
    } else if issuer == "https://token.actions.githubusercontent.com"
        || meta_issuer_matches("https://token.actions.githubusercontent.com/*", &issuer)
    {
        IssuerKind::GitHub
    } else if EMAIL_ISSUERS.contains(&issuer.as_str()) {
        IssuerKind::Email
    } else {
        IssuerKind::Other
    }
}

/// Email domains where anyone can open an address: never a `trustedEmailDomains` entry.
/// The large public webmail providers, and the address GitHub gives every account (which
/// Sigstore's Dex can certify through a GitHub login).
pub const PUBLIC_EMAIL_DOMAINS: &[&str] = &[
    "126.com",
    "163.com",
    "aim.com",
    "aol.com",
    "fastmail.com",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.fr",
    "icloud.com",
    "inbox.ru",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "naver.com",
    "outlook.com",
    "outlook.de",
    "pm.me",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "tuta.io",
    "tutanota.com",
    "users.noreply.github.com",
    "web.de",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.de",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "ymail.com",
    "zoho.com",
];

/// Whether anyone can have an address at `domain` (or a subdomain of a listed one).
pub fn is_public_email_domain(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    PUBLIC_EMAIL_DOMAINS.iter().any(|public| {
        domain == *public
            || domain
                .strip_suffix(public)
                .is_some_and(|head| head.ends_with('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_sigstore_issuers_include_meta_issuers() {
        assert!(is_public_sigstore_issuer("https://gitlab.com"));
        assert!(is_public_sigstore_issuer("https://gitlab.com/"));
        assert!(is_public_sigstore_issuer(
            "https://token.actions.githubusercontent.com/acme"
        ));
        assert!(is_public_sigstore_issuer(
            "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123"
        ));
        assert!(!is_public_sigstore_issuer("https://gitlab.example.com"));
        assert!(!is_public_sigstore_issuer(
            "https://oidc.eks..amazonaws.com/id/x"
        ));
        assert!(!is_public_sigstore_issuer(
            "https://token.actions.githubusercontent.com/a/b"
        ));
    }

    #[test]
    fn issuers_are_told_apart_by_what_their_subjects_name() {
        assert_eq!(issuer_kind("https://gitlab.com/"), IssuerKind::GitLab);
        assert_eq!(
            issuer_kind("https://token.actions.githubusercontent.com/acme"),
            IssuerKind::GitHub
        );
        assert_eq!(
            issuer_kind("https://accounts.google.com"),
            IssuerKind::Email
        );
        assert_eq!(issuer_kind("https://gitlab.example.com"), IssuerKind::Other);
        assert_eq!(
            issuer_kind("https://agent.buildkite.com"),
            IssuerKind::Other
        );
    }

    #[test]
    fn public_webmail_domains_and_their_subdomains_are_public() {
        assert!(is_public_email_domain("gmail.com"));
        assert!(is_public_email_domain("GMail.com."));
        assert!(is_public_email_domain("users.noreply.github.com"));
        assert!(!is_public_email_domain("acme.com"));
        assert!(!is_public_email_domain("notgmail.com"));
    }
}
