//! Secret references: a secret is read from a named environment variable or a
//! file, never written in the config file itself.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The location of a secret: `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "environment variable {name}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// Reads environment variables; tests and the demo pass their own.
pub trait Environment {
    /// Returns the variable's value, or `None` when it is unset or not UTF-8.
    fn var(&self, name: &str) -> Option<String>;

    /// Returns whether the variable is set but not valid UTF-8.
    fn is_not_unicode(&self, _name: &str) -> bool {
        false
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn is_not_unicode(&self, name: &str) -> bool {
        matches!(std::env::var(name), Err(std::env::VarError::NotUnicode(_)))
    }
}

impl SecretRef {
    /// Reads the secret. A file's trailing newline (`\n` or `\r\n`) is trimmed;
    /// an empty value is an error, because an empty key verifies nothing.
    pub fn resolve(&self, env: &dyn Environment) -> Result<SecretString, String> {
        let value = match self {
            SecretRef::Env(name) => env.var(name).ok_or_else(|| {
                if env.is_not_unicode(name) {
                    format!(
                        "environment variable {name} is not valid UTF-8: export it as UTF-8 \
                         text, or use {{ file = \"/path\" }}"
                    )
                } else {
                    format!("environment variable {name} is not set: export it, or use {{ file = \"/path\" }}")
                }
            })?,
            SecretRef::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|err| {
                    format!(
                        "cannot read secret file {}: {err}: check the path and its permissions, \
                         or use {{ env = \"VARIABLE\" }}",
                        path.display()
                    )
                })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
        };
        if value.is_empty() {
            return Err(format!("{self} is empty: set it to the secret's value"));
        }
        Ok(SecretString::from(value))
    }
}

/// Resolves the secret references of a config file and collects every
/// failure, so that one error lists all of them.
pub(super) struct SecretResolver<'a> {
    env: &'a dyn Environment,
    failures: Vec<String>,
}

impl<'a> SecretResolver<'a> {
    pub(super) fn new(env: &'a dyn Environment) -> Self {
        SecretResolver {
            env,
            failures: Vec::new(),
        }
    }

    /// Reads the secret that config key `key` refers to. On failure, records
    /// the key and the reason, and returns `None`.
    pub(super) fn resolve(&mut self, key: &str, reference: &SecretRef) -> Option<SecretString> {
        match reference.resolve(self.env) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.failures.push(format!("{key}: {reason}"));
                None
            }
        }
    }

    /// Returns one error that lists every failure recorded so far.
    pub(super) fn finish(self) -> Result<(), String> {
        match self.failures.as_slice() {
            [] => Ok(()),
            [failure] => Err(failure.clone()),
            failures => Err(format!(
                "{} secrets cannot be read:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretRefVisitor)
    }
}

struct SecretRefVisitor;

const INLINE_SECRET: &str = "secrets are not read from the config file: \
     write { env = \"VARIABLE\" } or { file = \"/path/to/secret\" }";

/// Implements the visitor methods of every scalar type, each failing with
/// `$message`. A scalar may be the secret itself, so the error never repeats
/// it, unlike serde's default `invalid type` message.
macro_rules! reject_scalars {
    ($value:ty, $message:expr) => {
        fn visit_str<E: de::Error>(self, _value: &str) -> Result<$value, E> {
            Err(E::custom($message))
        }

        fn visit_i64<E: de::Error>(self, _value: i64) -> Result<$value, E> {
            Err(E::custom($message))
        }

        fn visit_u64<E: de::Error>(self, _value: u64) -> Result<$value, E> {
            Err(E::custom($message))
        }

        fn visit_f64<E: de::Error>(self, _value: f64) -> Result<$value, E> {
            Err(E::custom($message))
        }

        fn visit_bool<E: de::Error>(self, _value: bool) -> Result<$value, E> {
            Err(E::custom($message))
        }
    };
}

impl<'de> Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{ env = \"VARIABLE\" } or { file = \"/path\" }")
    }

    reject_scalars!(SecretRef, INLINE_SECRET);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let mut found: Option<SecretRef> = None;
        while let Some(key) = map.next_key::<String>()? {
            let reference = match key.as_str() {
                "env" => SecretRef::Env(map.next_value()?),
                "file" => SecretRef::File(map.next_value()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` in a secret reference: use `env` or `file`"
                    )))
                }
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret reference takes either `env` or `file`, not both",
                ));
            }
            found = Some(reference);
        }
        found.ok_or_else(|| de::Error::custom(INLINE_SECRET))
    }
}

/// Reads a list of secret references, such as a source's `secrets`. A
/// scalar in place of the list gets an error that does not repeat it.
pub(super) fn secret_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretRef>, D::Error> {
    deserializer.deserialize_any(SecretListVisitor)
}

struct SecretListVisitor;

impl<'de> Visitor<'de> for SecretListVisitor {
    type Value = Vec<SecretRef>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of secret references, e.g. [{ env = \"VARIABLE\" }]")
    }

    reject_scalars!(Self::Value, INLINE_SECRET_LIST);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        while let Some(reference) = seq.next_element()? {
            list.push(reference);
        }
        Ok(list)
    }
}

const INLINE_SECRET_LIST: &str = "secrets are not read from the config file: \
     write a list of references, e.g. [{ env = \"VARIABLE\" }, { file = \"/path/to/secret\" }]";

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    impl Environment for HashMap<&str, &str> {
        fn var(&self, name: &str) -> Option<String> {
            self.get(name).map(|v| v.to_string())
        }
    }

    #[derive(Deserialize)]
    struct Holder {
        secret: SecretRef,
    }

    fn parse(text: &str) -> Result<SecretRef, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.secret)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_env_and_file() {
        assert_eq!(
            parse("secret = { env = \"X\" }"),
            Ok(SecretRef::Env("X".into()))
        );
        assert_eq!(
            parse("secret = { file = \"/run/s\" }"),
            Ok(SecretRef::File("/run/s".into()))
        );
    }

    #[test]
    fn rejects_inline_and_both() {
        assert!(parse("secret = \"hunter2\"")
            .unwrap_err()
            .contains("not read from the config file"));
        assert!(parse("secret = { env = \"X\", file = \"/y\" }")
            .unwrap_err()
            .contains("not both"));
        assert!(parse("secret = { value = \"x\" }")
            .unwrap_err()
            .contains("unknown key `value`"));
    }

    #[test]
    fn resolves_env_and_trims_file_newline() {
        let env: HashMap<&str, &str> = [("A", "abc")].into();
        let value = SecretRef::Env("A".into()).resolve(&env).unwrap();
        assert_eq!(value.expose_secret(), "abc");
        let missing = SecretRef::Env("B".into()).resolve(&env).unwrap_err();
        assert!(missing.contains("B is not set"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\r\n").unwrap();
        let value = SecretRef::File(path).resolve(&env).unwrap();
        assert_eq!(value.expose_secret(), "from-file");
    }

    #[test]
    fn non_utf8_env_var_is_named() {
        use std::os::unix::ffi::OsStringExt;
        // A name no other test uses, because the process environment is shared.
        let name = "REVOKD_TEST_SECRET_NOT_UTF8";
        std::env::set_var(name, std::ffi::OsString::from_vec(vec![0x66, 0xff, 0x6f]));
        let error = SecretRef::Env(name.into())
            .resolve(&ProcessEnv)
            .unwrap_err();
        std::env::remove_var(name);
        assert!(error.contains("is not valid UTF-8"), "{error}");
        assert!(error.contains(name), "{error}");
    }
}
