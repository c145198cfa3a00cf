//! Runs the `hmac` and `stripe-style` verifiers on signature vectors made by
//! other implementations (Python `hmac`, and the values GitHub and WorkOS
//! publish) and compares each verdict with the expected one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use revokd::sources::body_hmac::{HmacAlgorithm, HmacSettings, HmacSource, SignatureEncoding};
use revokd::sources::stripe_style::{StripeStyleSettings, StripeStyleSource, TimestampUnit};
use revokd::sources::{Inbound, Rejection};
use secrecy::SecretString;
use serde_json::{Map, Value};

const HMAC_VECTORS: &str = include_str!("vectors/hmac.json");

/// Settings each kind takes in a case's `config`. Any other key fails the
/// case, so that a setting the test does not map is noticed.
const HMAC_KEYS: &[&str] = &[
    "header",
    "prefix",
    "algorithm",
    "encoding",
    "secrets",
    "id_header",
    "type_header",
    "type_pointer",
];
const STRIPE_STYLE_KEYS: &[&str] = &[
    "header",
    "timestamp_unit",
    "tolerance_seconds",
    "secrets",
    "type_pointer",
];

/// A source built from one case.
enum Source {
    Hmac(HmacSource),
    StripeStyle(StripeStyleSource),
}

impl Source {
    fn verify(&self, request: &Inbound) -> Result<(), Rejection> {
        match self {
            Source::Hmac(source) => source.verify(request),
            Source::StripeStyle(source) => source.verify(request),
        }
    }
}

/// Reads the settings of one case's `config`, naming the case in every
/// error.
struct Config<'a> {
    case: &'a str,
    fields: &'a Map<String, Value>,
}

impl Config<'_> {
    fn check_keys(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .fields
            .keys()
            .find(|key| !allowed.contains(&key.as_str()))
        {
            Some(key) => Err(format!("{:?}: unknown config key {key:?}", self.case)),
            None => Ok(()),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.fields.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!("{:?}: config {key:?} is not a string", self.case)),
        }
    }

    fn required_string(&self, key: &str) -> Result<String, String> {
        self.string(key)?
            .ok_or_else(|| format!("{:?}: config has no {key:?}", self.case))
    }

    fn secrets(&self) -> Result<Vec<SecretString>, String> {
        let Some(Value::Array(items)) = self.fields.get("secrets") else {
            return Err(format!("{:?}: config secrets is not an array", self.case));
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(SecretString::from(text.as_str())),
                _ => Err(format!("{:?}: a secret is not a string", self.case)),
            })
            .collect()
    }

    fn hmac_settings(&self) -> Result<HmacSettings, String> {
        self.check_keys(HMAC_KEYS)?;
        let algorithm = match self.string("algorithm")?.as_deref() {
            None | Some("sha256") => HmacAlgorithm::Sha256,
            Some("sha512") => HmacAlgorithm::Sha512,
            Some(other) => return Err(format!("{:?}: unknown algorithm {other:?}", self.case)),
        };
        let encoding = match self.string("encoding")?.as_deref() {
            None | Some("hex") => SignatureEncoding::Hex,
            Some("base64") => SignatureEncoding::Base64,
            Some(other) => return Err(format!("{:?}: unknown encoding {other:?}", self.case)),
        };
        Ok(HmacSettings {
            header: self.required_string("header")?,
            prefix: self.string("prefix")?.unwrap_or_default(),
            algorithm,
            encoding,
            secrets: self.secrets()?,
            id_header: self.string("id_header")?,
            type_header: self.string("type_header")?,
            type_pointer: self.string("type_pointer")?,
        })
    }

    fn stripe_style_settings(&self) -> Result<StripeStyleSettings, String> {
        self.check_keys(STRIPE_STYLE_KEYS)?;
        let timestamp_unit = match self.string("timestamp_unit")?.as_deref() {
            None | Some("s") => TimestampUnit::Seconds,
            Some("ms") => TimestampUnit::Millis,
            Some(other) => {
                return Err(format!("{:?}: unknown timestamp_unit {other:?}", self.case))
            }
        };
        let tolerance_seconds = match self.fields.get("tolerance_seconds") {
            None => 300,
            Some(value) => value
                .as_u64()
                .ok_or_else(|| format!("{:?}: tolerance_seconds is not an integer", self.case))?,
        };
        Ok(StripeStyleSettings {
            header: self.required_string("header")?,
            timestamp_unit,
            tolerance_seconds,
            secrets: self.secrets()?,
            type_pointer: self
                .string("type_pointer")?
                .unwrap_or_else(|| "/type".to_owned()),
        })
    }
}

