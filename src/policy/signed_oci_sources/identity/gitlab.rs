//! GitLab CI subjects, read the way GitLab writes them.
//!
//! Fulcio certifies a GitLab pipeline with the subject `https://` + the ID token's
//! `ci_config_ref_uri` claim (GitLab's "OpenID Connect (OIDC) Authentication Using ID Tokens"
//! and "Use Sigstore for keyless signing"):
//!
//! ```text
//! https://gitlab.com/acme/platform/app//.gitlab-ci.yml@refs/heads/main
//!         host      full project path  CI config path  ref
//! ```
//!
//! GitLab puts the claim in a token only when the pipeline's configuration is a file of the
//! project's own repository (never for a configuration in another project or at a URL), and
//! its ref is `refs/heads/<branch>` or `refs/tags/<tag>` (a merge request pipeline carries
//! its source branch). [`SubjectReader`] reads what follows `https://<host>/` in that form:
//!
//! - the **full project path**, up to the first `//` (a GitLab path has no empty segment, so
//!   the first `//` always ends it);
//! - the **CI config path**, up to the first `@refs/` (a repository file path that contains
//!   `@refs/` is assumed never to be a project's CI config path);
//! - the **ref**: `heads/<branch>` or `tags/<tag>`. A string with any other ref, or without
//!   `//` or `@refs/`, is no subject GitLab writes, and names nobody.
//!
//! Splitting at the *first* `@refs/` is what an attacker's subject looks like: the config
//! path is a project setting only Maintainers change, while a Developer chooses branch names,
//! and a branch may be named `x@refs/heads/main` (git allows `@` in a ref). A pattern whose
//! config path part also accepts `@refs/heads/` therefore accepts branches of every name.

use regex_automata::util::primitives::StateID;

use super::language::{
    Exceeded, Graph, Language, Limits, Part, Reader, START, Shape, readable_rank,
};

/// The reader's phases (`Shape::s`); `Shape::e` is the progress within one.
pub mod g {
    /// The full project path; `e` is [`super::path::START`] and so on.
    pub const PATH: u8 = 0;
    /// The CI config path; `e` is how much of `@refs/` was just read.
    pub const CONFIG: u8 = 1;
    /// After `@refs/`; `e` is how much of `heads/` (1-6) or `tags/` (11-15) was read.
    pub const REF: u8 = 2;
    /// A branch name; `e` is 1 right after `heads/`, 0 further on.
    pub const BRANCH: u8 = 3;
    /// A tag name.
    pub const TAG: u8 = 4;
    /// No subject GitLab writes.
    pub const NONE: u8 = 5;
}

/// Progress within the full project path (`Shape::e` in [`g::PATH`]). A project path has at
/// least two segments (a namespace and the project: GitLab has no project outside one), none
/// of them empty.
pub mod path {
    /// Right after the host's `/`.
    pub const START: u8 = 1;
    /// In the first segment (the top-level namespace).
    pub const FIRST: u8 = 0;
    /// Right after the first segment's `/`: a second `/` would end a one-segment path.
    pub const AFTER_FIRST: u8 = 4;
    /// In a later segment.
    pub const LATER: u8 = 3;
    /// Right after a later segment's `/`: a second `/` ends the path.
    pub const AFTER_LATER: u8 = 2;
}

/// The state right after `@refs/heads/`.
pub const BRANCH_ENTRY: Shape = Shape { s: g::BRANCH, e: 1 };

/// What a subject that ends in a state is (`Graph::accept` bits).
pub const BRANCH_END: u8 = 1;
pub const TAG_END: u8 = 2;
/// Every GitLab subject.
pub const SUBJECT: u8 = BRANCH_END | TAG_END;

const REFS: &[u8] = b"@refs/";
const HEADS: &[u8] = b"heads/";
const TAGS: &[u8] = b"tags/";
/// `Shape::e` of the progress through `tags/` starts here.
const TAGS_BASE: u8 = 10;

/// Reads `<full project path>//<CI config path>@refs/<heads|tags>/<name>`.
pub struct SubjectReader;

impl Reader for SubjectReader {
    fn start(&self) -> Shape {
        // The `/` after the host was read.
        Shape {
            s: g::PATH,
            e: path::START,
        }
    }

