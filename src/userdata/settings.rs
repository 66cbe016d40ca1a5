//! Settings that follow the user: whichever node serves the user's phones
//! reads them from the overlay and applies them.

use super::contacts::{check_contact_name, normalise_aor};
use super::{decode_pairs, encode_pairs};
use crate::limits::{MAX_BLOCKED, MAX_SETTING_VALUE_LEN};
use crate::overlay::record::check_display_name;
use crate::wire::WireError;
use std::collections::BTreeMap;

/// The settings there are, in the order `settings get` lists them.
pub const SETTING_KEYS: &[&str] = &[
    "blocked",
    "display_name",
    "do_not_disturb",
    "forward_always",
    "forward_busy",
    "forward_no_answer",
    "voicemail",
    "voicemail_after",
];

/// Default of `voicemail_after`, seconds.
pub const DEFAULT_VOICEMAIL_AFTER: u32 = 20;
/// Bounds of `voicemail_after`, seconds.
pub const VOICEMAIL_AFTER_RANGE: std::ops::RangeInclusive<u32> = 5..=300;

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// No such setting.
    #[error("no setting {0:?}; the settings are: {list}", list = SETTING_KEYS.join(", "))]
    UnknownKey(String),
    /// The value does not suit the setting.
    #[error("{key}: {why}")]
    BadValue {
        /// The setting.
        key: &'static str,
        /// What is wrong with the value.
        why: String,
    },
}

/// A user's settings; each is absent until set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
}

fn known(key: &str) -> Option<&'static str> {
    SETTING_KEYS.iter().copied().find(|k| *k == key)
}

fn bad(key: &'static str, why: impl Into<String>) -> SettingsError {
    SettingsError::BadValue {
        key,
        why: why.into(),
    }
}

fn on_off(key: &'static str, value: &str) -> Result<String, SettingsError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok("on".into()),
        "off" | "false" | "no" | "0" => Ok("off".into()),
        _ => Err(bad(key, format!("{value:?}: use on or off"))),
    }
}

/// A call target: an AOR (normalised) or a contact name.
fn target(key: &'static str, value: &str) -> Result<String, SettingsError> {
    if value.contains(':') {
        normalise_aor(value).map_err(|e| bad(key, e.to_string()))
    } else {
        check_contact_name(value)
            .map(|()| value.to_owned())
            .map_err(|_| {
                bad(
                    key,
                    format!("{value:?}: not an AOR (sip:USER@DOMAIN) or a contact name"),
                )
            })
    }
}

/// The value `value` takes as setting `key`, normalised.
fn normalise(key: &'static str, value: &str) -> Result<String, SettingsError> {
    if value.len() > MAX_SETTING_VALUE_LEN {
        return Err(bad(
            key,
            format!("{} bytes; at most {MAX_SETTING_VALUE_LEN}", value.len()),
        ));
    }
    match key {
        "display_name" => check_display_name(value)
            .map(|()| value.to_owned())
            .map_err(|_| {
                bad(
                    key,
                    "at most 64 bytes, no control characters, no '\"' or '\\'",
                )
            }),
        "do_not_disturb" | "voicemail" => on_off(key, value),
        "forward_always" | "forward_busy" | "forward_no_answer" => target(key, value),
        "voicemail_after" => value
            .parse::<u32>()
            .ok()
            .filter(|s| VOICEMAIL_AFTER_RANGE.contains(s))
            .map(|s| s.to_string())
            .ok_or_else(|| {
                bad(
                    key,
                    format!(
                        "{value:?}: seconds from {} to {}",
                        VOICEMAIL_AFTER_RANGE.start(),
                        VOICEMAIL_AFTER_RANGE.end()
                    ),
                )
            }),
        "blocked" => {
            let mut out: Vec<String> = Vec::new();
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let t = target(key, item)?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            if out.len() > MAX_BLOCKED {
                return Err(bad(key, format!("at most {MAX_BLOCKED} entries")));
            }
            Ok(out.join(","))
        }
        _ => Err(SettingsError::UnknownKey(key.to_owned())),
    }
}

impl Settings {
    /// No setting set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` (normalised); an empty value clears it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        let key = known(key).ok_or_else(|| SettingsError::UnknownKey(key.to_owned()))?;
        if value.is_empty() {
            self.values.remove(key);
            return Ok(());
        }
        let value = normalise(key, value)?;
        self.values.insert(key, value);
        Ok(())
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every setting set, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("on")
    }

    /// The display name the user set.
    pub fn display_name(&self) -> Option<&str> {
        self.get("display_name")
    }

    /// Whether calls are refused (486 Busy Here) without ringing.
    pub fn do_not_disturb(&self) -> bool {
        self.flag("do_not_disturb")
    }

    /// Where every call goes instead of the user's phones.
    pub fn forward_always(&self) -> Option<&str> {
        self.get("forward_always")
    }

    /// Where a call goes when the user's phones are busy.
    pub fn forward_busy(&self) -> Option<&str> {
        self.get("forward_busy")
    }

    /// Where a call goes when no phone answers (or none is reachable).
    pub fn forward_no_answer(&self) -> Option<&str> {
        self.get("forward_no_answer")
    }

    /// Whether voice mail answers unanswered calls (on unless set off).
    pub fn voicemail(&self) -> bool {
        self.get("voicemail") != Some("off")
    }

    /// Seconds of ringing before voice mail answers.
    pub fn voicemail_after(&self) -> u32 {
        self.get("voicemail_after")
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_VOICEMAIL_AFTER)
    }

    /// The AORs and contact names whose calls are refused (603).
    pub fn blocked(&self) -> impl Iterator<Item = &str> {
        self.get("blocked")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
    }

    /// The plaintext: `[1, [[key, value], ...]]`, sorted by key.
    pub fn encode(&self) -> Vec<u8> {
        encode_pairs(self.values.iter().map(|(k, v)| (*k, v.as_str())))
    }

    /// Decodes the plaintext strictly: known keys, each value as `set`
    /// leaves it.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let pairs = decode_pairs(
            input,
            "settings",
            SETTING_KEYS.len(),
            32,
            MAX_SETTING_VALUE_LEN,
        )?;
        let mut settings = Self::new();
        for (key, value) in pairs {
            let key = known(&key).ok_or(WireError::FieldOutOfRange("settings"))?;
            match normalise(key, &value) {
                Ok(normal) if normal == value && !value.is_empty() => {
                    settings.values.insert(key, value);
                }
                _ => return Err(WireError::FieldOutOfRange("settings")),
            }
        }
        Ok(settings)
    }
}
