//! Tests of whole decisions: users, `any`, open mode, JWT (HS256, and
//! RS256/ES256 from a JWKS file generated here), and the HTTP hook.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::password::tests::cheap_argon2;
use super::*;
use crate::config::{HookConfig, JwtConfig, Secret};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn perm(action: Action, path: Option<&str>) -> Permission {
    Permission {
        action,
        path: path.map(str::to_string),
    }
}

fn user(name: &str, pass: Option<&str>, permissions: Vec<Permission>) -> UserConfig {
    UserConfig {
        user: name.into(),
        pass: pass.map(Secret::new),
        permissions,
    }
}

fn creds(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> Credentials {
    Credentials {
        user: user.map(str::to_string),
        pass: pass.map(str::to_string),
        token: token.map(str::to_string),
    }
}

async fn ask(
    a: &Authenticator,
    action: Action,
    path: &str,
    c: &Credentials,
) -> Result<Identity, AuthError> {
    a.authorize(&AuthRequest {
        action,
        path,
        protocol: "rtmp",
        credentials: c,
        ip: Some([127, 0, 0, 1].into()),
        query: "",
        session_id: Some(1),
    })
    .await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn open_mode_allows_everything() {
    let a = Authenticator::new(&AuthConfig::default(), &[]).unwrap();
    assert!(a.is_open());
    let none = Credentials::default();
    for action in Action::ALL {
        assert_eq!(
            ask(&a, action, "any/path", &none).await,
            Ok(Identity::default())
        );
    }
    let only_any = [user("any", None, vec![perm(Action::Read, None)])];
    let a = Authenticator::new(&AuthConfig::default(), &only_any).unwrap();
    assert!(!a.is_open(), "a users list, even of `any` only, closes it");
}

fn studio() -> Vec<UserConfig> {
    vec![
        user(
            "obs",
            Some(&cheap_argon2("hunter2")),
            vec![perm(Action::Publish, Some("live/*"))],
        ),
        user(
            "ops",
            Some("plain:opsecret"),
            vec![perm(Action::Api, None), perm(Action::Metrics, None)],
        ),
        user("any", None, vec![perm(Action::Read, None)]),
    ]
}

#[tokio::test]
async fn users_argon2_plain_globs_and_any() {
    let a = Authenticator::new(&AuthConfig::default(), &studio()).unwrap();
    let obs = creds(Some("obs"), Some("hunter2"), None);
    let who = ask(&a, Action::Publish, "live/cam1", &obs).await.unwrap();
    assert_eq!(who.user.as_deref(), Some("obs"));
    for path in ["other/x", "live/a/b"] {
        assert!(
            matches!(
                ask(&a, Action::Publish, path, &obs).await,
                Err(AuthError::Forbidden(_))
            ),
            "{path}"
        );
    }
    // `any` applies to users with credentials too.
    assert!(ask(&a, Action::Read, "other/x", &obs).await.is_ok());
    assert!(matches!(
        ask(&a, Action::Api, "", &obs).await,
        Err(AuthError::Forbidden(_))
    ));

    let wrong = creds(Some("obs"), Some("hunter3"), None);
    let e = ask(&a, Action::Publish, "live/cam1", &wrong)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        AuthError::Unauthenticated("wrong user or password".into())
    );
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    // Wrong credentials are refused even where `any` would allow.
    assert!(ask(&a, Action::Read, "live/cam1", &wrong).await.is_err());
    let nobody = creds(Some("nobody"), Some("hunter2"), None);
    assert_eq!(
        ask(&a, Action::Publish, "live/cam1", &nobody).await,
        Err(AuthError::Unauthenticated("wrong user or password".into()))
    );

    let ops = creds(Some("ops"), Some("opsecret"), None);
    assert!(ask(&a, Action::Api, "", &ops).await.is_ok());
    assert!(ask(&a, Action::Metrics, "", &ops).await.is_ok());
    assert!(
        ask(
            &a,
            Action::Api,
            "",
            &creds(Some("ops"), Some("plain:opsecret"), None)
        )
        .await
        .is_err(),
        "the `plain:` prefix is not part of the password"
    );

    // Anonymous: `any` reads, nothing else.
    let anon = Credentials::default();
    assert_eq!(
        ask(&a, Action::Read, "live/cam1", &anon).await,
        Ok(Identity::default())
    );
    let e = ask(&a, Action::Publish, "live/cam1", &anon)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Unauthenticated(_)), "{e}");
    // A token without [auth.jwt] is ignored, not an error.
    let tok = creds(None, None, Some("a.b.c"));
    assert!(ask(&a, Action::Read, "x", &tok).await.is_ok());
}

