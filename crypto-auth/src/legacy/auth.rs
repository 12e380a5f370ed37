//! A node's CryptoAuth context: its permanent key pair and the users (passwords) it accepts.
//!
//! Every configured password is findable by two lookup keys: the type-1 key derived from the
//! password and the type-2 key derived from its login (a user without a login gets the
//! synthetic login `Anon #<n>`, n = number of users before it, as cjdns does). The secret that
//! enters the key derivation is SHA-256(password) either way. Each user also carries its Noise
//! credentials (PSK and CjdnsPsk lookup, derived with the login as configured or "").

use super::crypto::sha256;
use super::header::{AuthChallenge, AuthType};
use crate::error::AddUserError;
use crate::keys::{Address, PrivateKey, PublicKey};

/// One authorized password.
#[derive(Clone)]
pub struct User {
    login: Vec<u8>,
    secret: [u8; 32],
    password_key: [u8; 8],
    login_key: [u8; 8],
    noise: crate::noise::Credentials,
    restricted_to: Option<Address>,
}

impl User {
    /// The login (or the synthetic `Anon #n`).
    pub fn login(&self) -> &[u8] {
        &self.login
    }
    /// The peer address this user is restricted to, if any.
    pub fn restricted_to(&self) -> Option<Address> {
        self.restricted_to
    }
    /// The Noise (CjdnsPsk) credentials of this user: login as configured, or "" without one.
    pub fn noise(&self) -> &crate::noise::Credentials {
        &self.noise
    }
    /// SHA-256(password), the secret mixed into the handshake key.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("login", &String::from_utf8_lossy(&self.login))
            .field("restricted_to", &self.restricted_to)
            .finish_non_exhaustive()
    }
}

/// A node's identity and authorized users, shared by all its legacy sessions.
#[derive(Clone)]
pub struct CryptoAuth {
    private_key: PrivateKey,
    public_key: PublicKey,
    users: Vec<User>,
}

impl std::fmt::Debug for CryptoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoAuth")
            .field("public_key", &self.public_key)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

impl CryptoAuth {
    /// A context for the node with this permanent private key and no users.
    pub fn new(private_key: PrivateKey) -> Self {
        let public_key = private_key.public_key();
        Self {
            private_key,
            public_key,
            users: Vec::new(),
        }
    }

    /// Our permanent public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Our permanent private key.
    pub(crate) fn private_key(&self) -> &PrivateKey {
        &self.private_key
    }

    /// Authorize `password`, optionally under `login`, optionally only for the peer whose key
    /// hashes to `restricted_to`.
    pub fn add_user(
        &mut self,
        password: &[u8],
        login: Option<&[u8]>,
        restricted_to: Option<Address>,
    ) -> Result<(), AddUserError> {
        if password.is_empty() {
            return Err(AddUserError::EmptyPassword);
        }
        let login_bytes = match login {
            Some(l) => l.to_vec(),
            None => format!("Anon #{}", self.users.len()).into_bytes(),
        };
        let secret = sha256(password);
        if let Some(l) = login {
            if self
                .users
                .iter()
                .any(|u| u.secret != secret && u.login == l)
            {
                return Err(AddUserError::DuplicateLogin(
                    String::from_utf8_lossy(l).into_owned(),
                ));
            }
        }
        let password_key = AuthChallenge::for_password(password, None).key();
        let login_key = AuthChallenge::for_password(password, Some(&login_bytes)).key();
        let noise = crate::noise::Credentials::derive(login.unwrap_or_default(), password);
        self.users.push(User {
            login: login_bytes,
            secret,
            password_key,
            login_key,
            noise,
            restricted_to,
        });
        Ok(())
    }

    /// Remove the users with this login, or all users; returns how many were removed.
    pub fn remove_users(&mut self, login: Option<&[u8]>) -> usize {
        let before = self.users.len();
        self.users
            .retain(|u| login.is_some_and(|l| l != u.login.as_slice()));
        before - self.users.len()
    }

    /// The configured users.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The user a Noise CjdnsPsk lookup (`03 ‖ 7 bytes`) names, if any.
    pub fn find_noise_user(&self, lookup: &[u8; 8]) -> Option<&User> {
        self.users.iter().find(|u| u.noise.lookup() == lookup)
    }

    /// The user an incoming challenge names, if any (types 1 and 2 only).
    pub fn find_user(&self, auth: &AuthChallenge) -> Option<&User> {
        let key = auth.key();
        match auth.auth_type {
            AuthType::Password => self.users.iter().find(|u| u.password_key == key),
            AuthType::Login => self.users.iter().find(|u| u.login_key == key),
            AuthType::None | AuthType::Unknown(_) => None,
        }
    }
}
