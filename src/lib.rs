//! certdesk: a self-hosted SSL/TLS certificate order desk.
//!
//! Parts (see DESIGN.md): `domain` and `pki` are pure; `store` persists;
//! `ca` holds the certificate authorities; `mail` builds and sends messages;
//! `service` holds the use cases; `worker` runs queued jobs; `http` and
//! `cli` are the two fronts.

pub mod ca;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod i18n;
pub mod mail;
pub mod pki;
pub mod server;
pub mod service;
pub mod store;
pub mod worker;
