//! Overlay parameters: what every node of one overlay must agree on.

use crate::limits::DEFAULT_ID_DIFFICULTY;

/// Default bucket size and number of closest nodes a lookup returns.
pub const DEFAULT_K: usize = 20;
/// Default number of parallel requests per lookup path.
pub const DEFAULT_ALPHA: usize = 3;
/// Default number of disjoint lookup paths (S/Kademlia's d).
pub const DEFAULT_DISJOINT_PATHS: usize = 4;
/// Default number of nodes a record is stored on.
pub const DEFAULT_REPLICATION: usize = 20;
/// Default maximum of peers from one IPv4 /24 (or IPv6 /48) in one bucket.
pub const DEFAULT_MAX_PER_PREFIX_PER_BUCKET: usize = 2;
/// Default maximum of peers from one IPv4 /24 (or IPv6 /48) in the whole
/// routing table.
pub const DEFAULT_MAX_PER_PREFIX_PER_TABLE: usize = 10;
/// Default maximum of peers from one IPv4 /16 (or IPv6 /32) in one bucket:
/// an attacker holding a /16 gets at most this many entries of any bucket.
pub const DEFAULT_MAX_PER_WIDE_PREFIX_PER_BUCKET: usize = 2;
/// Default maximum of peers from one IPv4 /16 (or IPv6 /32) in the whole
/// routing table.
pub const DEFAULT_MAX_PER_WIDE_PREFIX_PER_TABLE: usize = 20;

/// The parameters of an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayParams {
    /// The overlay's name; nodes refuse peers of another overlay.
    pub name: String,
    /// Bucket size; also how many closest nodes a lookup returns.
    pub k: usize,
    /// Parallel requests per lookup path.
    pub alpha: usize,
    /// Disjoint lookup paths.
    pub disjoint_paths: usize,
    /// Leading zero bits required of `SHA-256(NodeId)`.
    pub id_difficulty: u8,
    /// Nodes each record is stored on.
    pub replication: usize,
    /// Peers from one IPv4 /24 or IPv6 /48 allowed in one bucket.
    pub max_per_prefix_per_bucket: usize,
    /// Peers from one IPv4 /24 or IPv6 /48 allowed in the whole table.
    pub max_per_prefix_per_table: usize,
    /// Peers from one IPv4 /16 or IPv6 /32 allowed in one bucket.
    pub max_per_wide_prefix_per_bucket: usize,
    /// Peers from one IPv4 /16 or IPv6 /32 allowed in the whole table.
    pub max_per_wide_prefix_per_table: usize,
}

impl Default for OverlayParams {
    fn default() -> Self {
        Self {
            name: "p2psip".into(),
            k: DEFAULT_K,
            alpha: DEFAULT_ALPHA,
            disjoint_paths: DEFAULT_DISJOINT_PATHS,
            id_difficulty: DEFAULT_ID_DIFFICULTY,
            replication: DEFAULT_REPLICATION,
            max_per_prefix_per_bucket: DEFAULT_MAX_PER_PREFIX_PER_BUCKET,
            max_per_prefix_per_table: DEFAULT_MAX_PER_PREFIX_PER_TABLE,
            max_per_wide_prefix_per_bucket: DEFAULT_MAX_PER_WIDE_PREFIX_PER_BUCKET,
            max_per_wide_prefix_per_table: DEFAULT_MAX_PER_WIDE_PREFIX_PER_TABLE,
        }
    }
}

/// The largest bucket size an overlay file may ask for: answers carry at
/// most [`crate::limits::MAX_CONTACTS_PER_ANSWER`] contacts.
pub const MAX_K: usize = crate::limits::MAX_CONTACTS_PER_ANSWER;

/// Why overlay parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML, or has a field of the wrong type or an
    /// unknown field (a misspelt parameter must not silently default).
    #[error("{0}")]
    Syntax(String),
    /// The name is empty, too long, or has characters other than ASCII
    /// letters, digits, '-' and '.' (it is the host part of self-certifying
    /// AORs).
    #[error("name {0:?}: must be 1 to {max} ASCII letters, digits, '-' or '.'", max = crate::limits::MAX_OVERLAY_NAME_LEN)]
    BadName(String),
    /// A numeric parameter is out of its range.
    #[error("{field} = {value}: must be between {min} and {max}")]
    OutOfRange {
        /// The parameter.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
}

