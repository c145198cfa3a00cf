//! Reads each `[sources.NAME]` table as the settings struct of its `kind`.
//!
//! A `#[serde(tag = "kind")]` enum buffers the whole table before it picks
//! the variant, and the buffer drops TOML positions, so every error would
//! point at the table's header. Here the first pass has already read each
//! `kind`. This pass runs the TOML deserializer over the text again and hands
//! each table straight to the struct of its kind, so that errors keep the
//! position of the offending key or value. It also records the line of every
//! key, for the checks that run after deserialization.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess};
use serde::de::{DeserializeOwned, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::raw::{RawSource, SourceKind};
use super::{line_of, toml_error};

/// One source table: its settings, and where its keys are in the file.
#[derive(Debug)]
pub struct SourceTable {
    pub settings: RawSource,
    /// Line where the source's name is first written: its `[sources.NAME]`
    /// header, its inline table, or its first dotted key.
    pub line: usize,
    /// Line of each key written in the table, including `kind`.
    pub key_lines: BTreeMap<String, usize>,
}

/// The source, and the key within it, that the deserializer is reading.
/// An error message starts with it, because the TOML error names neither.
#[derive(Default)]
struct Position {
    source: Option<String>,
    key: Option<String>,
}

/// Reads the settings of every source in `text`. `kinds` is the first
/// pass's result, with the `kind` of each source.
pub fn parse_sources(
    text: &str,
    kinds: &BTreeMap<String, SourceKind>,
) -> Result<BTreeMap<String, SourceTable>, String> {
    let position = RefCell::new(Position::default());
    let seed = DocumentSeed {
        text,
        kinds,
        position: &position,
    };
    let result = seed.deserialize(toml::Deserializer::new(text));
    result.map_err(|err| {
        let err = toml_error(text, &err);
        let position = position.into_inner();
        match (position.source, position.key) {
            (Some(source), Some(key)) => format!("sources.{source}.{key}: {err}"),
            (Some(source), None) => format!("sources.{source}: {err}"),
            (None, _) => err,
        }
    })
}

/// The text, the first pass's kinds and the error position, which every
/// seed below passes on.
#[derive(Clone, Copy)]
struct DocumentSeed<'a> {
    text: &'a str,
    kinds: &'a BTreeMap<String, SourceKind>,
    position: &'a RefCell<Position>,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = BTreeMap<String, SourceTable>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = BTreeMap<String, SourceTable>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sources = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "sources" {
                sources = map.next_value_seed(SourcesSeed(self))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(sources)
    }
}

/// Reads the `sources` table: one settings table per source name.
struct SourcesSeed<'a>(DocumentSeed<'a>);

impl<'de> DeserializeSeed<'de> for SourcesSeed<'_> {
    type Value = BTreeMap<String, SourceTable>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SourcesSeed<'_> {
    type Value = BTreeMap<String, SourceTable>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of sources")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let document = self.0;
        let mut tables = BTreeMap::new();
        // The name's span, not the table's: a table made by dotted keys
        // (`sources.NAME.kind = …`) has no span of its own.
        while let Some(name) = map.next_key::<Spanned<String>>()? {
            let line = line_of(document.text, name.span().start);
            let name = name.into_inner();
            // The first pass read the same text, so every name has a kind.
            let kind = *document.kinds.get(&name).ok_or_else(|| {
                de::Error::custom(format!("source `{name}` has no kind from the first pass"))
            })?;
            *document.position.borrow_mut() = Position {
                source: Some(name.clone()),
                key: None,
            };
            let mut key_lines = BTreeMap::new();
            let settings = map.next_value_seed(SettingsSeed {
                document,
                kind,
                key_lines: &mut key_lines,
            })?;
            *document.position.borrow_mut() = Position::default();
            let table = SourceTable {
                settings,
                line,
                key_lines,
            };
            tables.insert(name, table);
        }
        Ok(tables)
    }
}

/// Reads one source table as the settings struct of `kind`.
struct SettingsSeed<'a, 'b> {
    document: DocumentSeed<'a>,
    kind: SourceKind,
    key_lines: &'b mut BTreeMap<String, usize>,
}

impl<'de> DeserializeSeed<'de> for SettingsSeed<'_, '_> {
    type Value = RawSource;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SettingsSeed<'_, '_> {
    type Value = RawSource;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of source settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let access = SettingsAccess {
            map,
            document: self.document,
            key_lines: self.key_lines,
        };
        let settings = match self.kind {
            SourceKind::Appwrite => RawSource::Appwrite(read(access)?),
            SourceKind::StandardWebhooks => RawSource::StandardWebhooks(read(access)?),
            SourceKind::Okta => RawSource::Okta(read(access)?),
            SourceKind::Auth0 => RawSource::Auth0(read(access)?),
            SourceKind::Hmac => RawSource::Hmac(read(access)?),
            SourceKind::StripeStyle => RawSource::StripeStyle(read(access)?),
            SourceKind::OidcBackchannel => RawSource::OidcBackchannel(read(access)?),
            SourceKind::Ssf => RawSource::Ssf(read(access)?),
        };
        Ok(settings)
    }
}

/// Deserializes a settings struct from the entries of one source table.
fn read<'de, T, A>(access: SettingsAccess<'_, '_, A>) -> Result<T, A::Error>
where
    T: DeserializeOwned,
    A: MapAccess<'de>,
{
    T::deserialize(de::value::MapAccessDeserializer::new(access))
}

/// The entries of a source table without `kind`, which the settings
/// structs do not list. Records the line and the position of each key.
struct SettingsAccess<'a, 'b, A> {
    map: A,
    document: DocumentSeed<'a>,
    key_lines: &'b mut BTreeMap<String, usize>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SettingsAccess<'_, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = seed;
        loop {
            let key_seed = KeySeed {
                seed,
                document: self.document,
                key_lines: self.key_lines,
            };
            match self.map.next_key_seed(key_seed)? {
                Some(Key::Setting(value)) => return Ok(Some(value)),
                Some(Key::Kind(unused)) => {
                    self.map.next_value::<IgnoredAny>()?;
                    seed = unused;
                }
                None => {
                    // A missing key is reported after the last entry, and is
                    // about the table, not the key read last.
                    self.document.position.borrow_mut().key = None;
                    return Ok(None);
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A key of a source table: a setting, or `kind`, which gives the
/// settings struct's key seed back unused.
enum Key<V, S> {
    Setting(V),
    Kind(S),
}

/// Reads a key with its position and passes it to the settings struct's
/// key seed. Runs inside the TOML deserializer's own key step, so that an
/// unknown-key error points at the key.
struct KeySeed<'a, 'b, S> {
    seed: S,
    document: DocumentSeed<'a>,
    key_lines: &'b mut BTreeMap<String, usize>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, '_, S> {
    type Value = Key<S::Value, S>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = Spanned::<String>::deserialize(deserializer)?;
        let line = line_of(self.document.text, key.span().start);
        let name = key.into_inner();
        self.key_lines.insert(name.clone(), line);
        self.document.position.borrow_mut().key = Some(name.clone());
        if name == "kind" {
            return Ok(Key::Kind(self.seed));
        }
        let name: StringDeserializer<D::Error> = name.into_deserializer();
        self.seed.deserialize(name).map(Key::Setting)
    }
}
