use super::*;

const NO_DOMAIN: &dyn Fn(&str) -> bool = &|_| false;

fn subjects(pattern: &str) -> Subjects {
    match analyze_subject(pattern, &["gitlab.com", "github.com"]) {
        SubjectBreadth::Judged(subjects) => *subjects,
        SubjectBreadth::Invalid(e) => panic!("{pattern}: invalid: {e}"),
    }
}

/// Why a subject is broad for the GitLab.com issuer, if it is.
fn gitlab(pattern: &str) -> Option<Broad> {
    subjects(pattern).broad(SubjectRule::GitLab { host: "gitlab.com" }, NO_DOMAIN)
}

/// Why a subject is broad for the GitHub issuer, if it is.
fn github(pattern: &str) -> Option<Broad> {
    subjects(pattern).broad(SubjectRule::Namespaces { host: "github.com" }, NO_DOMAIN)
}

fn email(pattern: &str) -> Option<Broad> {
    subjects(pattern).broad(SubjectRule::Emails, NO_DOMAIN)
}

fn whole(pattern: &str) -> Option<Broad> {
    subjects(pattern).broad(SubjectRule::Whole, NO_DOMAIN)
}

/// Every issuer a specific pattern accepts.
fn issuers(pattern: &str) -> Vec<String> {
    match analyze_issuer(pattern) {
        Breadth::Specific(Issuers {
            listed: Some(listed),
            ..
        }) => listed,
        other => panic!("{pattern}: {other:?}"),
    }
}

fn public(pattern: &str) -> Vec<String> {
    match analyze_issuer(pattern) {
        Breadth::Specific(issuers) => issuers.public,
        other => panic!("{pattern}: {other:?}"),
    }
}

fn issuer_broad(pattern: &str) -> Broad {
    match analyze_issuer(pattern) {
        Breadth::Broad(broad) => broad,
        other => panic!("{pattern}: expected broad, got {other:?}"),
    }
}

#[test]
fn an_issuer_is_the_set_of_issuers_it_accepts() {
    assert_eq!(issuers(r"^https://gitlab\.com$"), ["https://gitlab.com"]);
    assert_eq!(issuers(r"^\Qhttps://gitlab.com\E$"), ["https://gitlab.com"]);
    let mut both = issuers(r"^https://(gitlab\.com|evil\.example)/?$");
    both.sort();
    assert_eq!(
        both,
        [
            "https://evil.example",
            "https://evil.example/",
            "https://gitlab.com",
            "https://gitlab.com/"
        ]
    );
}

#[test]
fn an_unescaped_dot_accepts_issuers_only_a_private_sigstore_could_certify() {
    // `.` stands for any character: `githubusercontentXcom` is another issuer, finitely many
    // of them, none of which the public Sigstore instance certifies.
    let dotted = "^https://token.actions.githubusercontent.com$";
    assert_eq!(
        public(dotted),
        ["https://token.actions.githubusercontent.com"]
    );
    match analyze_issuer(dotted) {
        Breadth::Specific(issuers) => assert_eq!(issuers.listed, None),
        other => panic!("{other:?}"),
    }
    // Meta-issuers make infinitely many public ones.
    let broad = issuer_broad(r"^https://token\.actions\.githubusercontent\.com");
    assert!(broad.reason.contains("not anchored with $"), "{broad:?}");
    let broad = issuer_broad(r"^https://oidc\.eks\.[a-z0-9-]+\.amazonaws\.com/id/[A-Z0-9]+$");
    assert!(broad.reason.contains("infinitely many"), "{broad:?}");
}

#[test]
fn letter_case_does_not_make_two_issuers() {
    assert_eq!(
        issuers(r"(?i)^https://GitLab\.com$"),
        ["https://gitlab.com"]
    );
    assert_eq!(
        issuers(r"^https://[Gg]it[Ll]ab\.com$"),
        ["https://gitlab.com"]
    );
    assert!(is_public_sigstore_issuer("HTTPS://GITLAB.COM"));
}