    fn step(&self, state: Shape, b: u8) -> Shape {
        let at = |s, e| Shape { s, e };
        match state.s {
            g::PATH => match (state.e, b == b'/') {
                // An empty segment, or `//` after one segment: no project path.
                (path::START | path::AFTER_FIRST, true) => at(g::NONE, 0),
                (path::AFTER_LATER, true) => at(g::CONFIG, 0),
                (path::START | path::FIRST, false) => at(g::PATH, path::FIRST),
                (path::FIRST, true) => at(g::PATH, path::AFTER_FIRST),
                (_, false) => at(g::PATH, path::LATER),
                (_, true) => at(g::PATH, path::AFTER_LATER),
            },
            g::CONFIG => {
                let read = usize::from(state.e);
                if b == REFS[read] {
                    if read + 1 == REFS.len() {
                        at(g::REF, 0)
                    } else {
                        at(g::CONFIG, state.e + 1)
                    }
                } else {
                    // `@refs/` repeats no prefix of itself but its `@`.
                    at(g::CONFIG, u8::from(b == b'@'))
                }
            }
            g::REF => {
                let (word, read, base) = match state.e {
                    0 if b == HEADS[0] => return at(g::REF, 1),
                    0 if b == TAGS[0] => return at(g::REF, TAGS_BASE + 1),
                    0 => return at(g::NONE, 0),
                    e if e >= TAGS_BASE => (TAGS, usize::from(e - TAGS_BASE), TAGS_BASE),
                    e => (HEADS, usize::from(e), 0),
                };
                if b != word[read] {
                    at(g::NONE, 0)
                } else if read + 1 < word.len() {
                    at(g::REF, state.e + 1)
                } else if base == 0 {
                    at(g::BRANCH, 1)
                } else {
                    at(g::TAG, 0)
                }
            }
            g::BRANCH => at(g::BRANCH, 0),
            g::TAG => at(g::TAG, 0),
            _ => at(g::NONE, 0),
        }
    }

    fn category(&self, b: u8) -> u8 {
        match b {
            b'/' => 1,
            b'@' => 2,
            b'r' => 3,
            b'e' => 4,
            b'f' => 5,
            b's' => 6,
            b'h' => 7,
            b'a' => 8,
            b'd' => 9,
            b't' => 10,
            b'g' => 11,
            _ => 0,
        }
    }

    fn at_end(&self, state: Shape) -> u8 {
        match state.s {
            g::BRANCH => BRANCH_END,
            g::TAG => TAG_END,
            _ => 0,
        }
    }
}

/// The subjects a language accepts under `https://<host>/`, read by [`SubjectReader`]; `None`
/// when it accepts none.
pub fn graph(language: &Language, host: &str, limits: &Limits) -> Result<Option<Graph>, Exceeded> {
    let prefix = format!("https://{host}/");
    let Some(start): Option<StateID> = language.walk(language.start(), prefix.as_bytes()) else {
        return Ok(None);
    };
    Graph::build(language, start, &SubjectReader, limits).map(Some)
}

/// The full project paths of the subjects, each counted with the `//` that ends it.
pub fn project_paths(g: &Graph) -> Part<'_> {
    Part {
        graph: g,
        start: START,
        inside: Box::new(move |n| g.shape[n as usize].s == g::PATH),
        ends_at: Box::new(move |_| false),
        ends_by: Box::new(move |from, to| {
            g.shape[from as usize].s == g::PATH
                && g.shape[to as usize].s == g::CONFIG
                && g.live[to as usize] & SUBJECT != 0
        }),
    }
}

/// The nodes right after `@refs/heads/` from which a subject can still be accepted: each
/// starts the branch names of some project and config path.
pub fn branch_entries(g: &Graph) -> Vec<u32> {
    (0..g.len() as u32)
        .filter(|&n| g.shape[n as usize] == BRANCH_ENTRY && g.live[n as usize] & BRANCH_END != 0)
        .collect()
}

/// The branch names that follow one entry.
pub fn branch_names(g: &Graph, entry: u32) -> Part<'_> {
    Part {
        graph: g,
        start: entry,
        inside: Box::new(move |n| g.shape[n as usize].s == g::BRANCH),
        ends_at: Box::new(move |n| g.accept[n as usize] & BRANCH_END != 0),
        ends_by: Box::new(move |_, _| false),
    }
}

