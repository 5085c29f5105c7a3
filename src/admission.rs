//! The AdmissionReview wire protocol (`admission.k8s.io/v1`).
//!
//! Decoding borrows from the request body and reads only the envelope; `object` and
//! `oldObject` stay raw JSON so that each policy parses just the fields it judges. This is
//! what keeps the webhook close to the cost of a server that reads only `request.uid`.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json_view::TextIndex;
use std::sync::Arc;

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not an AdmissionReview we can answer. Each maps to a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is not an AdmissionReview {API_VERSION}: {0}")]
    NotAdmissionReview(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has no uid")]
    MissingUid,
    #[error("JSON nesting deeper than {MAX_DEPTH} levels; no Kubernetes object is that deep")]
    TooDeep,
}

/// The deepest JSON nesting accepted in a review. Raw values are skipped without serde's
/// recursion limit, so depth is checked up front: a hostile body must not reach a parser
/// that recurses.
pub const MAX_DEPTH: usize = 100;

/// Whether the JSON text nests deeper than `max` arrays and objects. Brackets inside strings
/// do not count. Strings are most of a Kubernetes object's bytes, so they are skipped whole
/// (see [`crate::json_view`]) rather than byte by byte; and a body with at most
/// `max` opening brackets in all is not scanned at all.
fn nests_deeper_than(body: &[u8], max: usize) -> bool {
    // No deeper than there are opening brackets: most objects have fewer than `max` in all.
    if memchr::memchr2_iter(b'[', b'{', body).nth(max).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => match crate::json_view::string_end(body, i) {
                Some((end, _)) => {
                    i = end;
                    continue;
                }
                // An unterminated string: no bracket after it counts, and the parser refuses
                // the body anyway.
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
}

impl<'a> GroupVersionKind<'a> {
    pub fn new(group: &'a str, version: &'a str, kind: &'a str) -> Self {
        GroupVersionKind {
            group: Cow::Borrowed(group),
            version: Cow::Borrowed(version),
            kind: Cow::Borrowed(kind),
        }
    }

    /// Splits an object's `apiVersion` (`group/version`, or `version` for the core group).
    pub fn from_api_version(api_version: &'a str, kind: &'a str) -> Self {
        match api_version.rsplit_once('/') {
            Some((group, version)) => GroupVersionKind::new(group, version, kind),
            None => GroupVersionKind::new("", api_version, kind),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupVersionResource<'a> {
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    #[serde(borrow, default)]
    pub resource: Cow<'a, str>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default)]
    pub username: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "crate::json_view::borrowed::vec")]
    pub groups: Vec<Cow<'a, str>>,
}

/// The part of `request` that fluxgate reads. Unknown fields are ignored, as the API server
/// adds new ones over time.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow, default)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    #[serde(borrow, default)]
    pub resource: GroupVersionResource<'a>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub name: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[serde(borrow, default)]
    pub user_info: UserInfo<'a>,
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// The body's objects, found while the body was checked to be JSON, so that the policies'
    /// views of `object` and `oldObject` need not search for their members.
    #[serde(skip)]
    pub(crate) index: Option<Arc<TextIndex<'a>>>,
}

impl Request<'_> {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|ns| !ns.is_empty())
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(
        rename = "apiVersion",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    api_version: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

/// The envelope with its request decoded in the same pass.
#[derive(Deserialize)]
struct TypedEnvelope<'a> {
    #[serde(
        rename = "apiVersion",
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    api_version: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        deserialize_with = "crate::json_view::borrowed::option"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
}

/// Decodes an AdmissionReview body, borrowing from it.
///
/// A review as the API server sends it is checked and indexed in one pass over the body
/// ([`TextIndex`]), then read from the index (directly, or through serde when something in
/// it is unusual, [`read_indexed`]); anything else takes the step-by-step path,
/// which says precisely what is wrong. Both accept exactly the same bodies: the fast path
/// needs the whole body to be UTF-8 and JSON no deeper than [`MAX_DEPTH`], which the
/// step-by-step path needs of the request.
pub fn decode(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return decode_checked(body);
    };
    let Some(index) = TextIndex::of(text, MAX_DEPTH).map(Arc::new) else {
        return decode_checked(body);
    };
    if let Some(mut request) = read_indexed(&index) {
        request.index = Some(index);
        return Ok(request);
    }
    if let Ok(TypedEnvelope {
        api_version: Some(api_version),
        kind: Some(kind),
        request: Some(mut request),
    }) = crate::json_view::from_indexed(&index)
        && kind == "AdmissionReview"
        && api_version == API_VERSION
        && !request.uid.is_empty()
    {
        request.index = Some(index);
        return Ok(request);
    }
    decode_checked(body)
}