#[test]
fn unanchored_issuers_are_broad_with_the_anchor_named() {
    let broad = issuer_broad(r"^https://gitlab\.com");
    assert_eq!(broad.example, "https://gitlab.com.attacker.invalid");
    assert!(broad.reason.contains("not anchored with $"), "{broad:?}");
    let broad = issuer_broad("gitlab");
    assert!(broad.reason.contains("not anchored with ^"), "{broad:?}");
    let broad = issuer_broad(".*");
    assert!(broad.reason.contains("unrelated"), "{broad:?}");
}

#[test]
fn issuers_past_the_eighth_alternative_are_all_listed() {
    // Each is checked against trustedIssuers: the ninth is not left out.
    let nine = r"^https://(a|b|c|d|e|f|g|h|evil)\.example$";
    let listed = issuers(nine);
    assert_eq!(listed.len(), 9);
    assert!(listed.contains(&"https://evil.example".to_string()));
    // Public ones past the eighth are too many to be written out.
    let public_ones = r"^https://(gitlab\.com|accounts\.google\.com|token\.actions\.githubusercontent\.com|agent\.buildkite\.com|dev\.gitlab\.org|gitlab\.archlinux\.org|ops\.gitlab\.net|issuer\.hello\.coop|oidc\.circleci\.com)$";
    assert!(issuer_broad(public_ones).reason.contains("more than 8"));
}

#[test]
fn a_pinned_gitlab_subject_is_specific() {
    for pattern in [
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/(heads/main|tags/v.*)$",
        r"^https://gitlab\.com/(?:acme|web)/app//\.gitlab-ci\.yml@refs/heads/main$",
        // Nested subgroups, written out.
        r"^https://gitlab\.com/acme/platform/deploy/app//\.gitlab-ci\.yml@refs/heads/main$",
        // Any tag: GitLab protects tags as it protects branches.
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/tags/.*$",
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/tags/",
        // The CI config path may stay open, as long as it cannot swallow `@refs/`.
        r"^https://gitlab\.com/acme/app//[^@]+@refs/heads/main$",
        r"^https://gitlab\.com/acme/app//[^@]*@refs/tags/v[0-9.]+$",
        // A few named branches.
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/(main|release-1\.2)$",
        // Case-insensitive over the project path only: GitLab paths are unique whatever the case.
        r"(?i:^https://gitlab\.com/ACME/App)//\.gitlab-ci\.yml@refs/heads/main$",
        // Names nobody GitLab.com certifies: not a GitLab subject.
        r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@main$",
    ] {
        assert_eq!(gitlab(pattern), None, "{pattern}");
    }
}

#[test]
fn a_gitlab_group_is_not_a_principal_its_projects_are() {
    // Any project, in any subgroup, of acme: everyone who may create a project in acme.
    for pattern in [
        r"^https://gitlab\.com/acme/.*$",
        r"^https://gitlab\.com/acme/.+//\.gitlab-ci\.yml@refs/heads/main$",
        r"^https://gitlab\.com/acme/[a-z]+/[^/]+//\.gitlab-ci\.yml@refs/heads/main$",
        r"^https://gitlab\.com/acme/app.*//\.gitlab-ci\.yml@refs/heads/main$",
        r"^https://gitlab\.com/acme/(app|web|[^/]+/app)//\.gitlab-ci\.yml@refs/heads/main$",
    ] {
        let broad = gitlab(pattern).unwrap_or_else(|| panic!("{pattern} is specific"));
        assert!(
            broad.reason.contains("does not pin the full project path"),
            "{pattern}: {broad:?}"
        );
        assert!(
            broad.reason.contains(r"`^https://gitlab\.com/acme/")
                && broad
                    .reason
                    .contains(r"<project>//\.gitlab-ci\.yml@refs/heads/main$`"),
            "{pattern}: the fix keeps the group: {broad:?}"
        );
    }
    // The open part is named, with paths it accepts and one accepted subject.
    let broad =
        gitlab(r"^https://gitlab\.com/acme/.+//\.gitlab-ci\.yml@refs/heads/main$").expect("broad");
    assert!(
        broad
            .reason
            .contains("`.+` accepts infinitely many project paths"),
        "{broad:?}"
    );
    assert!(broad.reason.contains("`acme/attacker`"), "{broad:?}");
    assert!(
        broad.example.starts_with("https://gitlab.com/acme/")
            && broad.example.ends_with("//.gitlab-ci.yml@refs/heads/main"),
        "{broad:?}"
    );
    // Nine projects are more than eight.
    let nine: Vec<String> = (1..=9).map(|i| format!("app{i}")).collect();
    let pattern = format!(
        r"^https://gitlab\.com/acme/(?:{})//\.gitlab-ci\.yml@refs/heads/main$",
        nine.join("|")
    );
    assert!(
        gitlab(&pattern)
            .expect("broad")
            .reason
            .contains("more than 8 project paths")
    );
    assert_eq!(gitlab(&pattern.replace("|app9", "")), None);
}

