//! KBS sessions (RCAR: request, challenge, attestation, response): the
//! nonce `/auth` hands out and what `/attest` proved, keyed by the
//! `kbs-session-id` cookie. A session is good for one attestation: its nonce
//! is spent by the first `/attest`, so replaying an attestation (or re-using a
//! session for a second one) is refused. Pure: time is a parameter.

use std::collections::HashMap;

use base64::Engine;
use kbs_types::Tee;
use rand::{CryptoRng, RngCore};

use super::token::Attested;

/// How long a session lives, as the Trustee KBS: its cookie says the same.
pub const SESSION_SECS: u64 = 300;
/// Most sessions held at once (each is a few hundred bytes; expired ones go first).
pub const MAX_SESSIONS: usize = 65_536;

/// Why a session cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no KBS session with this cookie (unknown, or expired and forgotten): start again with /auth")]
    Unknown,
    #[error("the KBS session expired: start again with /auth")]
    Expired,
    #[error("this KBS session already attested once; its nonce is spent: start again with /auth")]
    Spent,
    #[error("this KBS session has not attested yet: call /attest first")]
    NotAttested,
    #[error("too many KBS sessions in progress; retry shortly")]
    Full,
}

/// A session id: 16 random bytes, shown as 32 hex digits in the cookie.
pub type SessionId = [u8; 16];

#[derive(Debug, Clone)]
enum Stage {
    /// Waiting for `/attest` with this nonce.
    Challenged { nonce: String },
    /// Attested: the cookie now authorises resource requests.
    Attested(Box<Attested>),
}

#[derive(Debug, Clone)]
struct Session {
    tee: Tee,
    expires_at: u64,
    stage: Stage,
}

/// The challenge a session was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub tee: Tee,
    /// Base64 (standard, padded) of 32 random bytes, as `/auth` returned it.
    pub nonce: String,
}

/// This node's sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<SessionId, Session>,
}

impl Sessions {
    /// Open a session for `tee` at `now`: its id and nonce.
    pub fn open<R: RngCore + CryptoRng>(
        &mut self,
        tee: Tee,
        now: u64,
        rng: &mut R,
    ) -> Result<(SessionId, Challenge), SessionError> {
        if self.map.len() >= MAX_SESSIONS {
            self.map.retain(|_, s| s.expires_at > now);
            if self.map.len() >= MAX_SESSIONS {
                return Err(SessionError::Full);
            }
        }
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let mut raw = [0u8; 32];
        rng.fill_bytes(&mut raw);
        let nonce = base64::engine::general_purpose::STANDARD.encode(raw);
        let session =
            Session { tee, expires_at: now + SESSION_SECS, stage: Stage::Challenged { nonce: nonce.clone() } };
        self.map.insert(id, session);
        Ok((id, Challenge { tee, nonce }))
    }

    /// Take a session's challenge for `/attest`. This spends it: whatever the
    /// verdict, the session cannot attest again.
    pub fn take_challenge(&mut self, id: &SessionId, now: u64) -> Result<Challenge, SessionError> {
        let s = self.live(id, now)?;
        match std::mem::replace(&mut s.stage, Stage::Challenged { nonce: String::new() }) {
            Stage::Challenged { nonce } if !nonce.is_empty() => Ok(Challenge { tee: s.tee, nonce }),
            Stage::Attested(a) => {
                s.stage = Stage::Attested(a);
                Err(SessionError::Spent)
            }
            Stage::Challenged { .. } => Err(SessionError::Spent),
        }
    }

    /// Record what a session's attestation proved; returns when the session expires.
    pub fn attested(&mut self, id: &SessionId, attested: Attested, now: u64) -> Result<u64, SessionError> {
        let session = self.live(id, now)?;
        session.stage = Stage::Attested(Box::new(attested));
        Ok(session.expires_at)
    }

    /// What an attested session proved, for a resource request.
    pub fn get(&mut self, id: &SessionId, now: u64) -> Result<Attested, SessionError> {
        match &self.live(id, now)?.stage {
            Stage::Attested(a) => Ok((**a).clone()),
            Stage::Challenged { .. } => Err(SessionError::NotAttested),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn live(&mut self, id: &SessionId, now: u64) -> Result<&mut Session, SessionError> {
        match self.map.get(id) {
            None => Err(SessionError::Unknown),
            Some(s) if s.expires_at <= now => {
                self.map.remove(id);
                Err(SessionError::Expired)
            }
            Some(_) => self.map.get_mut(id).ok_or(SessionError::Unknown),
        }
    }
}

/// Parse a `kbs-session-id` cookie value (32 hex digits).
pub fn parse_id(cookie: &str) -> Option<SessionId> {
    let bytes = hex::decode(cookie.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbs::token::tests::attested;

    #[test]
    fn a_session_attests_once_and_then_serves_until_it_expires() {
        let mut s = Sessions::default();
        let mut rng = rand::thread_rng();
        let (id, ch) = s.open(Tee::Sample, 100, &mut rng).unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&ch.nonce).unwrap().len(), 32);
        assert_eq!(parse_id(&hex::encode(id)), Some(id));
        assert_eq!(s.get(&id, 101).unwrap_err(), SessionError::NotAttested);
        assert_eq!(s.take_challenge(&id, 101).unwrap(), ch);
        assert_eq!(s.take_challenge(&id, 102).unwrap_err(), SessionError::Spent, "a nonce is spent once");
        assert_eq!(s.attested(&id, attested(), 102), Ok(100 + SESSION_SECS));
        assert_eq!(s.take_challenge(&id, 103).unwrap_err(), SessionError::Spent, "no second attestation");
        assert!(s.get(&id, 103).is_ok());
        assert_eq!(s.get(&id, 100 + SESSION_SECS).unwrap_err(), SessionError::Expired);
        assert_eq!(s.get(&id, 100 + SESSION_SECS).unwrap_err(), SessionError::Unknown);
        assert!(s.is_empty());
        assert_eq!(parse_id("zz"), None);
        assert_eq!(parse_id("00"), None);
    }

    #[test]
    fn a_full_table_drops_expired_sessions_first() {
        let mut s = Sessions::default();
        let mut rng = rand::thread_rng();
        for _ in 0..MAX_SESSIONS {
            s.open(Tee::Sample, 0, &mut rng).unwrap();
        }
        assert_eq!(s.open(Tee::Sample, 1, &mut rng).unwrap_err(), SessionError::Full);
        assert!(s.open(Tee::Sample, SESSION_SECS, &mut rng).is_ok());
        assert_eq!(s.len(), 1);
    }
}