impl OverlayParams {
    /// Checks that the parameters make a working overlay: a usable name,
    /// `1 <= alpha, disjoint_paths, replication <= k <= MAX_K`, a
    /// difficulty of at most [`crate::limits::MAX_ID_DIFFICULTY`] and
    /// prefix limits of at least one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= crate::limits::MAX_OVERLAY_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_ok {
            return Err(ConfigError::BadName(self.name.clone()));
        }
        let range = |field, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    field,
                    value: value as u64,
                    min: min as u64,
                    max: max as u64,
                })
            }
        };
        range("k", self.k, 1, MAX_K)?;
        range("alpha", self.alpha, 1, self.k)?;
        // S/Kademlia splits the k closest seeds among the d paths.
        range("disjoint_paths", self.disjoint_paths, 1, self.k)?;
        range("replication", self.replication, 1, self.k)?;
        range(
            "id_difficulty",
            usize::from(self.id_difficulty),
            0,
            usize::from(crate::limits::MAX_ID_DIFFICULTY),
        )?;
        range(
            "max_per_prefix_per_bucket",
            self.max_per_prefix_per_bucket,
            1,
            MAX_K,
        )?;
        range(
            "max_per_prefix_per_table",
            self.max_per_prefix_per_table,
            1,
            usize::MAX,
        )?;
        range(
            "max_per_wide_prefix_per_bucket",
            self.max_per_wide_prefix_per_bucket,
            1,
            usize::MAX,
        )?;
        range(
            "max_per_wide_prefix_per_table",
            self.max_per_wide_prefix_per_table,
            1,
            usize::MAX,
        )?;
        Ok(())
    }

    /// Parses and validates an overlay file (TOML). Every field is
    /// optional and defaults to [`OverlayParams::default`]; unknown fields
    /// are refused.
    ///
    /// ```toml
    /// name = "example.org"
    /// k = 20
    /// alpha = 3
    /// disjoint_paths = 4
    /// id_difficulty = 20
    /// replication = 20
    /// max_per_prefix_per_bucket = 2
    /// max_per_prefix_per_table = 10
    /// max_per_wide_prefix_per_bucket = 2
    /// max_per_wide_prefix_per_table = 20
    /// ```
    #[cfg(feature = "node")]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let file: OverlayFile =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(toml_error(text, &e)))?;
        // Numbers are read as u64 and narrowed here, so that an error names
        // the parameter.
        let d = Self::default();
        let size = |field, v: Option<u64>, default: usize| match v {
            None => Ok(default),
            Some(v) => usize::try_from(v).map_err(|_| ConfigError::OutOfRange {
                field,
                value: v,
                min: 0,
                max: usize::MAX as u64,
            }),
        };
        let id_difficulty = match file.id_difficulty {
            None => d.id_difficulty,
            Some(v) => u8::try_from(v)
                .ok()
                .filter(|v| *v <= crate::limits::MAX_ID_DIFFICULTY)
                .ok_or(ConfigError::OutOfRange {
                    field: "id_difficulty",
                    value: v,
                    min: 0,
                    max: u64::from(crate::limits::MAX_ID_DIFFICULTY),
                })?,
        };
        let params = Self {
            name: file.name.unwrap_or(d.name),
            k: size("k", file.k, d.k)?,
            alpha: size("alpha", file.alpha, d.alpha)?,
            disjoint_paths: size("disjoint_paths", file.disjoint_paths, d.disjoint_paths)?,
            id_difficulty,
            replication: size("replication", file.replication, d.replication)?,
            max_per_prefix_per_bucket: size(
                "max_per_prefix_per_bucket",
                file.max_per_prefix_per_bucket,
                d.max_per_prefix_per_bucket,
            )?,
            max_per_prefix_per_table: size(
                "max_per_prefix_per_table",
                file.max_per_prefix_per_table,
                d.max_per_prefix_per_table,
            )?,
            max_per_wide_prefix_per_bucket: size(
                "max_per_wide_prefix_per_bucket",
                file.max_per_wide_prefix_per_bucket,
                d.max_per_wide_prefix_per_bucket,
            )?,
            max_per_wide_prefix_per_table: size(
                "max_per_wide_prefix_per_table",
                file.max_per_wide_prefix_per_table,
                d.max_per_wide_prefix_per_table,
            )?,
        };
        params.validate()?;
        Ok(params)
    }

    /// The parameters as an overlay file that [`OverlayParams::from_toml`]
    /// reads back.
    pub fn to_toml(&self) -> String {
        format!(
            "# p2psip overlay parameters: every node of the overlay must use the same.\n\
             name = \"{}\"\nk = {}\nalpha = {}\ndisjoint_paths = {}\nid_difficulty = {}\n\
             replication = {}\nmax_per_prefix_per_bucket = {}\nmax_per_prefix_per_table = {}\n\
             max_per_wide_prefix_per_bucket = {}\nmax_per_wide_prefix_per_table = {}\n",
            self.name,
            self.k,
            self.alpha,
            self.disjoint_paths,
            self.id_difficulty,
            self.replication,
            self.max_per_prefix_per_bucket,
            self.max_per_prefix_per_table,
            self.max_per_wide_prefix_per_bucket,
            self.max_per_wide_prefix_per_table
        )
    }
}