#[test]
fn a_gitlab_branch_must_be_named_and_tags_may_stay_open() {
    for (pattern, why) in [
        (
            r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/.*$",
            "`.*` accepts infinitely many branches",
        ),
        (
            r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@.*$",
            "`.*` accepts infinitely many branches",
        ),
        (
            r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main",
            "not anchored with $",
        ),
        (
            r"^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/release-[0-9]$",
            "more than 8 branches",
        ),
        // An open config path that swallows `@refs/heads/`: a branch named
        // `attacker@refs/heads/main` matches.
        (
            r"^https://gitlab\.com/acme/app//.*@refs/heads/main$",
            "a branch named `attacker@refs/heads/main`",
        ),
        (
            r"^https://gitlab\.com/acme/app//.*@refs/tags/.*$",
            "a branch named `attacker@refs/tags/",
        ),
        (
            r"^https://gitlab\.com/acme/app//.+\.yml@refs/heads/main$",
            "a branch named `attacker.yml@refs/heads/main`",
        ),
        // `(?i)` over the ref: `MAIN` is another branch.
        (
            r"(?i)^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$",
            "`refs/heads/MAIN`",
        ),
    ] {
        let broad = gitlab(pattern).unwrap_or_else(|| panic!("{pattern} is specific"));
        assert!(
            broad.reason.contains("does not pin the branch"),
            "{pattern}: {broad:?}"
        );
        assert!(broad.reason.contains(why), "{pattern}: {broad:?}");
        assert!(
            broad
                .reason
                .contains(r"`^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/heads/main$`")
                && broad
                    .reason
                    .contains(r"`^https://gitlab\.com/acme/app//\.gitlab-ci\.yml@refs/tags/.*$`"),
            "{pattern}: the fix: {broad:?}"
        );
    }
}

#[test]
fn a_group_anyone_can_create_is_broad_with_the_open_part_named() {
    // The issue's example: any group made of the letters b to z.
    let broad = gitlab(r"^https://gitlab\.com/[b-z]+/app//\.gitlab-ci\.yml@refs/heads/main$")
        .expect("broad");
    assert!(
        broad.reason.contains("does not pin the full project path"),
        "{broad:?}"
    );
    assert!(broad.reason.contains("`[b-z]+`"), "{broad:?}");
    assert!(
        broad.example.starts_with("https://gitlab.com/b"),
        "{broad:?}"
    );
    assert!(broad.reason.contains("`c/app`"), "{broad:?}");
    // Finite is not enough: 25 one-letter groups, and 18,278 short ones.
    for open in [r"[b-z]", r"[a-z]{1,3}", r"\w", r"[[:alpha:]]", r"\pL{1,2}"] {
        let pattern =
            format!(r"^https://gitlab\.com/{open}/app//\.gitlab-ci\.yml@refs/heads/main$");
        assert!(gitlab(&pattern).is_some(), "{pattern}");
    }
    // Twins that name their groups pass.
    for named in [
        r"acme",
        r"(?:acme|web)",
        r"[a]cme",
        r"a{1}cme",
        r"(?i:ACME)",
    ] {
        let pattern =
            format!(r"^https://gitlab\.com/{named}/app//\.gitlab-ci\.yml@refs/heads/main$");
        assert_eq!(gitlab(&pattern), None, "{pattern}");
    }
}

