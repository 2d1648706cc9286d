//! Access tokens (HS256 JWTs): signing, verifying, and the deployment's secret. What a valid
//! token says is a [`Caller`]; the HTTP layer (`http/auth.rs`) extracts and authorizes it.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use anyhow::Context as _;
use chrono::Utc;
use db::{exec, on_db, sqlx, Db};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Signs and checks access tokens (HS256).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// HS256, no leeway: built once, not for every request.
    validation: Validation,
    verified: Verified,
    ttl: Duration,
    /// Signs waiting-room place ids, derived from the same secret.
    place_key: rooms::PlaceKey,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    adm: bool,
    iat: i64,
    exp: i64,
    /// Set on stream tickets only (their id): a ticket opens one stream and is no bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tkt: Option<String>,
}

/// How long a stream ticket may wait to be used.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// The shortest secret accepted: HS256 wants a key of at least 256 bits.
const MIN_SECRET_LEN: usize = 32;

/// Words of the placeholders that deploy files and examples carry; a secret holding one was
/// copied from somewhere public.
const PLACEHOLDERS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "your-secret",
    "placeholder",
    "long-random-secret",
    "random-characters",
    "random characters",
];

/// Refuses a secret too short to sign tokens with, or one that is a known placeholder.
pub fn check_secret(secret: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        secret.len() >= MIN_SECRET_LEN,
        "must be at least {MIN_SECRET_LEN} characters (`openssl rand -hex 32` makes one); or leave \
         it unset to use the secret the deployment keeps in its database"
    );
    let lower = secret.to_lowercase();
    if let Some(word) = PLACEHOLDERS.iter().find(|word| lower.contains(*word)) {
        anyhow::bail!(
            "looks like a placeholder ({word:?}): anyone who read it could sign admin tokens; \
             set a random one, or leave it unset to use the secret kept in the database"
        );
    }
    let distinct: std::collections::HashSet<char> = secret.chars().collect();
    anyhow::ensure!(
        distinct.len() >= 8,
        "has fewer than 8 distinct characters: not a random secret"
    );
    Ok(())
}

impl Tokens {
    /// Signs with `secret` (`STAMPEDE_JWT_SECRET`) when given. Otherwise with the deployment's
    /// own secret, generated once and kept in its database (the SQLite file in the data
    /// directory on the embedded default), so tokens survive restarts and every instance
    /// accepts every other's tokens. Tokens live `ttl`.
    pub async fn load(
        secret: Option<&SecretString>,
        ttl: Duration,
        db: &Db,
    ) -> anyhow::Result<Self> {
        let secret = match secret {
            Some(secret) => secret.expose_secret().to_owned(),
            None => stored_secret(db).await.context("the token secret")?,
        };
        check_secret(&secret).context("STAMPEDE_JWT_SECRET")?;
        Ok(Self::from_secret(secret.as_bytes(), ttl))
    }

    pub fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = 0;
                validation
            },
            verified: Verified::default(),
            ttl,
            place_key: rooms::PlaceKey::derive(secret),
        }
    }

    /// The key that signs waiting-room place ids (every instance derives the same one).
    pub fn place_key(&self) -> rooms::PlaceKey {
        self.place_key.clone()
    }

    /// A token for `user_id`, and the seconds until it expires.
    pub fn issue(&self, user_id: i64, is_admin: bool) -> anyhow::Result<(String, u64)> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            adm: is_admin,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            tkt: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, self.ttl.as_secs()))
    }

    /// A stream ticket for `caller`: it names them for [`TICKET_TTL`], may open one stream
    /// (the route redeems its id once), and is refused as a bearer token. It goes in a URL,
    /// where a bearer token must not.
    pub fn issue_ticket(&self, caller: Caller) -> anyhow::Result<(String, u64)> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: caller.user_id.to_string(),
            adm: caller.is_admin,
            iat: now,
            exp: now + TICKET_TTL.as_secs() as i64,
            tkt: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, TICKET_TTL.as_secs()))
    }

    /// Who `token` was issued to; `None` unless it is an access token signed with this secret
    /// that has not expired.
    pub fn verify(&self, token: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Utc::now().timestamp();
        if let Some(caller) = self.verified.get(&digest, now) {
            return Some(caller);
        }
        let claims = self.decode(token)?;
        if claims.tkt.is_some() {
            return None;
        }
        let caller = claims.caller()?;
        self.verified.put(digest, caller, claims.exp);
        Some(caller)
    }

    /// Whom a stream ticket names, and its id (to redeem once); `None` unless it is a ticket
    /// signed with this secret that has not expired.
    pub fn verify_ticket(&self, ticket: &str) -> Option<(Caller, String)> {
        let claims = self.decode(ticket)?;
        let caller = claims.caller()?;
        Some((caller, claims.tkt?))
    }

    fn decode(&self, token: &str) -> Option<Claims> {
        Some(
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
                .ok()?
                .claims,
        )
    }
}

impl Claims {
    fn caller(&self) -> Option<Caller> {
        Some(Caller {
            user_id: self.sub.parse().ok()?,
            is_admin: self.adm,
        })
    }
}

async fn stored_secret(db: &Db) -> anyhow::Result<String> {
    let candidate = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut tx = db.begin().await?;
    exec!(
        tx,
        "INSERT INTO app_secrets (name, value) VALUES ('jwt', $1) ON CONFLICT DO NOTHING",
        &candidate
    )?;
    tx.commit().await?;
    Ok(
        on_db!(db, c => sqlx::query_scalar("SELECT value FROM app_secrets WHERE name = 'jwt'")
        .fetch_one(c)
        .await)?,
    )
}