/// The overlay file as written; every field optional.
#[cfg(feature = "node")]
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlayFile {
    name: Option<String>,
    k: Option<u64>,
    alpha: Option<u64>,
    disjoint_paths: Option<u64>,
    id_difficulty: Option<u64>,
    replication: Option<u64>,
    max_per_prefix_per_bucket: Option<u64>,
    max_per_prefix_per_table: Option<u64>,
    max_per_wide_prefix_per_bucket: Option<u64>,
    max_per_wide_prefix_per_table: Option<u64>,
}

#[cfg(all(test, feature = "node"))]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let d = OverlayParams::default();
        d.validate().unwrap();
        assert_eq!(OverlayParams::from_toml(&d.to_toml()).unwrap(), d);
        assert_eq!(OverlayParams::from_toml("").unwrap(), d);
    }

    #[test]
    fn a_partial_file_overrides_only_what_it_names() {
        let p =
            OverlayParams::from_toml("name = \"lab.example\"\nk = 8\nreplication = 5\n").unwrap();
        assert_eq!(p.name, "lab.example");
        assert_eq!((p.k, p.replication), (8, 5));
        assert_eq!(p.alpha, DEFAULT_ALPHA);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let err = |t: &str| OverlayParams::from_toml(t).unwrap_err().to_string();
        let e = err("k = 20\nreplicaton = 3");
        assert!(e.starts_with("line 2: ") && e.contains("replicaton"), "{e}");
        assert!(err("k = \"twenty\"").contains("invalid type"));
        assert!(err("k = -1").contains("invalid value") || err("k = -1").contains("k"));
        assert_eq!(err("k = 0"), "k = 0: must be between 1 and 32");
        assert!(err("k = 4\nalpha = 5").starts_with("alpha = 5"));
        assert!(err("replication = 21").starts_with("replication = 21"));
        assert!(err("name = \"a b\"").contains("name \"a b\""));
        assert!(err("name = \"\"").contains("name"));
        assert!(err("id_difficulty = 300").contains("id_difficulty"));
        assert!(err("max_per_prefix_per_table = 0").starts_with("max_per_prefix_per_table"));
        assert!(err("k = 3\n[x]\n").contains('x'));
    }
}

#[cfg(all(test, feature = "node"))]
mod example_file {
    #[test]
    fn the_example_file_in_contrib_is_the_defaults() {
        let text = include_str!("../../contrib/overlay.toml");
        assert_eq!(
            super::OverlayParams::from_toml(text).unwrap(),
            super::OverlayParams::default()
        );
    }
}

/// A TOML error of `text` as one line that names where: `line N: what`
/// (an unknown key's message names the key and the keys allowed).
#[cfg(feature = "node")]
pub(crate) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| 1 + text.get(..s.start).map_or(0, |t| t.matches('\n').count()));
    let what = e.message().trim_end().replace('\n', " ");
    match line {
        Some(line) => format!("line {line}: {what}"),
        None => what,
    }
}