#[test]
fn an_alternative_past_the_eighth_opens_the_group() {
    let named: Vec<String> = (1..=8).map(|i| format!("team{i}")).collect();
    let eight = format!(
        r"^https://gitlab\.com/(?:{})/app//\.gitlab-ci\.yml@refs/heads/main$",
        named.join("|")
    );
    assert_eq!(gitlab(&eight), None);
    let open = format!(
        r"^https://gitlab\.com/(?:{}|[^/]+)/app//\.gitlab-ci\.yml@refs/heads/main$",
        named.join("|")
    );
    let broad = gitlab(&open).expect("broad");
    assert!(
        broad.reason.contains("does not pin the full project path"),
        "{broad:?}"
    );
    let nine = format!(
        r"^https://gitlab\.com/(?:{}|team9)/app//\.gitlab-ci\.yml@refs/heads/main$",
        named.join("|")
    );
    assert!(gitlab(&nine).is_some());
}

#[test]
fn a_word_boundary_does_not_end_a_group_name() {
    // `\b` holds between `acme` and `-evil`: project acme-evil/app matches.
    let broad = gitlab(r"^https://gitlab\.com/acme\b.*/app//\.gitlab-ci\.yml@refs/heads/main$")
        .expect("broad");
    assert!(
        broad.reason.contains("does not pin the full project path"),
        "{broad:?}"
    );
    assert_eq!(
        gitlab(r"^https://gitlab\.com/acme\b/app//\.gitlab-ci\.yml@refs/heads/main$"),
        None
    );
    // Go's \b is ASCII: `é` is not a word character, so `acmeé` is another group.
    assert!(gitlab(r"^https://gitlab\.com/acme\B").is_some());
    let broad = github(r"^https://github\.com/acme\b").expect("broad");
    assert!(broad.reason.contains("does not pin the group"), "{broad:?}");
    assert_eq!(github(r"^https://github\.com/acme\b/"), None);
}

#[test]
fn github_owners_must_be_named() {
    for pattern in [
        r"^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*$",
        // GitHub keeps the owner rule: Flux's documented examples name an owner and leave
        // the rest open.
        "^https://github.com/stefanprodan/podinfo.*$",
        r"^https://github\.com/fluxcd-testing/cosign-testing/\.github/workflows/release\.yml@refs/tags/.*",
        r"^https://github\.com/acme/.*$",
    ] {
        assert_eq!(github(pattern), None, "{pattern}");
        // None of these is a GitLab.com subject.
        assert_eq!(gitlab(pattern), None, "{pattern}");
    }
    for open in [r"[a-z]+", r"[^/]*", r"acme[a-z]", r"acme-?\w?"] {
        let pattern = format!(
            r"^https://github\.com/{open}/app/\.github/workflows/release\.yml@refs/heads/main$"
        );
        assert!(github(&pattern).is_some(), "{pattern}");
    }
    assert!(github(r"^https://github\.com/stefanprodan").is_some());
}

#[test]
fn the_host_must_be_named_too() {
    let broad =
        gitlab(r"^https://[^/]+/acme/app//\.gitlab-ci\.yml@refs/heads/main$").expect("broad");
    assert!(broad.reason.contains("does not pin the host"), "{broad:?}");
    let broad = gitlab(r"acme/app//\.gitlab-ci\.yml@refs/heads/main$").expect("broad");
    assert!(broad.reason.contains("not anchored with ^"), "{broad:?}");
}