fn build_source(case: &str, kind: &str, config: &Map<String, Value>) -> Result<Source, String> {
    let config = Config {
        case,
        fields: config,
    };
    let built = match kind {
        "hmac" => HmacSource::new(config.hmac_settings()?).map(Source::Hmac),
        "stripe-style" => {
            StripeStyleSource::new(config.stripe_style_settings()?).map(Source::StripeStyle)
        }
        other => return Err(format!("{case:?}: unknown kind {other:?}")),
    };
    built.map_err(|error| format!("{case:?}: {error}"))
}

/// Counts the cases in the raw file text, independently of the JSON loader,
/// so that a loader or loop that skips cases fails.
fn declared_case_count(text: &str) -> usize {
    text.matches("\"verified\":").count()
}

fn describe(result: &Result<(), Rejection>) -> String {
    match result {
        Ok(()) => "verified".to_owned(),
        Err(rejection) => format!("rejected ({rejection})"),
    }
}

/// Runs one case and returns its failure, if any.
fn run_case(index: usize, raw: &Value) -> Result<(), String> {
    let name = raw["name"]
        .as_str()
        .ok_or_else(|| format!("case {index} has no name"))?;
    let kind = raw["kind"]
        .as_str()
        .ok_or_else(|| format!("{name:?}: no kind"))?;
    let config = raw["config"]
        .as_object()
        .ok_or_else(|| format!("{name:?}: config is not an object"))?;
    let now = raw["now"]
        .as_i64()
        .ok_or_else(|| format!("{name:?}: no integer now"))?;
    let verified = raw["verified"]
        .as_bool()
        .ok_or_else(|| format!("{name:?}: verified is not a boolean"))?;
    let headers: Vec<(String, String)> = raw["headers"]
        .as_object()
        .ok_or_else(|| format!("{name:?}: headers is not an object"))?
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), text.clone())),
            _ => Err(format!("{name:?}: header {key:?} is not a string")),
        })
        .collect::<Result<_, _>>()?;
    let body = raw["body_base64"]
        .as_str()
        .map(|text| BASE64.decode(text))
        .ok_or_else(|| format!("{name:?}: no body_base64"))?
        .map_err(|error| format!("{name:?}: body_base64: {error}"))?;

    let source = build_source(name, kind, config)?;
    let result = source.verify(&Inbound {
        headers: &headers,
        body: &body,
        now,
    });
    if result.is_ok() == verified {
        Ok(())
    } else {
        Err(format!(
            "{name:?}: expected verified={verified}, got {}",
            describe(&result)
        ))
    }
}

#[test]
fn hmac_and_stripe_style_vectors() {
    let document: Value = serde_json::from_str(HMAC_VECTORS).expect("hmac.json is JSON");
    let cases = document["cases"]
        .as_array()
        .expect("hmac.json has a \"cases\" array");

    let mut checked = 0;
    let mut failures = Vec::new();
    for (index, raw) in cases.iter().enumerate() {
        if let Err(failure) = run_case(index, raw) {
            failures.push(failure);
        }
        checked += 1;
    }

    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    assert!(checked > 0, "hmac.json has no cases");
    assert_eq!(checked, declared_case_count(HMAC_VECTORS));
}

#[test]
fn vectors_cover_both_kinds() {
    let document: Value = serde_json::from_str(HMAC_VECTORS).expect("hmac.json is JSON");
    let kinds: Vec<&str> = document["cases"]
        .as_array()
        .expect("hmac.json has a \"cases\" array")
        .iter()
        .filter_map(|case| case["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"hmac"), "no hmac case");
    assert!(kinds.contains(&"stripe-style"), "no stripe-style case");
}