#[tokio::test]
async fn argon2_cache_spares_repeated_verifications() {
    let a = Authenticator::new(&AuthConfig::default(), &studio()).unwrap();
    let Mode::Local(local) = &*a.inner else {
        panic!("local mode")
    };
    let obs = creds(Some("obs"), Some("hunter2"), None);
    for _ in 0..10 {
        assert!(ask(&a, Action::Publish, "live/cam1", &obs).await.is_ok());
    }
    assert_eq!(local.passwords.argon2_runs(), 1);
    let wrong = creds(Some("obs"), Some("nope"), None);
    for _ in 0..3 {
        assert!(ask(&a, Action::Publish, "live/cam1", &wrong).await.is_err());
    }
    assert_eq!(local.passwords.argon2_runs(), 4, "failures always verify");
}

// ---------------------------------------------------------------- JWT

fn jwt_config(secret: Option<&str>, jwks_file: Option<PathBuf>) -> AuthConfig {
    AuthConfig {
        jwt: Some(JwtConfig {
            secret: secret.map(Secret::new),
            jwks_file,
        }),
        hook: None,
    }
}

fn sign(header: Value, claims: Value, signer: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn hs256(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn bearer(token: &str) -> Credentials {
    creds(None, None, Some(token))
}

#[tokio::test]
async fn jwt_hs256() {
    let users = [user(
        "any",
        None,
        vec![perm(Action::Read, Some("public/*"))],
    )];
    let a = Authenticator::new(&jwt_config(Some(SECRET), None), &users).unwrap();
    let claims = json!({
        "sub": "cam-operator",
        "exp": now() + 600,
        "mediarelay_permissions": [
            {"action": "publish", "path": "live/*"},
            {"action": "read"},
            {"action": "playback"}
        ]
    });
    let good = hs256(SECRET, claims.clone());
    let who = ask(&a, Action::Publish, "live/cam1", &bearer(&good))
        .await
        .unwrap();
    assert_eq!(who.user.as_deref(), Some("cam-operator"));
    assert!(ask(&a, Action::Read, "x/y", &bearer(&good)).await.is_ok());
    // The action is not in the claims: forbidden, not unauthenticated.
    assert!(matches!(
        ask(&a, Action::Publish, "other/x", &bearer(&good)).await,
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        ask(&a, Action::Api, "", &bearer(&good)).await,
        Err(AuthError::Forbidden(_))
    ));

    let refused = |token: String, why: &'static str| {
        let a = a.clone();
        async move {
            match ask(&a, Action::Read, "public/x", &bearer(&token)).await {
                Err(AuthError::Unauthenticated(r)) => {
                    assert!(r.contains(why), "{r:?} should say {why:?}")
                }
                other => panic!("{why}: {other:?}"),
            }
        }
    };
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 120);
    // Refused although `any` may read public/*: a bad token is not anonymous.
    refused(hs256(SECRET, expired), "expired").await;
    let mut early = claims.clone();
    early["nbf"] = json!(now() + 120);
    refused(hs256(SECRET, early), "not valid yet").await;
    refused(
        hs256("another-secret-of-enough-length-0123456789", claims.clone()),
        "bad signature",
    )
    .await;
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(hs256(SECRET, no_exp), "exp").await;
    refused("not-a-jwt".into(), "malformed").await;
    // This token's claims under another token's signature.
    let other = hs256(SECRET, json!({"exp": now() + 1}));
    let tampered = format!(
        "{}{}",
        &good[..good.rfind('.').unwrap()],
        &other[other.rfind('.').unwrap()..]
    );
    refused(tampered, "bad signature").await;
    refused(
        sign(json!({"alg": "none", "typ": "JWT"}), claims.clone(), |_| {
            Vec::new()
        }),
        "malformed",
    )
    .await;
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    refused(hs384, "not accepted").await;

    // Claims without the permissions claim grant nothing but `any`'s.
    let bare = hs256(SECRET, json!({"exp": now() + 60}));
    assert!(
        ask(&a, Action::Read, "public/x", &bearer(&bare))
            .await
            .is_ok()
    );
    assert!(matches!(
        ask(&a, Action::Read, "live/x", &bearer(&bare)).await,
        Err(AuthError::Forbidden(_))
    ));
    // Without a token or user: `any`, else credentials required.
    let anon = Credentials::default();
    assert!(ask(&a, Action::Read, "public/x", &anon).await.is_ok());
    assert!(matches!(
        ask(&a, Action::Read, "live/x", &anon).await,
        Err(AuthError::Unauthenticated(_))
    ));
    // From the query string, as a player would send it.
    let q = Credentials::from_query(&format!("jwt={good}"));
    assert!(ask(&a, Action::Publish, "live/cam1", &q).await.is_ok());
}