#[test]
fn email_subjects_name_addresses_or_a_trusted_domain() {
    assert_eq!(gitlab(r"^release-bot@acme\.com$"), None);
    assert_eq!(gitlab(r"^(alice|bob)@acme\.com$"), None);
    let broad = gitlab(r"^release-bot@.*$").expect("broad");
    assert!(broad.reason.contains("email domain"), "{broad:?}");
    assert!(gitlab(r"^release-bot@acme\.com").is_some());
    // The same intent, two spellings, one verdict: every address at acme.com.
    let trusted: &dyn Fn(&str) -> bool = &|d| d == "acme.com";
    for pattern in [
        r"^[^@]+@acme\.com$",
        r"^[a-z0-9._-]+@acme\.com$",
        r"^[^@]*[^@]@acme\.com$",
    ] {
        let judged = subjects(pattern);
        let broad = judged
            .broad(SubjectRule::Emails, NO_DOMAIN)
            .unwrap_or_else(|| panic!("{pattern} is broad without trustedEmailDomains"));
        assert!(
            broad.reason.contains("every address at acme.com"),
            "{broad:?}"
        );
        assert_eq!(
            judged.broad(SubjectRule::Emails, trusted),
            None,
            "{pattern}"
        );
    }
    // Read as a GitLab subject, `[^@]+` also accepts `https://<any host>/<group>/@acme.com`.
    assert!(gitlab(r"^[^@]+@acme\.com$").is_some());
    assert_eq!(gitlab(r"^[a-z0-9._-]+@acme\.com$"), None);
    // A public webmail domain is broad, and named as such.
    let broad = email(r"^[a-z.]+@gmail\.com$").expect("broad");
    assert!(broad.reason.contains("public email domain"), "{broad:?}");
    // One named address at a webmail domain is one person.
    assert_eq!(email(r"^jane\.doe@gmail\.com$"), None);
}

#[test]
fn other_issuers_subjects_are_judged_whole() {
    // The Flux docs' custom Sigstore example pins only a host.
    assert!(whole(r"^https://ci.example.com/.*$").is_some());
    // Not under gitlab.com: a GitLab.com issuer certifies none of these.
    assert_eq!(gitlab(r"^https://ci\.example\.com/acme/.*$"), None);
    assert!(whole(r"^https://ci\.example\.com/acme/.*$").is_some());
    assert_eq!(
        whole(r"^https://kubernetes\.io/namespaces/ci/serviceaccounts/signer$"),
        None
    );
    assert!(whole(r"^https://kubernetes\.io/namespaces/[a-z]+/serviceaccounts/signer$").is_some());
}

#[test]
fn anything_at_all_is_unrelated() {
    for pattern in [
        ".*",
        "^.*$",
        ".+",
        "(.*)",
        ".*?",
        r"[\s\S]*",
        "^https://.*",
        ".*gitlab.*",
    ] {
        let broad = gitlab(pattern).unwrap_or_else(|| panic!("{pattern}"));
        assert!(broad.reason.contains("unrelated"), "{pattern}: {broad:?}");
    }
    let empty = gitlab("").expect("broad");
    assert!(empty.reason.contains("empty"));
}

#[test]
fn go_syntax_errors_are_invalid_and_rust_only_syntax_too() {
    for pattern in [
        "(",
        r"^https://gitlab\.com/(acme",
        "a**",
        "(?x)a",
        r"\p{Alphabetic}",
        "a{1001}",
    ] {
        assert!(
            matches!(analyze_subject(pattern, &[]), SubjectBreadth::Invalid(_)),
            "{pattern}"
        );
    }
    match analyze_issuer("(") {
        Breadth::Invalid(e) => assert!(e.contains("missing closing )"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn patterns_past_the_bounds_are_broad() {
    let long = format!("^{}$", "a".repeat(MAX_PATTERN_LEN));
    assert!(matches!(analyze_issuer(&long), Breadth::Broad(_)));
    let deep = format!(
        "{}a{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert!(gitlab(&deep).is_some());
    // A DFA that blows up: (a|b)*a(a|b){n} needs 2^n states.
    let blowup = r"^https://gitlab\.com/acme/(a|b)*a(a|b){24}$";
    let broad = gitlab(blowup).expect("broad");
    assert!(broad.reason.contains("analysis bound"), "{broad:?}");
}

#[test]
fn a_trusted_issuer_setting_gives_an_example() {
    let hir = regex_syntax::parse(r"https://gitlab\.(com|example\.org)").expect("parses");
    assert_eq!(
        an_accepted_string(&hir).as_deref(),
        Some("https://gitlab.com")
    );
}