/// The shortest branch name after `entry` that contains `@refs/`: a branch that swallows the
/// ref a pattern's config path part was meant to end at. Readably spelled.
pub fn swallowing_branch(g: &Graph, entry: u32) -> Option<Vec<u8>> {
    use std::collections::{HashMap, VecDeque};
    // (node, how much of `@refs/` was read; REFS.len() once it was).
    let start = (entry, 0usize);
    let mut parent: HashMap<(u32, usize), ((u32, usize), u8)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    parent.insert(start, (start, 0));
    while let Some((node, read)) = queue.pop_front() {
        if read == REFS.len() && g.accept[node as usize] & BRANCH_END != 0 {
            let mut text = Vec::new();
            let mut at = (node, read);
            while at != start {
                let (from, b) = parent[&at];
                text.push(b);
                at = from;
            }
            text.reverse();
            return Some(text);
        }
        let mut next: Vec<((u32, usize), u8)> = Vec::new();
        for &(class, to) in g.edges(node) {
            if g.shape[to as usize].s != g::BRANCH || g.live[to as usize] & BRANCH_END == 0 {
                continue;
            }
            for &b in g.members(class) {
                let read = if read == REFS.len() {
                    read
                } else if b == REFS[read] {
                    read + 1
                } else {
                    usize::from(b == b'@')
                };
                let state = (to, read);
                if parent.contains_key(&state) {
                    continue;
                }
                match next.iter_mut().find(|(s, _)| *s == state) {
                    Some(held) if readable_rank(b) < readable_rank(held.1) => held.1 = b,
                    Some(_) => {}
                    None => next.push((state, b)),
                }
            }
        }
        for (state, b) in next {
            parent.insert(state, ((node, read), b));
            queue.push_back(state);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Shape {
        text.bytes().fold(SubjectReader.start(), |state, b| {
            SubjectReader.step(state, b)
        })
    }

    #[test]
    fn the_reader_splits_at_the_first_double_slash_and_the_first_at_refs() {
        let end = |text: &str| SubjectReader.at_end(read(text));
        assert_eq!(end("acme/app//.gitlab-ci.yml@refs/heads/main"), BRANCH_END);
        assert_eq!(end("acme/app//.gitlab-ci.yml@refs/tags/v1"), TAG_END);
        assert_eq!(end("acme/sub/app//ci/build.yml@refs/tags/v1"), TAG_END);
        // A branch named `x@refs/tags/v1` is a branch.
        assert_eq!(
            end("acme/app//.gitlab-ci.yml@refs/heads/x@refs/tags/v1"),
            BRANCH_END
        );
        // `@@refs/` still finds `@refs/`.
        assert_eq!(end("acme/app//a@@refs/heads/main"), BRANCH_END);
        // No subject GitLab writes.
        for text in [
            "acme/app",
            // A project path has a namespace and a project, no empty segment.
            "acme//.gitlab-ci.yml@refs/heads/main",
            "/acme/app//.gitlab-ci.yml@refs/heads/main",
            "acme///.gitlab-ci.yml@refs/heads/main",
            "acme/app//.gitlab-ci.yml",
            "acme/app//.gitlab-ci.yml@main",
            "acme/app//.gitlab-ci.yml@refs/merge-requests/1/head",
            "acme/app//.gitlab-ci.yml@refs/HEADS/main",
            "acme/app//.gitlab-ci.yml@refs/tag",
        ] {
            assert_eq!(end(text), 0, "{text}");
        }
        assert_eq!(read("acme/app//").s, g::CONFIG);
        assert_eq!(read("acme/app/").s, g::PATH);
        assert_eq!(
            read("acme/app//x@refs/heads/"),
            Shape { s: g::BRANCH, e: 1 }
        );
    }

    #[test]
    fn categories_keep_apart_every_byte_the_reader_tells_apart() {
        // Bytes of one category must step every state alike.
        let states: Vec<Shape> = (0..=5u8)
            .flat_map(|s| (0..=16u8).map(move |e| Shape { s, e }))
            .filter(|state| {
                // Reachable progress values only.
                match state.s {
                    g::PATH => state.e <= 4,
                    g::CONFIG => usize::from(state.e) < REFS.len(),
                    g::REF => {
                        usize::from(state.e) < HEADS.len()
                            || (TAGS_BASE + 1..TAGS_BASE + TAGS.len() as u8).contains(&state.e)
                    }
                    g::BRANCH => state.e <= 1,
                    _ => state.e == 0,
                }
            })
            .collect();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                if SubjectReader.category(a) != SubjectReader.category(b) {
                    continue;
                }
                for &state in &states {
                    assert_eq!(
                        SubjectReader.step(state, a),
                        SubjectReader.step(state, b),
                        "{state:?} {a} {b}"
                    );
                }
            }
        }
    }
}
