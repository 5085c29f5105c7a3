//! PLACEHOLDER: being written; replaced before anything lands.

use serde::{Deserialize, Serialize};

use super::{Context, Finding, KindRule, Mode, Policy, PolicyId, PolicySettings};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

impl PolicySettings for Settings {
    fn mode(&self) -> Option<Mode> {
        self.mode
    }
}

#[derive(Default)]
pub struct SingleAgent {
    _state: (),
}

impl Policy for SingleAgent {
    fn id(&self) -> PolicyId {
        PolicyId::SingleAgent
    }
    fn kinds(&self) -> &'static [KindRule] {
        &[]
    }
    fn validate(&self, _ctx: &Context<'_>) -> Vec<Finding> {
        Vec::new()
    }
}
