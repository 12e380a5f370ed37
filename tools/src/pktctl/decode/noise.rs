//! Opening Noise links (pktmesh's Noise IK sessions, `FFFFFFFF` + type in the first bytes) as an
//! observer: the initiation with the responder's static key, the response with the initiator's
//! ephemeral secret from the scenario (forward secrecy), then every data packet both ways.
//! The reference decoding of stock cjdns captures has no Noise (22.3 builds it out), so these
//! fields are pktmesh's own: `outer.type` is `NOISE_INITIATION`, `NOISE_RESPONSE`,
//! `NOISE_COOKIE` or `NOISE_DATA`, and an empty data packet is `"keepalive": true`.

use std::collections::HashMap;
use std::time::Instant;

use pktmesh_crypto_auth::noise::{ObservedInitiation, Transport};
use serde_json::Value;

use super::cryptoauth::Obj;
use super::scenario::Keys;

/// What the observer knows of one Noise link.
#[derive(Debug, Default)]
struct Link {
    initiation: Option<ObservedInitiation>,
    /// The keys as the initiator holds them (opens the responder's packets).
    initiator_view: Option<Transport>,
    /// The keys as the responder holds them (opens the initiator's packets).
    responder_view: Option<Transport>,
}

/// The Noise links of a capture, by (initiator address, responder address).
#[derive(Debug)]
pub(super) struct NoiseLinks {
    links: HashMap<(String, String), Link>,
    /// One instant for the whole capture (keys are checked for age against it).
    now: Instant,
}

impl Default for NoiseLinks {
    fn default() -> Self {
        Self {
            links: HashMap::new(),
            now: Instant::now(),
        }
    }
}

fn error(d: &mut Obj, e: impl std::fmt::Display) {
    d.insert("error".into(), Value::from(e.to_string()));
}

impl NoiseLinks {
    /// A Noise handshake packet (`FFFFFFFF`, then its type byte) from `src` to `dst`.
    pub(super) fn handshake(
        &mut self,
        keys: &Keys,
        (src, sender): (&str, &str),
        (dst, receiver): (&str, &str),
        payload: &[u8],
    ) -> Obj {
        let mut d = Obj::new();
        let kind = payload.get(4).copied().unwrap_or(0);
        let name = match kind {
            1 => "NOISE_INITIATION",
            2 => "NOISE_RESPONSE",
            3 => "NOISE_COOKIE",
            _ => "NOISE_UNKNOWN",
        };
        d.insert("type".into(), name.into());
        d.insert("len".into(), payload.len().into());
        let (Some(sender), Some(receiver)) = (keys.node(sender), keys.node(receiver)) else {
            error(&mut d, "unknown endpoint");
            return d;
        };
        match kind {
            1 => match ObservedInitiation::open(&keys.cryptoauth_of(receiver), payload) {
                Ok(obs) => {
                    self.links.insert(
                        (src.to_owned(), dst.to_owned()),
                        Link {
                            initiation: Some(obs),
                            ..Link::default()
                        },
                    );
                }
                Err(e) => error(&mut d, format!("noise initiation: {e}")),
            },
            2 => {
                let Some((link, obs)) = self
                    .links
                    .get_mut(&(dst.to_owned(), src.to_owned()))
                    .and_then(|l| l.initiation.clone().map(|o| (l, o)))
                else {
                    error(&mut d, "noise response without an initiation");
                    return d;
                };
                let Some(secret) = keys.temp_secret(&obs.ephemeral_public) else {
                    error(&mut d, "no data key (ephemeral private key not recovered)");
                    return d;
                };
                let psk = obs
                    .additional
                    .psk_lookup
                    .and_then(|l| {
                        keys.cryptoauth_of(sender)
                            .find_noise_user(&l)
                            .map(|u| *u.noise().psk())
                    })
                    .unwrap_or([0; 32]);
                let Some(sent) = obs.with_ephemeral(&secret, &psk) else {
                    error(&mut d, "ephemeral secret does not match");
                    return d;
                };
                match sent.complete(&keys.cryptoauth_of(receiver), self.now, payload) {
                    Ok(t) => {
                        link.responder_view = Some(t.mirrored());
                        link.initiator_view = Some(t);
                    }
                    Err(e) => error(&mut d, format!("noise response: {e}")),
                }
            }
            // A cookie reply carries no session data.
            _ => {}
        }
        d
    }

    /// A data packet on a Noise link this observer has keys for, if it is one: the outer
    /// fields and the plaintext (empty for a keepalive).
    pub(super) fn data(
        &mut self,
        src: &str,
        dst: &str,
        payload: &[u8],
    ) -> Option<(Obj, Option<Vec<u8>>)> {
        let now = self.now;
        let (link, from_initiator) = match self.links.get_mut(&(src.to_owned(), dst.to_owned())) {
            Some(l) => (l, true),
            None => (
                self.links.get_mut(&(dst.to_owned(), src.to_owned()))?,
                false,
            ),
        };
        let view = if from_initiator {
            link.responder_view.as_mut()?
        } else {
            link.initiator_view.as_mut()?
        };
        if !view.accepts_index(payload) {
            return None;
        }
        let mut d = Obj::new();
        d.insert("type".into(), "NOISE_DATA".into());
        d.insert("len".into(), payload.len().into());
        let mut p = payload.to_vec();
        match view.decrypt(now, &mut p) {
            Ok(body) => {
                if body.is_empty() {
                    d.insert("keepalive".into(), true.into());
                }
                Some((d, Some(body.to_vec())))
            }
            Err(e) => {
                error(&mut d, format!("noise data: {e}"));
                Some((d, None))
            }
        }
    }
}
