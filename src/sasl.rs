//! SASL, on both paths it takes through the gateway:
//! - the gateway's own connections (discovery, `check`) authenticate with `[upstream.sasl]`:
//!   SaslHandshake v1, then SaslAuthenticate until the mechanism is done ([`Exchange`] computes the
//!   tokens with rsasl; `upstream.rs` sends them);
//! - a client's own SASL passes through untouched. SaslHandshake v1+ wraps every token in a
//!   SaslAuthenticate request, an ordinary frame. After SaslHandshake v0 the tokens travel as bare
//!   size-prefixed frames without a Kafka header; [`RawTokens`] counts them, so that the session
//!   forwards them as they are and reads Kafka headers again after the last.

use std::io::Cursor as Output;
use std::sync::Arc;

use rsasl::prelude::{Mechname, SASLClient, SASLConfig, Session, State};

use crate::config::Sasl;
use crate::wire::{self, Cursor, SIZE_LEN};

/// Why the gateway could not authenticate. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("the broker does not accept SASL mechanism {wanted} (it offers: {})", offered.join(", "))]
    Unsupported { wanted: &'static str, offered: Vec<String> },
    #[error("the broker refused the SASL handshake: error code {0}")]
    Handshake(i16),
    #[error(
        "authentication failed for user {username} with {mechanism}: {} (check upstream.sasl)",
        message.as_deref().unwrap_or("the broker gave no reason")
    )]
    Refused { username: String, mechanism: &'static str, message: Option<String> },
    #[error("SASL {mechanism} for user {username}: {reason}")]
    Mechanism { username: String, mechanism: &'static str, reason: String },
}

/// The client side of one SASL exchange for the gateway's own connection.
pub struct Exchange {
    session: Session,
    config: Sasl,
    done: bool,
}

impl Exchange {
    pub fn start(config: &Sasl) -> Result<Self, SaslError> {
        let fail = |reason: String| SaslError::Mechanism {
            username: config.username.clone(),
            mechanism: config.mechanism.name(),
            reason,
        };
        let credentials =
            SASLConfig::with_credentials(None, config.username.clone(), config.password.expose().to_owned())
                .map_err(|e| fail(e.to_string()))?;
        let mechanism = Mechname::parse(config.mechanism.name().as_bytes()).map_err(|e| fail(e.to_string()))?;
        let session =
            SASLClient::new(Arc::clone(&credentials)).start_suggested(&[mechanism]).map_err(|e| fail(e.to_string()))?;
        Ok(Self { session, config: config.clone(), done: false })
    }

    /// The next token to send, given the broker's last one (`None` to begin); `None` once the
    /// mechanism has nothing more to send. A server token that does not verify (a SCRAM server
    /// signature, say) is an error.
    pub fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        if self.done {
            return Ok(None);
        }
        let mut out = Output::new(Vec::new());
        let state = self.session.step(server, &mut out).map_err(|e| SaslError::Mechanism {
            username: self.config.username.clone(),
            mechanism: self.config.mechanism.name(),
            reason: e.to_string(),
        })?;
        self.done = matches!(state, State::Finished(_));
        Ok(state.has_sent_message().then(|| out.into_inner()))
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn refused(&self, message: Option<&str>) -> SaslError {
        SaslError::Refused {
            username: self.config.username.clone(),
            mechanism: self.config.mechanism.name(),
            message: message.map(str::to_owned),
        }
    }
}

/// A SaslHandshake response: its error code and the mechanisms the broker offers.
pub fn read_handshake(frame: &[u8]) -> wire::Result<(i16, Vec<&str>)> {
    // v0 and v1 share their layout; neither is flexible.
    let mut c = Cursor::after_response_header(frame, 0)?;
    let error_code = c.i16("error_code")?;
    let mut mechanisms = Vec::new();
    for _ in 0..c.array_len(false, "mechanisms")? {
        mechanisms.push(c.string(false, "mechanisms")?);
    }
    Ok((error_code, mechanisms))
}

/// A SaslAuthenticate v1 response: error code, error message and the broker's token.
pub fn read_authenticate(frame: &[u8]) -> wire::Result<(i16, Option<&str>, &[u8])> {
    let mut c = Cursor::after_response_header(frame, 0)?;
    let error_code = c.i16("error_code")?;
    let message = c.nullable_string(false, "error_message")?;
    let len = c.i32("auth_bytes")?;
    let token = c.take(usize::try_from(len).unwrap_or(0), "auth_bytes")?;
    Ok((error_code, message, token))
}

/// The client tokens that follow a SaslHandshake v0 for `mechanism`, as bare frames: PLAIN and
/// OAUTHBEARER send one (OAUTHBEARER one more after a refusal, see [`RawTokens::answered`]),
/// SCRAM two. `None` for mechanisms whose exchange a frame-level gateway cannot follow without
/// understanding it (GSSAPI's length depends on Kerberos).
pub fn raw_tokens(mechanism: &str) -> Option<RawTokens> {
    let (left, retry_on_refusal) = match mechanism {
        "PLAIN" => (1, false),
        "SCRAM-SHA-256" | "SCRAM-SHA-512" => (2, false),
        "OAUTHBEARER" => (1, true),
        _ => return None,
    };
    Some(RawTokens { left, retry_on_refusal })
}

/// The bare tokens a client still has to send after SaslHandshake v0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTokens {
    left: u8,
    /// OAUTHBEARER: a refused token is answered with an error, which the client acknowledges with
    /// one more (a single 0x01) before the broker closes.
    retry_on_refusal: bool,
}

