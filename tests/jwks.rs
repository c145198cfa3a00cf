//! JwksCache against a real JWKS server on 127.0.0.1: caching, reloads after
//! the maximum age, reloads forced by an unknown key id (at most one per
//! minute), serving cached keys while the server is down, and file locations.
//!
//! Keys are P-256 pairs generated with `ring` at test time. The cache's clock
//! is moved with `tokio::time::pause`, `advance` and `resume`; time runs
//! normally again before any request, so HTTP timeouts behave as usual.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey};
use revokd::jwks::{
    JwksCache, JwksError, JwksLocation, MAX_AGE, RETRY_AFTER_FAILURE, UNKNOWN_KID_REFRESH_INTERVAL,
};
use revokd::sources::jwt::TokenRejection;
use revokd::sources::ssf::{SsfSettings, SsfSource};
use revokd::sources::Inbound;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

const ISSUER: &str = "https://transmitter.example.com";
const AUDIENCE: &str = "https://hooks.example.com/hooks/ssf";
const NOW: i64 = 1_764_849_600;

/// A P-256 signing key and its public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn signing_key(kid: &str) -> SigningKey {
    let random = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
        .unwrap();
    // Uncompressed SEC1 point: 0x04, then x and y of 32 bytes each.
    let point = pair.public_key().as_ref();
    SigningKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