/// What the one-pass decode does not take: the nesting checked, then step by step.
fn decode_checked(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    if nests_deeper_than(body, MAX_DEPTH) {
        return Err(DecodeError::TooDeep);
    }
    decode_step_by_step(body)
}

/// The review read from its index without serde, for a body as the API server writes it:
/// serde's derived visitors matched every member's key a second time and went through a
/// deserializer per value, a sixth of a review's instructions. `None` for anything else (a
/// key or string with escapes, a member given twice, a value of another type, a wrong kind
/// or version, an empty uid), which the serde path reads or refuses as before: what this
/// returns is what that path returns for the same body.
fn read_indexed<'a>(index: &TextIndex<'a>) -> Option<Request<'a>> {
    use crate::json_view::{plain_string, plain_strings, raw_value};

    // serde refuses a declared member given twice, so this does not read it.
    fn once<'a>(slot: &mut Option<&'a str>, value: &'a str) -> Option<()> {
        slot.replace(value).is_none().then_some(())
    }
    fn text<'a>(value: Option<&'a str>) -> Option<Cow<'a, str>> {
        value.map_or(Some(Cow::Borrowed("")), |v| {
            plain_string(v).map(Cow::Borrowed)
        })
    }
    // `Option<Cow<str>>` and `Option<&RawValue>`: valid JSON starting with `n` is `null`.
    fn optional_text<'a>(value: Option<&'a str>) -> Option<Option<Cow<'a, str>>> {
        match value {
            None => Some(None),
            Some(v) if v.starts_with('n') => Some(None),
            Some(v) => plain_string(v).map(|s| Some(Cow::Borrowed(s))),
        }
    }
    fn optional_raw(value: Option<&str>) -> Option<Option<&RawValue>> {
        match value {
            None => Some(None),
            Some(v) if v.starts_with('n') => Some(None),
            Some(v) => raw_value(v).map(Some),
        }
    }

    let (mut api_version, mut kind, mut request) = (None, None, None);
    index.each_member(index.root(), |key, value| match key? {
        "apiVersion" => once(&mut api_version, value),
        "kind" => once(&mut kind, value),
        "request" => once(&mut request, value),
        _ => Some(()),
    })?;
    if plain_string(api_version?)? != API_VERSION || plain_string(kind?)? != "AdmissionReview" {
        return None;
    }

    let [
        mut uid,
        mut kind,
        mut resource,
        mut sub_resource,
        mut name,
        mut namespace,
    ] = [None; 6];
    let [
        mut operation,
        mut user_info,
        mut object,
        mut old_object,
        mut dry_run,
    ] = [None; 5];
    index.each_member(request?, |key, value| match key? {
        "uid" => once(&mut uid, value),
        "kind" => once(&mut kind, value),
        "resource" => once(&mut resource, value),
        "subResource" => once(&mut sub_resource, value),
        "name" => once(&mut name, value),
        "namespace" => once(&mut namespace, value),
        "operation" => once(&mut operation, value),
        "userInfo" => once(&mut user_info, value),
        "object" => once(&mut object, value),
        "oldObject" => once(&mut old_object, value),
        "dryRun" => once(&mut dry_run, value),
        _ => Some(()),
    })?;

    let [mut group, mut version, mut kind_name] = [None; 3];
    index.each_member(kind?, |key, value| match key? {
        "group" => once(&mut group, value),
        "version" => once(&mut version, value),
        "kind" => once(&mut kind_name, value),
        _ => Some(()),
    })?;
    let kind = GroupVersionKind {
        group: text(group)?,
        version: text(version)?,
        kind: text(kind_name)?,
    };

    let resource = match resource {
        None => GroupVersionResource::default(),
        Some(value) => {
            let [mut group, mut version, mut resource] = [None; 3];
            index.each_member(value, |key, value| match key? {
                "group" => once(&mut group, value),
                "version" => once(&mut version, value),
                "resource" => once(&mut resource, value),
                _ => Some(()),
            })?;
            GroupVersionResource {
                group: text(group)?,
                version: text(version)?,
                resource: text(resource)?,
            }
        }
    };

    let user_info = match user_info {
        None => UserInfo::default(),
        Some(value) => {
            let [mut username, mut groups] = [None; 2];
            index.each_member(value, |key, value| match key? {
                "username" => once(&mut username, value),
                "groups" => once(&mut groups, value),
                _ => Some(()),
            })?;
            UserInfo {
                username: text(username)?,
                groups: match groups {
                    None => Vec::new(),
                    Some(groups) => plain_strings(groups)?
                        .into_iter()
                        .map(Cow::Borrowed)
                        .collect(),
                },
            }
        }
    };

    let operation = match plain_string(operation?)? {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        _ => return None,
    };
    let dry_run = match dry_run {
        None => None,
        Some("null") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return None,
    };
    let uid = text(uid)?;
    if uid.is_empty() {
        return None;
    }
    Some(Request {
        uid,
        kind,
        resource,
        sub_resource: optional_text(sub_resource)?,
        name: optional_text(name)?,
        namespace: optional_text(namespace)?,
        operation,
        user_info,
        object: optional_raw(object)?,
        old_object: optional_raw(old_object)?,
        dry_run,
        index: None,
    })
}

