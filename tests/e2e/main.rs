//! End-to-end tests: the real desk binary, a real SMTP server, openssl.
//! One binary for all of them (faster to build than one per file).

mod bad_input;
mod browser;
mod cert_store;
mod cli_flow;
mod confidentiality;
mod config;
mod console_browser;
mod console_certs;
mod console_http;
mod durability;
mod master_key;
mod order_flow;
mod profile;
mod support;
