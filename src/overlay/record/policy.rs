//! How records are checked in one overlay: its name, and whether users own
//! their AORs by their ids (self-certifying) or by CA-issued certificates.

use crate::identity::VerifyPolicy;

/// How records are checked in one overlay.
#[derive(Debug, Clone)]
pub struct RecordPolicy {
    /// The overlay's name: the host part of self-certifying AORs
    /// (`sip:<user id>@<overlay_name>`).
    pub overlay_name: String,
    /// `None`: a self-certifying overlay, where a user owns exactly the AOR
    /// named after its id. `Some`: an enrolled overlay, where a user owns
    /// the AORs its CA-issued user certificate lists, checked under this
    /// policy (typically `VerifyPolicy::enrolled(anchors, 0)`: user
    /// identities solve no puzzle).
    pub enrolled: Option<VerifyPolicy>,
}

impl RecordPolicy {
    /// A self-certifying overlay named `overlay_name`.
    pub fn self_certifying(overlay_name: impl Into<String>) -> Self {
        Self {
            overlay_name: overlay_name.into(),
            enrolled: None,
        }
    }

    /// An enrolled overlay named `overlay_name` whose user certificates are
    /// checked against the trust anchors of `certificates`.
    ///
    /// The id puzzle is not applied to users: it prices the node ids that
    /// occupy routing tables, while a user id is vouched for by the CA that
    /// issued its certificate (and user identities are made at difficulty 0
    /// by default). The node's policy can therefore be passed as it is.
    pub fn enrolled(overlay_name: impl Into<String>, certificates: VerifyPolicy) -> Self {
        Self {
            overlay_name: overlay_name.into(),
            enrolled: Some(VerifyPolicy {
                difficulty: 0,
                ..certificates
            }),
        }
    }
}