fn key_set_document(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

/// Signs a SET for the CAEP session-revoked event with `key`.
fn sign_set(key: &SigningKey) -> String {
    let header = json!({ "alg": "ES256", "kid": key.kid, "typ": "secevent+jwt" });
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": NOW, "jti": format!("set-{}", key.kid),
        "sub_id": { "format": "email", "email": "jane.doe@example.com" },
        "events": { "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {} },
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding, Algorithm::ES256)
            .unwrap();
    format!("{signing_input}.{signature}")
}

fn verify(token: &str, keys: &JwkSet) -> Result<(), TokenRejection> {
    let source = SsfSource::new(SsfSettings {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        authorization: None,
    })
    .unwrap();
    let headers: Vec<(String, String)> = Vec::new();
    source
        .verify_and_decode(
            &Inbound {
                headers: &headers,
                body: token.as_bytes(),
                now: NOW,
            },
            keys,
        )
        .map(|_| ())
}

fn kids(keys: &JwkSet) -> Vec<String> {
    keys.keys
        .iter()
        .filter_map(|key| key.common.key_id.clone())
        .collect()
}

/// What the test server returns on `GET /jwks`.
struct ServerState {
    document: Mutex<Value>,
    /// When set, every request gets this status with an empty body.
    failure_status: Mutex<Option<u16>>,
    requests: AtomicUsize,
}

struct JwksServer {
    url: String,
    state: Arc<ServerState>,
    handle: ServerHandle,
}

impl JwksServer {
    async fn start(document: Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let state = Arc::new(ServerState {
            document: Mutex::new(document),
            failure_status: Mutex::new(None),
            requests: AtomicUsize::new(0),
        });
        let app_state = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route("/jwks", web::get().to(serve_jwks))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        JwksServer { url, state, handle }
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn publish(&self, document: Value) {
        *self.state.document.lock().unwrap() = document;
    }

    fn fail_with(&self, status: Option<u16>) {
        *self.state.failure_status.lock().unwrap() = status;
    }

    async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn cache(&self) -> JwksCache {
        JwksCache::new(JwksLocation::Url(self.url.clone()), http_client())
    }
}

async fn serve_jwks(state: web::Data<ServerState>) -> HttpResponse {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = *state.failure_status.lock().unwrap() {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .finish();
    }
    let document = state.document.lock().unwrap().clone();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.to_string())
}

fn http_client() -> reqwest::Client {
    revokd::appwrite::http_client(Duration::from_secs(5), Duration::from_secs(2)).unwrap()
}

/// Moves the tokio clock forward by `duration`, then lets it run again.
async fn advance_clock(duration: Duration) {
    tokio::time::pause();
    tokio::time::advance(duration).await;
    tokio::time::resume();
}

#[tokio::test]
async fn keys_cached_until_max_age() {
    let first = signing_key("k1");
    let server = JwksServer::start(key_set_document(&[&first])).await;
    let cache = server.cache();

    let loaded = cache.keys().await.unwrap();
    assert_eq!(server.requests(), 1);
    assert_eq!(kids(&loaded), ["k1"]);

    let again = cache.keys().await.unwrap();
    assert_eq!(server.requests(), 1, "second call is served from the cache");
    assert!(Arc::ptr_eq(&loaded, &again));

    let second = signing_key("k2");
    server.publish(key_set_document(&[&second]));
    advance_clock(MAX_AGE - Duration::from_secs(1)).await;
    assert_eq!(kids(&cache.keys().await.unwrap()), ["k1"]);
    assert_eq!(server.requests(), 1, "still within the maximum age");

    advance_clock(Duration::from_secs(2)).await;
    assert_eq!(kids(&cache.keys().await.unwrap()), ["k2"]);
    assert_eq!(server.requests(), 2, "reloaded after the maximum age");
    server.stop().await;
}

#[tokio::test]
async fn unknown_kid_refetch_once_per_minute() {
    let old = signing_key("old");
    let server = JwksServer::start(key_set_document(&[&old])).await;
    let cache = server.cache();

    let keys = cache.keys().await.unwrap();
    assert_eq!(verify(&sign_set(&old), &keys), Ok(()));
    assert_eq!(server.requests(), 1);

    // The transmitter rotates to a new key and signs with it.
    let rotated = signing_key("rotated");
    server.publish(key_set_document(&[&old, &rotated]));
    let token = sign_set(&rotated);
    assert_eq!(
        verify(&token, &keys),
        Err(TokenRejection::UnknownKey {
            kid: Some("rotated".to_owned())
        })
    );
    let keys = cache.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(verify(&token, &keys), Ok(()));
    assert_eq!(
        kids(&cache.keys().await.unwrap()),
        ["old", "rotated"],
        "keys() serves the refreshed set"
    );

    // A second rotation within the minute: no refetch, the key stays unknown.
    let third = signing_key("third");
    server.publish(key_set_document(&[&rotated, &third]));
    let token = sign_set(&third);
    let keys = cache.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(server.requests(), 2, "throttled within the minute");
    assert!(matches!(
        verify(&token, &keys),
        Err(TokenRejection::UnknownKey { .. })
    ));

    advance_clock(UNKNOWN_KID_REFRESH_INTERVAL - Duration::from_secs(1)).await;
    cache.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(server.requests(), 2, "still throttled 59 s later");

    advance_clock(Duration::from_secs(2)).await;
    let keys = cache.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(server.requests(), 3, "refetched once the minute passed");
    assert_eq!(verify(&token, &keys), Ok(()));
    server.stop().await;
}

#[tokio::test]
async fn cached_keys_served_while_server_down() {
    let key = signing_key("k1");
    let server = JwksServer::start(key_set_document(&[&key])).await;
    let cache = server.cache();
    cache.keys().await.unwrap();

    // The server responds 503: the expired set is still served.
    server.fail_with(Some(503));
    advance_clock(MAX_AGE + Duration::from_secs(1)).await;
    let keys = cache.keys().await.unwrap();
    assert_eq!(kids(&keys), ["k1"]);
    assert_eq!(server.requests(), 2);
    assert_eq!(verify(&sign_set(&key), &keys), Ok(()));

    // No retry until RETRY_AFTER_FAILURE has passed.
    cache.keys().await.unwrap();
    assert_eq!(server.requests(), 2, "no retry right after a failure");
    advance_clock(RETRY_AFTER_FAILURE + Duration::from_secs(1)).await;
    cache.keys().await.unwrap();
    assert_eq!(server.requests(), 3, "retried after the wait");

    // The server is gone: connection refused, cached set still served.
    server.stop().await;
    advance_clock(RETRY_AFTER_FAILURE + Duration::from_secs(1)).await;
    assert_eq!(kids(&cache.keys().await.unwrap()), ["k1"]);
    assert_eq!(
        kids(&cache.refresh_for_unknown_kid().await.unwrap()),
        ["k1"]
    );
}

/// Moves the cache's clock past the pause after a failed first load.
async fn skip_first_load_pause() {
    tokio::time::pause();
    tokio::time::advance(revokd::jwks::FIRST_LOAD_RETRY + std::time::Duration::from_millis(1))
        .await;
    tokio::time::resume();
}

#[tokio::test]
async fn error_when_never_fetched() {
    let server = JwksServer::start(json!({ "keys": [] })).await;

    server.fail_with(Some(503));
    let cache = server.cache();
    let error = cache.keys().await.unwrap_err();
    assert_eq!(
        error,
        JwksError::Status {
            url: server.url.clone(),
            status: 503
        }
    );
    assert!(error.to_string().contains(&server.url), "{error}");
    assert!(cache.refresh_for_unknown_kid().await.is_err());

    // A set with no usable key is an error too.
    server.fail_with(None);
    skip_first_load_pause().await;
    let error = cache.keys().await.unwrap_err();
    assert!(matches!(error, JwksError::Invalid { .. }), "{error:?}");
    assert!(error.to_string().contains(&server.url), "{error}");

    server.publish(json!("not a key set"));
    skip_first_load_pause().await;
    let error = cache.keys().await.unwrap_err();
    assert!(error.to_string().contains("\"keys\" array"), "{error}");

    server.stop().await;
    let error = server.cache().keys().await.unwrap_err();
    assert!(matches!(error, JwksError::Fetch { .. }), "{error:?}");
    assert!(error.to_string().contains(&server.url), "{error}");
}

#[tokio::test]
async fn recovers_after_failed_first_fetch() {
    let key = signing_key("k1");
    let server = JwksServer::start(key_set_document(&[&key])).await;
    server.fail_with(Some(500));
    let cache = server.cache();
    assert!(cache.keys().await.is_err());

    // Right after the failure, no new fetch is made, even once the server is back.
    server.fail_with(None);
    assert!(cache.keys().await.is_err());
    assert_eq!(server.requests(), 1);

    skip_first_load_pause().await;
    assert_eq!(kids(&cache.keys().await.unwrap()), ["k1"]);
    assert_eq!(server.requests(), 2);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_first_use_fetches_once() {
    let key = signing_key("k1");
    let server = JwksServer::start(key_set_document(&[&key])).await;
    let cache = server.cache();
    let (first, second, third) = tokio::join!(cache.keys(), cache.keys(), cache.keys());
    assert!(first.is_ok(), "{first:?}");
    assert!(second.is_ok(), "{second:?}");
    assert!(third.is_ok(), "{third:?}");
    assert_eq!(server.requests(), 1);
    server.stop().await;
}

#[tokio::test]
async fn file_location() {
    let first = signing_key("file-1");
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("jwks.json");
    std::fs::write(&path, key_set_document(&[&first]).to_string()).unwrap();

    let cache = JwksCache::new(JwksLocation::File(path.clone()), http_client());
    let keys = cache.keys().await.unwrap();
    assert_eq!(verify(&sign_set(&first), &keys), Ok(()));

    // The file is read again when an unknown key id forces a reload.
    let second = signing_key("file-2");
    std::fs::write(&path, key_set_document(&[&first, &second]).to_string()).unwrap();
    let keys = cache.refresh_for_unknown_kid().await.unwrap();
    assert_eq!(verify(&sign_set(&second), &keys), Ok(()));

    // A broken file keeps the cached set.
    std::fs::write(&path, "{").unwrap();
    advance_clock(MAX_AGE + Duration::from_secs(1)).await;
    assert_eq!(kids(&cache.keys().await.unwrap()), ["file-1", "file-2"]);

    let missing = directory.path().join("missing.json");
    let error = JwksCache::new(JwksLocation::File(missing.clone()), http_client())
        .keys()
        .await
        .unwrap_err();
    assert!(matches!(error, JwksError::Read { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );

    let error = JwksCache::new(JwksLocation::File(path.clone()), http_client())
        .keys()
        .await
        .unwrap_err();
    assert!(matches!(error, JwksError::Invalid { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}