/// Whether [`read_indexed`] reads `body` as serde reads it from the index (or leaves it to
/// serde): the `admission_decode` fuzz target holds the direct read to serde with it.
#[doc(hidden)]
pub fn direct_read_agrees(body: &[u8]) -> bool {
    let Some(index) = std::str::from_utf8(body)
        .ok()
        .and_then(|text| TextIndex::of(text, MAX_DEPTH))
        .map(Arc::new)
    else {
        return true;
    };
    let Some(direct) = read_indexed(&index) else {
        return true;
    };
    let by_serde = crate::json_view::from_indexed::<TypedEnvelope<'_>>(&index)
        .ok()
        .filter(|e| {
            e.kind.as_deref() == Some("AdmissionReview")
                && e.api_version.as_deref() == Some(API_VERSION)
        })
        .and_then(|e| e.request)
        .filter(|r| !r.uid.is_empty());
    // `Cow` prints the same borrowed or owned; `index` is `None` in both.
    by_serde.is_some_and(|r| format!("{r:?}") == format!("{direct:?}"))
}

/// The envelope first, then the request: each error names the part that is wrong.
fn decode_step_by_step(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let envelope: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| classify_json_error(&e))?;
    if envelope.kind.as_deref() != Some("AdmissionReview") {
        return Err(DecodeError::NotAdmissionReview(format!(
            "kind is {}, expected AdmissionReview",
            envelope.kind.as_deref().unwrap_or("missing")
        )));
    }
    if envelope.api_version.as_deref() != Some(API_VERSION) {
        return Err(DecodeError::NotAdmissionReview(format!(
            "apiVersion is {}, expected {API_VERSION}",
            envelope.api_version.as_deref().unwrap_or("missing")
        )));
    }
    let raw = envelope
        .request
        .filter(|r| r.get() != "null")
        .ok_or(DecodeError::MissingRequest)?;
    // Error texts reach logs and the client: serde's quoted values are left out of them.
    let request: Request<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        DecodeError::NotAdmissionReview(format!(
            "request: {}",
            crate::json_view::without_values(&e.to_string())
        ))
    })?;
    if request.uid.is_empty() {
        return Err(DecodeError::MissingUid);
    }
    Ok(request)
}

fn classify_json_error(e: &serde_json::Error) -> DecodeError {
    let message = crate::json_view::without_values(&e.to_string());
    if e.is_syntax() || e.is_eof() {
        DecodeError::NotJson(message)
    } else {
        DecodeError::NotAdmissionReview(message)
    }
}

#[derive(Serialize)]
struct ResponseEnvelope<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

#[derive(Serialize)]
struct Status<'a> {
    code: u16,
    message: &'a str,
    reason: &'static str,
}