/// An RSA and a P-256 key generated with aws-lc-rs, and a JWKS file with
/// their public halves.
struct Keys {
    rsa: aws_lc_rs::signature::RsaKeyPair,
    ec: aws_lc_rs::signature::EcdsaKeyPair,
    dir: PathBuf,
}

impl Keys {
    fn new() -> Keys {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mediarelay-auth-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Keys {
            rsa: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
            ec: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            dir,
        }
    }

    fn rsa_jwk(&self, kid: &str) -> Value {
        use aws_lc_rs::signature::KeyPair;
        let p = self.rsa.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(p.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(p.exponent().big_endian_without_leading_zero()),
        })
    }

    fn ec_jwk(&self, kid: &str) -> Value {
        use aws_lc_rs::signature::KeyPair;
        let point = self.ec.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        })
    }

    fn write_jwks(&self, keys: Vec<Value>) -> PathBuf {
        let path = self.dir.join("jwks.json");
        std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
        path
    }

    fn rs256(&self, kid: Option<&str>, claims: Value) -> String {
        let header = match kid {
            Some(k) => json!({"alg": "RS256", "typ": "JWT", "kid": k}),
            None => json!({"alg": "RS256", "typ": "JWT"}),
        };
        sign(header, claims, |msg| {
            let mut sig = vec![0; self.rsa.public_modulus_len()];
            self.rsa
                .sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .unwrap();
            sig
        })
    }

    fn es256(&self, kid: &str, claims: Value) -> String {
        sign(json!({"alg": "ES256", "kid": kid}), claims, |msg| {
            self.ec
                .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
                .unwrap()
                .as_ref()
                .to_vec()
        })
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn reader_claims() -> Value {
    json!({"exp": now() + 600, "mediarelay_permissions": [{"action": "read", "path": "live/**"}]})
}

#[tokio::test]
async fn jwt_rs256_and_es256_from_jwks() {
    let keys = Keys::new();
    let path = keys.write_jwks(vec![
        keys.rsa_jwk("rsa-1"),
        keys.ec_jwk("ec-1"),
        json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "OKP", "crv": "X25519", "x": "AAAA"}),
    ]);
    assert_eq!(read_jwks_file(&path).unwrap().len(), 2, "usable keys only");
    let a = Authenticator::new(&jwt_config(None, Some(path)), &[]).unwrap();
    let claims = reader_claims();

    for token in [
        keys.rs256(Some("rsa-1"), claims.clone()),
        keys.rs256(None, claims.clone()),
        keys.es256("ec-1", claims.clone()),
    ] {
        assert!(
            ask(&a, Action::Read, "live/a/b", &bearer(&token))
                .await
                .is_ok()
        );
        assert!(matches!(
            ask(&a, Action::Publish, "live/a", &bearer(&token)).await,
            Err(AuthError::Forbidden(_))
        ));
    }
    let wrong_kid = keys.rs256(Some("rsa-2"), claims.clone());
    match ask(&a, Action::Read, "live/x", &bearer(&wrong_kid)).await {
        Err(AuthError::Unauthenticated(r)) => assert!(r.contains("rsa-2"), "{r}"),
        other => panic!("{other:?}"),
    }
    // An ES256 token claiming the RSA key's kid finds no ES256 key.
    let mixed = keys.es256("rsa-1", claims.clone());
    assert!(
        ask(&a, Action::Read, "live/x", &bearer(&mixed))
            .await
            .is_err()
    );
    // A key that is not in the file.
    let other = Keys::new();
    let forged = other.es256("ec-1", claims.clone());
    match ask(&a, Action::Read, "live/x", &bearer(&forged)).await {
        Err(AuthError::Unauthenticated(r)) => assert!(r.contains("bad signature"), "{r}"),
        other => panic!("{other:?}"),
    }
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 3600);
    let token = keys.es256("ec-1", expired);
    assert!(
        ask(&a, Action::Read, "live/x", &bearer(&token))
            .await
            .is_err()
    );
    // HS256 is not accepted without a secret (no key confusion with RSA keys).
    let hs = hs256(SECRET, claims);
    match ask(&a, Action::Read, "live/x", &bearer(&hs)).await {
        Err(AuthError::Unauthenticated(r)) => assert!(r.contains("HS256"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn jwks_file_is_reread_when_it_changes() {
    let keys = Keys::new();
    let path = keys.write_jwks(vec![keys.ec_jwk("old")]);
    let a =
        Authenticator::build(&jwt_config(None, Some(path.clone())), &[], Duration::ZERO).unwrap();
    let token = keys.es256("new", reader_claims());
    assert!(
        ask(&a, Action::Read, "live/x", &bearer(&token))
            .await
            .is_err()
    );
    // Rotate: the same key under a new kid (and a different file length).
    keys.write_jwks(vec![keys.ec_jwk("new"), keys.rsa_jwk("rsa")]);
    assert!(
        ask(&a, Action::Read, "live/x", &bearer(&token))
            .await
            .is_ok()
    );
    // A broken file keeps the keys it had.
    std::fs::write(&path, "{ not json").unwrap();
    assert!(
        ask(&a, Action::Read, "live/x", &bearer(&token))
            .await
            .is_ok()
    );

    // With the default recheck interval, a change is not seen at once.
    let path = keys.write_jwks(vec![keys.ec_jwk("old")]);
    let a = Authenticator::new(&jwt_config(None, Some(path)), &[]).unwrap();
    keys.write_jwks(vec![keys.ec_jwk("new")]);
    assert!(
        ask(&a, Action::Read, "live/x", &bearer(&token))
            .await
            .is_err()
    );
}

#[test]
fn bad_jwt_config_is_refused() {
    let e = Authenticator::new(&jwt_config(Some("short"), None), &[]).unwrap_err();
    assert!(e.starts_with("auth.jwt.secret"), "{e}");
    let e = Authenticator::new(
        &jwt_config(None, Some("/nonexistent/jwks.json".into())),
        &[],
    )
    .unwrap_err();
    assert!(
        e.starts_with("auth.jwt.jwks_file: cannot read /nonexistent/jwks.json"),
        "{e}"
    );
    assert!(parse_jwks(br#"{"keys": []}"#).is_err());
    assert!(parse_jwks(b"[]").is_err());
}

// ---------------------------------------------------------------- hook

struct HookServer {
    url: String,
    calls: Arc<AtomicU64>,
    bodies: Arc<std::sync::Mutex<Vec<Value>>>,
}

/// A hook on 127.0.0.1 that allows paths under `ok/`, answers 401 for
/// `login`, sleeps on `slow` and refuses (403) the rest.
async fn hook_server() -> HookServer {
    use axum::http::StatusCode;
    let calls = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, b) = (calls.clone(), bodies.clone());
    let app = axum::Router::new().route(
        "/auth",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (c, b) = (c.clone(), b.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let path = body["path"].as_str().unwrap_or("").to_string();
                b.lock().unwrap().push(body);
                if path == "slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                if path.starts_with("ok/") {
                    StatusCode::NO_CONTENT
                } else if path == "login" {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    HookServer {
        url: format!("http://{addr}/auth"),
        calls,
        bodies,
    }
}

fn hook_config(url: &str, cache: Duration) -> AuthConfig {
    AuthConfig {
        jwt: Some(JwtConfig {
            secret: Some(Secret::new(SECRET)),
            jwks_file: None,
        }),
        hook: Some(HookConfig {
            url: url.into(),
            timeout: Duration::from_millis(300),
            cache,
        }),
    }
}

#[tokio::test]
async fn hook_decides_alone_and_caches() {
    let server = hook_server().await;
    // Users are configured too, but the hook alone decides.
    let a = Authenticator::new(
        &hook_config(&server.url, Duration::from_secs(10)),
        &studio(),
    )
    .unwrap();
    assert!(!a.is_open());
    let c = creds(Some("cam"), Some("pw"), Some("tok"));
    let req = AuthRequest {
        action: Action::Publish,
        path: "ok/cam1",
        protocol: "rtmp",
        credentials: &c,
        ip: Some("::1".parse().unwrap()),
        query: "user=cam&pass=pw",
        session_id: Some(7),
    };
    let who = a.authorize(&req).await.unwrap();
    assert_eq!(who.user.as_deref(), Some("cam"));
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        server.bodies.lock().unwrap()[0],
        json!({
            "action": "publish", "path": "ok/cam1", "protocol": "rtmp",
            "user": "cam", "password": "pw", "token": "tok", "ip": "::1",
            "query": "user=cam&pass=pw", "session_id": 7
        })
    );
    // Same request (another session): from the cache.
    let again = AuthRequest {
        session_id: Some(8),
        ..req
    };
    assert!(a.authorize(&again).await.is_ok());
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
    // Something else in the request: asked again.
    let other = AuthRequest {
        action: Action::Read,
        ..req
    };
    assert!(a.authorize(&other).await.is_ok());
    assert_eq!(server.calls.load(Ordering::SeqCst), 2);

    // 403 refuses, and the refusal is cached as well.
    let denied = AuthRequest {
        path: "secret/x",
        ..req
    };
    for _ in 0..2 {
        assert!(matches!(
            a.authorize(&denied).await,
            Err(AuthError::Forbidden(_))
        ));
    }
    assert_eq!(server.calls.load(Ordering::SeqCst), 3);
    let anon = Credentials::default();
    let login = AuthRequest {
        path: "login",
        credentials: &anon,
        ..req
    };
    assert!(matches!(
        a.authorize(&login).await,
        Err(AuthError::Unauthenticated(_))
    ));

    // A hook that does not answer in time refuses, after the timeout.
    let slow = AuthRequest {
        path: "slow",
        ..req
    };
    let t0 = std::time::Instant::now();
    match a.authorize(&slow).await {
        Err(AuthError::Unavailable(r)) => assert!(r.contains("in time"), "{r}"),
        other => panic!("{other:?}"),
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn hook_without_cache_and_hook_down() {
    let server = hook_server().await;
    let a = Authenticator::new(&hook_config(&server.url, Duration::ZERO), &[]).unwrap();
    let c = Credentials::default();
    let req = AuthRequest {
        action: Action::Read,
        path: "ok/x",
        protocol: "hls",
        credentials: &c,
        ip: None,
        query: "",
        session_id: None,
    };
    for _ in 0..3 {
        assert!(a.authorize(&req).await.is_ok());
    }
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        3,
        "cache = 0s: every time"
    );

    // Nothing listens there: refused as unavailable.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = Authenticator::new(
        &hook_config(&format!("http://127.0.0.1:{port}/auth"), Duration::ZERO),
        &[],
    )
    .unwrap();
    assert!(matches!(
        a.authorize(&req).await,
        Err(AuthError::Unavailable(_))
    ));
}