/// Access tokens verified lately, by their SHA-256, with whom they name and when they expire. A
/// client sends the same token with every request, and hashing it costs a fraction of decoding
/// and checking it again (the largest cost of a flash sale's repeated requests, in a profile).
/// Two generations of at most [`VERIFIED_PER_GENERATION`] each: when the young one is full it
/// becomes the old one, so tokens in use stay and the rest age out (about 1 MB at most).
#[derive(Default)]
struct Verified(Mutex<[Generation; 2]>);

/// Token digests and whom they name, until when.
type Generation = HashMap<[u8; 32], (Caller, i64)>;

const VERIFIED_PER_GENERATION: usize = 8_192;

impl Verified {
    /// Whom the token of `digest` names, if it was verified and has not expired at `now`.
    fn get(&self, digest: &[u8; 32], now: i64) -> Option<Caller> {
        let mut generations = self.0.lock().expect("verified tokens lock");
        let (caller, expires) = match generations[0].get(digest) {
            Some(&found) => found,
            None => {
                let found = generations[1].remove(digest)?;
                Self::insert(&mut generations, *digest, found);
                found
            }
        };
        (now < expires).then_some(caller)
    }

    fn put(&self, digest: [u8; 32], caller: Caller, expires: i64) {
        let mut generations = self.0.lock().expect("verified tokens lock");
        Self::insert(&mut generations, digest, (caller, expires));
    }

    fn insert(generations: &mut [Generation; 2], digest: [u8; 32], entry: (Caller, i64)) {
        if generations[0].len() >= VERIFIED_PER_GENERATION {
            generations[1] = std::mem::take(&mut generations[0]);
        }
        generations[0].insert(digest, entry);
    }
}

/// The holder of a valid token: the authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: i64,
    pub is_admin: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let tokens = Tokens::from_secret(b"0123456789abcdef0123", Duration::from_secs(60));
        let (token, expires_in) = tokens.issue(42, true).unwrap();
        assert_eq!(expires_in, 60);
        let caller = tokens.verify(&token).unwrap();
        assert_eq!((caller.user_id, caller.is_admin), (42, true));
        let other = Tokens::from_secret(b"another-secret-of-20", Duration::from_secs(60));
        assert!(other.verify(&token).is_none());
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "42".into(),
                adm: false,
                iat: 0,
                exp: Utc::now().timestamp() - 1,
                tkt: None,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(tokens.verify(&expired).is_none());
        assert!(tokens.verify("not.a.token").is_none());
    }

    #[test]
    fn a_remembered_token_still_expires_and_only_the_exact_token_is_remembered() {
        let secret = b"0123456789abcdef0123";
        let tokens = Tokens::from_secret(secret, Duration::from_secs(60));
        let now = Utc::now().timestamp();
        let token = |sub: &str, exp: i64| {
            let claims = Claims {
                sub: sub.into(),
                adm: false,
                iat: now,
                exp,
                tkt: None,
            };
            let header = Header::new(Algorithm::HS256);
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
        };
        let soon = token("7", now + 2);
        assert_eq!(tokens.verify(&soon).unwrap().user_id, 7);
        assert_eq!(tokens.verify(&soon).unwrap().user_id, 7, "from memory");
        let digest: [u8; 32] = Sha256::digest(soon.as_bytes()).into();
        assert!(
            tokens.verified.get(&digest, now + 2).is_none(),
            "expired in memory too"
        );
        // Another user's claims under the remembered token's signature: not in memory, refused.
        let (_, signature) = soon.rsplit_once('.').unwrap();
        let (forged_body, _) = token("8", now + 2)
            .rsplit_once('.')
            .map(|(b, s)| (b.to_owned(), s.to_owned()))
            .unwrap();
        assert!(tokens
            .verify(&format!("{forged_body}.{signature}"))
            .is_none());
        // Past a generation's size the young tokens move to the old generation and are kept.
        for user in 0..VERIFIED_PER_GENERATION as i64 + 1 {
            tokens.verify(&token(&user.to_string(), now + 60)).unwrap();
        }
        assert_eq!(tokens.verified.get(&digest, now).unwrap().user_id, 7);
    }

    #[test]
    fn a_stream_ticket_is_no_bearer_token_and_a_token_is_no_ticket() {
        let tokens = Tokens::from_secret(b"0123456789abcdef0123", Duration::from_secs(60));
        let caller = Caller {
            user_id: 5,
            is_admin: true,
        };
        let (ticket, ttl) = tokens.issue_ticket(caller).unwrap();
        assert_eq!(ttl, TICKET_TTL.as_secs());
        assert!(
            tokens.verify(&ticket).is_none(),
            "a ticket is refused as a token"
        );
        let (named, id) = tokens.verify_ticket(&ticket).unwrap();
        assert_eq!((named.user_id, named.is_admin, id.len()), (5, true, 32));
        let (token, _) = tokens.issue(5, true).unwrap();
        assert!(
            tokens.verify_ticket(&token).is_none(),
            "a token is refused as a ticket"
        );
    }

    #[test]
    fn short_and_placeholder_secrets_are_refused() {
        for secret in [
            "sixteen-chars-ok",
            "change-me-to-a-long-random-secret",
            "CHANGEME0123456789abcdefghijklmnop",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "<32+ random characters>-and-then-some",
        ] {
            assert!(check_secret(secret).is_err(), "{secret}");
        }
        check_secret("3f9c1e7a0b4d8e2f6a5c9b1d7e3f0a8c").unwrap();
    }
}