/// The answer to one review, as the wire protocol carries it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The request's uid, echoed.
    pub uid: &'a str,
    pub allowed: bool,
    /// A denial because the object is malformed (an input error): a 400 (Bad Request), not
    /// a 403 (Forbidden).
    pub bad_request: bool,
    /// The `status.message` of a denial.
    pub message: &'a str,
    /// Short texts for the client.
    pub warnings: &'a [String],
    /// JSON Patch operations for `/mutate`; none for a validating answer.
    pub patch: &'a [json_patch::PatchOperation],
}

impl Answer<'_> {
    /// Encodes the answer: the uid echoed, a 403 status on denial (400 for a malformed
    /// object), the warnings, and a base64
    /// JSON Patch only when there is one.
    // Inlined into its caller on the request path (engine::verdict::encode): as a call of its
    // own it cost about 40 instructions a review (callgrind, examples/request_path).
    #[inline]
    pub fn encode(&self) -> Vec<u8> {
        let patch = if self.patch.is_empty() {
            None
        } else {
            // Serializing a Vec of patch operations cannot fail: they are plain JSON values.
            let bytes = serde_json::to_vec(self.patch).unwrap_or_default();
            Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        let response = ResponseEnvelope {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: Response {
                uid: self.uid,
                allowed: self.allowed,
                status: (!self.allowed).then_some(if self.bad_request {
                    Status {
                        code: 400,
                        message: self.message,
                        reason: "BadRequest",
                    }
                } else {
                    Status {
                        code: 403,
                        message: self.message,
                        reason: "Forbidden",
                    }
                }),
                warnings: self.warnings,
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
            },
        };
        // serde_json::to_vec starts at 128 bytes, a few short of an allowed review's answer, and
        // would grow (copy) it on every review.
        let warnings: usize = self.warnings.iter().map(|w| w.len() + 3).sum();
        let patch_len = response.response.patch.as_ref().map_or(0, String::len);
        let mut out =
            Vec::with_capacity(192 + self.uid.len() + self.message.len() + warnings + patch_len);
        serde_json::to_writer(&mut out, &response)
            .map(|()| out)
            .unwrap_or_default()
    }
}

/// What a review says of an object besides the object itself: its type, name and namespace.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

impl ObjectHead {
    /// Reads `apiVersion`, `kind`, `metadata.name` and `metadata.namespace`; an object without
    /// a string `apiVersion` or `kind` is not a Kubernetes object. Members of another type read
    /// as absent.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        let string = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
        let metadata = value.get("metadata");
        Ok(ObjectHead {
            api_version: string(value.get("apiVersion")).ok_or("has no apiVersion")?,
            kind: string(value.get("kind")).ok_or("has no kind")?,
            name: string(metadata.and_then(|m| m.get("name"))).unwrap_or_default(),
            namespace: string(metadata.and_then(|m| m.get("namespace")))
                .filter(|ns| !ns.is_empty()),
        })
    }

    /// [`ObjectHead::from_value`] for an object's JSON text.
    pub fn from_raw(object: &crate::json_view::Indexed<'_>) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow, default, rename = "apiVersion")]
            api_version: Option<&'a RawValue>,
            #[serde(borrow, default)]
            kind: Option<&'a RawValue>,
            #[serde(borrow, default)]
            metadata: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, default)]
            name: Option<&'a RawValue>,
            #[serde(borrow, default)]
            namespace: Option<&'a RawValue>,
        }
        let string = |raw: Option<&RawValue>| -> Option<String> {
            serde_json::from_str::<String>(raw?.get()).ok()
        };
        let head: Head<'_> = object
            .view(object.raw())
            .map_err(|_| "is not a JSON object".to_string())?;
        let meta = head.metadata.and_then(|m| object.view::<Meta<'_>>(m).ok());
        Ok(ObjectHead {
            api_version: string(head.api_version).ok_or("has no apiVersion")?,
            kind: string(head.kind).ok_or("has no kind")?,
            name: string(meta.as_ref().and_then(|m| m.name)).unwrap_or_default(),
            namespace: string(meta.as_ref().and_then(|m| m.namespace)).filter(|ns| !ns.is_empty()),
        })
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Sets the namespace the review names (the API server's: none for a cluster-scoped
    /// kind, whatever the manifest says).
    pub fn set_namespace(&mut self, namespace: Option<String>) {
        self.namespace = namespace.filter(|ns| !ns.is_empty());
    }

    /// A CREATE review of `object`, whose head this is, as fluxgate makes them up: a dry run
    /// by no user in particular.
    pub fn create<'a>(&'a self, object: &'a RawValue, uid: &'a str) -> Request<'a> {
        Request {
            uid: Cow::Borrowed(uid),
            kind: GroupVersionKind::from_api_version(&self.api_version, &self.kind),
            resource: GroupVersionResource::default(),
            sub_resource: None,
            name: Some(Cow::Borrowed(&self.name)),
            namespace: self.namespace.as_deref().map(Cow::Borrowed),
            operation: Operation::Create,
            user_info: UserInfo::default(),
            object: Some(object),
            old_object: None,
            dry_run: Some(true),
            index: None,
        }
    }
}