impl RawTokens {
    pub fn left(&self) -> u8 {
        self.left
    }

    /// The client sent one.
    pub fn sent(&mut self) {
        self.left = self.left.saturating_sub(1);
    }

    /// The broker answered a token with `len` bytes.
    pub fn answered(&mut self, len: usize) {
        if self.retry_on_refusal && len > 0 {
            self.retry_on_refusal = false;
            self.left += 1;
        }
    }
}

/// The mechanism a SaslHandshake request names: its body's only field, after the request header
/// v1 (`frame` is the whole request, size prefix included).
pub fn handshake_mechanism(frame: &[u8]) -> wire::Result<&str> {
    let mut c = Cursor::at(frame, SIZE_LEN);
    c.skip(2 + 2 + 4, "request header")?;
    c.skip_string("client_id")?;
    c.string(false, "mechanism")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mechanism, Secret};

    fn config(mechanism: Mechanism) -> Sasl {
        Sasl { mechanism, username: "gateway".into(), password: Secret::new("pencil".into()) }
    }

    #[test]
    fn plain_sends_one_token_and_never_shows_the_password_in_errors() {
        let mut exchange = Exchange::start(&config(Mechanism::Plain)).unwrap();
        assert_eq!(exchange.step(None).unwrap().unwrap(), b"\0gateway\0pencil");
        assert!(exchange.is_done());
        let refused = exchange.refused(Some("Authentication failed: Invalid username or password"));
        assert!(!refused.to_string().contains("pencil"), "{refused}");
        assert!(!format!("{:?}", config(Mechanism::Plain)).contains("pencil"));
    }

    #[test]
    fn scram_checks_the_server_signature() {
        // RFC 7677's SCRAM-SHA-256 test vector for user "user", password "pencil" cannot be
        // replayed (the client nonce is random), so a server that answers with a wrong signature
        // stands in: the exchange must refuse it.
        let mut exchange = Exchange::start(&config(Mechanism::ScramSha256)).unwrap();
        let first = String::from_utf8(exchange.step(None).unwrap().unwrap()).unwrap();
        let nonce = first.split("r=").nth(1).unwrap();
        let server_first = format!("r={nonce}srv,s=QSXCR+Q6sek8bf92,i=4096");
        let client_final = exchange.step(Some(server_first.as_bytes())).unwrap().unwrap();
        assert!(client_final.starts_with(b"c=biws,r="));
        assert!(exchange.step(Some(b"v=AAAA")).is_err(), "a wrong server signature is refused");
    }

    #[test]
    fn raw_tokens_follow_the_mechanism() {
        let mut scram = raw_tokens("SCRAM-SHA-512").unwrap();
        assert_eq!(scram.left(), 2);
        scram.sent();
        scram.answered(90);
        scram.sent();
        assert_eq!(scram.left(), 0);
        let mut oauth = raw_tokens("OAUTHBEARER").unwrap();
        oauth.sent();
        oauth.answered(60); // {"status":"invalid_token"}: the client acknowledges with one more
        assert_eq!(oauth.left(), 1);
        assert!(raw_tokens("GSSAPI").is_none());
    }
}
