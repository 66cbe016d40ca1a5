//! How records are checked in one overlay: its name, whether users own
//! their AORs by their ids (self-certifying) or by CA-issued certificates,
//! and the id puzzle a relay's node id must solve.

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
    /// The overlay's node id puzzle (`id_difficulty`): a relay
    /// descriptor's node id must solve it, as a node in the routing table
    /// must. 0 (no puzzle) unless set with
    /// [`RecordPolicy::with_node_difficulty`]; the node sets it from its
    /// overlay parameters.
    pub node_difficulty: u8,
}

impl RecordPolicy {
    /// A self-certifying overlay named `overlay_name`.
    pub fn self_certifying(overlay_name: impl Into<String>) -> Self {
        Self {
            overlay_name: overlay_name.into(),
            enrolled: None,
            node_difficulty: 0,
        }
    }

    /// The same policy with the overlay's node id puzzle at `difficulty`.
    pub fn with_node_difficulty(self, difficulty: u8) -> Self {
        Self {
            node_difficulty: difficulty,
            ..self
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
            node_difficulty: 0,
        }
    }
}