/// An AdmissionReview request made up by fluxgate itself, for the audit scan: the same
/// policies judge objects that never went through an API server.
pub struct OwnedObject {
    json: Box<RawValue>,
    head: ObjectHead,
}

impl OwnedObject {
    /// Wraps an object's JSON (see [`ObjectHead::from_value`]).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        let head = ObjectHead::from_value(value)?;
        let json = serde_json::value::to_raw_value(value).map_err(|e| e.to_string())?;
        Ok(OwnedObject { json, head })
    }

    pub fn kind(&self) -> &str {
        self.head.kind()
    }

    pub fn name(&self) -> &str {
        self.head.name()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.head.namespace()
    }

    pub fn set_namespace(&mut self, namespace: Option<String>) {
        self.head.namespace = namespace;
    }

    pub fn raw(&self) -> &RawValue {
        &self.json
    }

    /// A CREATE review of this object (see [`ObjectHead::create`]).
    pub fn as_create<'a>(&'a self, uid: &'a str) -> Request<'a> {
        self.head.create(&self.json, uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEW: &str = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",
      "request":{"uid":"u-1","kind":{"group":"source.toolkit.fluxcd.io","version":"v1","kind":"OCIRepository"},
      "resource":{"group":"source.toolkit.fluxcd.io","version":"v1","resource":"ocirepositories"},
      "name":"app","namespace":"flux-system","operation":"CREATE",
      "userInfo":{"username":"alice","groups":["devs"]},
      "object":{"apiVersion":"source.toolkit.fluxcd.io/v1","kind":"OCIRepository","metadata":{"name":"app"}},
      "oldObject":null,"dryRun":false}}"#;

    #[test]
    fn decode_reads_the_envelope_and_keeps_objects_raw() {
        let req = decode(REVIEW.as_bytes()).expect("valid review");
        assert_eq!(req.uid, "u-1");
        assert_eq!(req.kind.kind, "OCIRepository");
        assert_eq!(req.operation, Operation::Create);
        assert_eq!(req.namespace(), Some("flux-system"));
        assert!(req.object.is_some());
        assert!(req.old_object.is_none());
        assert!(!req.is_dry_run());
    }

    #[test]
    fn decode_rejects_what_is_not_a_review() {
        assert!(matches!(decode(b"not json"), Err(DecodeError::NotJson(_))));
        assert!(matches!(
            decode(br#"{"kind":"Pod","apiVersion":"v1"}"#),
            Err(DecodeError::NotAdmissionReview(_))
        ));
        assert!(matches!(
            decode(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{}}"#),
            Err(DecodeError::NotAdmissionReview(_))
        ));
        assert!(matches!(
            decode(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#),
            Err(DecodeError::MissingRequest)
        ));
        assert!(matches!(
            decode(
                br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"","kind":{"kind":"Pod"},"operation":"CREATE"}}"#
            ),
            Err(DecodeError::MissingUid)
        ));
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!nests_deeper_than(br#"{"a":[[["x"]]]}"#, 4));
        assert!(nests_deeper_than(br#"{"a":[[[["x"]]]]}"#, 4));
        assert!(!nests_deeper_than(br#"{"a":"[[[[[[[[[[\"[[[["}"#, 2));
    }

    #[test]
    fn escaped_quotes_and_backslashes_do_not_end_a_string() {
        assert!(!nests_deeper_than(br#"{"a":"\"[[[[[","b":"\\"}"#, 1));
        assert!(nests_deeper_than(br#"{"a":"\\",  "b":[[1]]}"#, 2));
        assert!(!nests_deeper_than(br#"{"a":"ends with a backslash\"#, 1));
        assert!(!nests_deeper_than(br#"{"a":"unterminated [[[[["#, 1));
    }

    #[test]
    fn a_body_too_deep_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let body = REVIEW.replace(
            "\"dryRun\":false",
            &format!("\"dryRun\":false,\"x\":{deep}"),
        );
        assert!(matches!(decode(body.as_bytes()), Err(DecodeError::TooDeep)));
    }

    #[test]
    fn what_the_single_pass_refuses_gets_the_step_by_step_answer() {
        // Not UTF-8 outside the request: the request itself is fine, so the review decodes.
        let mut body = REVIEW
            .replace(
                "{\"kind\":\"AdmissionReview\"",
                "{\"note\":\"\u{0}\",\"kind\":\"AdmissionReview\"",
            )
            .into_bytes();
        let at = body.iter().position(|&b| b == 0).expect("placeholder");
        body[at] = 0xff;
        assert_eq!(decode(&body).expect("decodes").uid, "u-1");
        // A wrong kind is named even when the request is malformed too.
        let body = REVIEW
            .replace("\"kind\":\"AdmissionReview\"", "\"kind\":\"Pod\"")
            .replace("\"CREATE\"", "\"CREATE-ISH\"");
        match decode(body.as_bytes()) {
            Err(DecodeError::NotAdmissionReview(message)) => {
                assert!(message.contains("kind is Pod"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // A malformed request is named as such.
        let body = REVIEW.replace("\"CREATE\"", "\"CREATE-ISH\"");
        match decode(body.as_bytes()) {
            Err(DecodeError::NotAdmissionReview(message)) => {
                assert!(message.starts_with("request: "), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_the_api_server_sends_is_indexed_and_read_as_serde_json_reads_it() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission");
        let mut bodies = 0;
        for entry in std::fs::read_dir(dir).expect("the admission corpus") {
            let path = entry.expect("a corpus entry").path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let body = std::fs::read(&path).expect("a corpus body");
            let fast = decode(&body).expect("the API server's review decodes");
            let slow = decode_step_by_step(&body).expect("and step by step");
            let name = path.display();
            assert!(fast.index.is_some(), "{name}: read without its index");
            assert_eq!(
                format!("{:?}", fast.kind),
                format!("{:?}", slow.kind),
                "{name}"
            );
            assert_eq!(fast.uid, slow.uid, "{name}");
            assert_eq!(fast.operation, slow.operation, "{name}");
            assert_eq!(fast.user_info.groups, slow.user_info.groups, "{name}");
            assert_eq!(fast.dry_run, slow.dry_run, "{name}");
            for (a, b) in [
                (fast.object, slow.object),
                (fast.old_object, slow.old_object),
            ] {
                assert_eq!(a.map(RawValue::get), b.map(RawValue::get), "{name}");
            }
            bodies += 1;
        }
        assert!(bodies > 20, "only {bodies} bodies in {dir}");
    }

    /// Whether the body is read directly, checking that it is read as serde reads it, with
    /// the strings borrowed.
    fn read_directly(body: &str) -> bool {
        assert!(direct_read_agrees(body.as_bytes()), "{body}");
        let index = TextIndex::of(body, MAX_DEPTH).expect("JSON");
        let Some(direct) = read_indexed(&index) else {
            return false;
        };
        let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        assert!(
            borrowed(&direct.uid) && borrowed(&direct.kind.kind),
            "{body}"
        );
        assert!(direct.name.as_ref().is_none_or(borrowed), "{body}");
        assert!(direct.user_info.groups.iter().all(borrowed), "{body}");
        true
    }

    #[test]
    fn the_review_read_from_its_index_is_what_serde_reads() {
        let mut bodies: Vec<String> = Vec::new();
        for dir in [
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bench"),
        ] {
            for entry in std::fs::read_dir(dir).expect("a fixture directory") {
                let path = entry.expect("an entry").path();
                if path.extension().is_some_and(|ext| ext == "json") {
                    bodies.push(std::fs::read_to_string(&path).expect("a body"));
                }
            }
        }
        let unchanged = bodies.len();
        // Each is read by serde alone or by both the same way, whatever the change.
        for (from, to) in [
            ("\"u-1\"", "\"\""),
            ("\"u-1\"", "\"u\\u002d1\""),
            ("\"u-1\"", "1"),
            ("\"uid\"", "\"u\\u0069d\""),
            ("\"uid\":\"u-1\",", ""),
            ("\"uid\":\"u-1\",", "\"uid\":\"u-1\",\"uid\":\"u-2\","),
            ("\"name\":\"app\"", "\"name\":null"),
            ("\"name\":\"app\"", "\"name\":\"a\\\"pp\""),
            (
                "\"name\":\"app\"",
                "\"subResource\":\"status\",\"name\":\"app\"",
            ),
            ("\"namespace\":\"flux-system\",", ""),
            ("\"namespace\":\"flux-system\"", "\"namespace\":7"),
            ("\"CREATE\"", "\"DELETE\""),
            ("\"CREATE\"", "\"CONNECT\""),
            ("\"CREATE\"", "\"UPDATE\""),
            ("\"CREATE\"", "\"create\""),
            ("\"CREATE\"", "null"),
            ("\"operation\":\"CREATE\",", ""),
            ("\"dryRun\":false", "\"dryRun\":true"),
            ("\"dryRun\":false", "\"dryRun\":null"),
            ("\"dryRun\":false", "\"dryRun\":0"),
            (",\"dryRun\":false", ""),
            ("\"oldObject\":null", "\"oldObject\":{\"a\":[1]}"),
            ("\"oldObject\":null", "\"oldObject\":\"x\""),
            ("\"object\":{", "\"object\":null,\"x\":{"),
            ("\"groups\":[\"devs\"]", "\"groups\":[]"),
            ("\"groups\":[\"devs\"]", "\"groups\":[ \"devs\" , \"ops\" ]"),
            ("\"groups\":[\"devs\"]", "\"groups\":[\"d\\\\evs\"]"),
            ("\"groups\":[\"devs\"]", "\"groups\":[\"devs\",1]"),
            ("\"groups\":[\"devs\"]", "\"groups\":null"),
            ("\"groups\":[\"devs\"]", "\"extra\":{\"k\":[\"v\"]}"),
            ("\"userInfo\":{", "\"userInfo\":null,\"x\":{"),
            ("\"username\":\"alice\",", ""),
            (
                "{\"group\":\"source.toolkit.fluxcd.io\",\"version\":\"v1\",\"kind\"",
                "{\"kind\"",
            ),
            (
                "\"kind\":\"OCIRepository\"}",
                "\"kind\":\"OCIRepository\",\"kind\":\"X\"}",
            ),
            ("\"kind\":{", "\"kind\":null,\"x\":{"),
            ("\"resource\":{", "\"resource\":null,\"x\":{"),
            ("\"resource\":\"ocirepositories\"", "\"resource\":\"\""),
            (
                "\"kind\":\"AdmissionReview\"",
                "\"kind\":\"AdmissionReview\",\"kind\":\"AdmissionReview\"",
            ),
            ("\"kind\":\"AdmissionReview\"", "\"kind\":\"Pod\""),
            (
                "\"kind\":\"AdmissionReview\"",
                "\"kind\":\"Admission\\u0052eview\"",
            ),
            ("\"admission.k8s.io/v1\"", "\"admission.k8s.io\\/v1\""),
            ("\"admission.k8s.io/v1\"", "\"admission.k8s.io/v1beta1\""),
            ("\"request\":{", "\"request\":null,\"x\":{"),
            ("{\"kind\"", " \n{ \"kind\" "),
            ("\"dryRun\":false}}", "\"dryRun\":false} }\n"),
        ] {
            assert!(REVIEW.contains(from), "{from}");
            bodies.push(REVIEW.replace(from, to));
        }
        let direct = bodies.iter().filter(|body| read_directly(body)).count();
        // The API server's own bodies are all read directly, many of the changed ones too.
        assert!(direct > unchanged + 10, "{direct} of {}", bodies.len());
        for body in &bodies[..unchanged] {
            assert!(read_directly(body), "{body}");
        }
    }

    #[test]
    fn escaped_strings_still_decode() {
        let body = REVIEW.replace("\"alice\"", "\"al\\u0069ce\"");
        let req = decode(body.as_bytes()).expect("valid review");
        assert_eq!(req.user_info.username, "alice");
    }
}
