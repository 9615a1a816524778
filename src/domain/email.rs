//! Email addresses the desk sends mail to.
//!
//! An [`EmailAddress`] can only be built through [`EmailAddress::parse`], which
//! refuses every control character, so a value of this type can be put in a
//! mail header without any risk of header injection.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::dns::{DnsName, DnsNameError};

/// Longest local part in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest address in octets that fits an SMTP path (RFC 5321 §4.5.3.1.3).
pub const MAX_ADDRESS_LEN: usize = 254;

/// The one single-label domain accepted: the desk's first administrator is
/// `admin@localhost`.
const LOCALHOST: &str = "localhost";

/// Why a string is not a usable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address contains a line break")]
    LineBreak,
    #[error("the email address contains a control character ({character:?})")]
    ControlCharacter { character: char },
    #[error("the email address {address} is missing @")]
    MissingAt { address: String },
    #[error("the email address {address} contains more than one @")]
    MultipleAt { address: String },
    #[error("the email address {address} has nothing before the @")]
    EmptyLocalPart { address: String },
    #[error("the part before the @ in {address} is longer than 64 bytes")]
    LocalPartTooLong { address: String },
    #[error("the email address {address} is longer than 254 bytes")]
    TooLong { address: String },
    #[error(
        "the part before the @ in {address} contains {character:?}; \
         use letters, digits and !#$%&'*+-/=?^_`{{|}}~ and single dots"
    )]
    InvalidLocalCharacter { address: String, character: char },
    #[error(
        "the part before the @ in {address} starts or ends with a dot, or has two dots in a row"
    )]
    BadDots { address: String },
    #[error("the email address {address} has nothing after the @")]
    EmptyDomain { address: String },
    #[error("domain {domain} is not a valid domain name: {reason}")]
    InvalidDomain {
        domain: String,
        reason: DnsNameError,
    },
    #[error("domain {domain} is a wildcard; an email address needs a real domain")]
    WildcardDomain { domain: String },
}

/// A parsed email address: `local@domain`, with the domain in lowercase
/// A-label form. The local part keeps its case (RFC 5321 lets the receiving
/// server treat it as case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    /// `local@domain_ascii`, kept whole so `as_str` needs no allocation.
    full: String,
    at: usize,
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<EmailAddress, EmailError> {
        // Line breaks and control characters are checked on the untrimmed
        // input: a trailing "\r\n" is an injection attempt, not whitespace
        // to tidy away.
        if input.contains(['\r', '\n']) {
            return Err(EmailError::LineBreak);
        }
        if let Some(c) = input.chars().find(|c| c.is_control()) {
            return Err(EmailError::ControlCharacter { character: c });
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        let (local, domain) = match s.split_once('@') {
            None => {
                return Err(EmailError::MissingAt {
                    address: s.to_owned(),
                })
            }
            Some((_, d)) if d.contains('@') => {
                return Err(EmailError::MultipleAt {
                    address: s.to_owned(),
                })
            }
            Some(parts) => parts,
        };
        validate_local(local, s)?;
        let domain_ascii = parse_domain(domain, s)?;
        let full = format!("{local}@{domain_ascii}");
        if full.len() > MAX_ADDRESS_LEN {
            return Err(EmailError::TooLong {
                address: s.to_owned(),
            });
        }
        Ok(EmailAddress {
            at: local.len(),
            full,
        })
    }

    /// Builds an address from parts that are already known to be valid
    /// (a constant local part and a registrable domain of a [`DnsName`]).
    pub(crate) fn from_trusted_parts(local: &str, domain_ascii: &str) -> EmailAddress {
        debug_assert!(validate_local(local, local).is_ok());
        EmailAddress {
            at: local.len(),
            full: format!("{local}@{domain_ascii}"),
        }
    }

    /// `local@ascii-domain`, the form to put on the wire.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }

    /// The domain in lowercase A-label form.
    pub fn domain_ascii(&self) -> &str {
        &self.full[self.at + 1..]
    }

    /// `local@unicode-domain`, for display to people only.
    pub fn to_unicode(&self) -> String {
        let (domain, result) = idna::domain_to_unicode(self.domain_ascii());
        match result {
            Ok(()) => format!("{}@{domain}", self.local()),
            Err(_) => self.full.clone(),
        }
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        // RFC 6532 (SMTPUTF8): non-ASCII is allowed, but not non-ASCII
        // whitespace or controls, which could still confuse mail software.
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn validate_local(local: &str, address: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart {
            address: address.to_owned(),
        });
    }
    // Octets, not characters: SMTP servers enforce the limit on the wire.
    if local.len() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong {
            address: address.to_owned(),
        });
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return Err(EmailError::InvalidLocalCharacter {
            address: address.to_owned(),
            character: c,
        });
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::BadDots {
            address: address.to_owned(),
        });
    }
    Ok(())
}

fn parse_domain(domain: &str, address: &str) -> Result<String, EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain {
            address: address.to_owned(),
        });
    }
    let bare = domain.strip_suffix('.').unwrap_or(domain);
    if bare.eq_ignore_ascii_case(LOCALHOST) {
        return Ok(LOCALHOST.to_owned());
    }
    let name = DnsName::parse(domain).map_err(|reason| EmailError::InvalidDomain {
        domain: domain.to_owned(),
        reason,
    })?;
    if name.is_wildcard() {
        return Err(EmailError::WildcardDomain {
            domain: domain.to_owned(),
        });
    }
    Ok(name.as_str().to_owned())
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = EmailError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmailAddress::parse(s)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    // Through `parse`, so a stored or posted value can never smuggle a CR/LF.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_keep_the_local_part_and_normalize_the_domain() {
        for (input, want) in [
            ("admin@example.com", "admin@example.com"),
            ("  Admin@Example.COM  ", "Admin@example.com"),
            (
                "first.last+tag@sub.example.co.uk",
                "first.last+tag@sub.example.co.uk",
            ),
            ("o'brien@example.ie", "o'brien@example.ie"),
            (
                "!#$%&'*+-/=?^_`{|}~@example.com",
                "!#$%&'*+-/=?^_`{|}~@example.com",
            ),
            ("admin@localhost", "admin@localhost"),
            ("admin@LOCALHOST", "admin@localhost"),
            ("admin@example.com.", "admin@example.com"),
            ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
        ] {
            let email = EmailAddress::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(email.as_str(), want, "{input}");
        }
    }

    #[test]
    fn parts_and_unicode_display() {
        let email = EmailAddress::parse("Jörg@Bücher.example").unwrap();
        assert_eq!(email.local(), "Jörg");
        assert_eq!(email.domain_ascii(), "xn--bcher-kva.example");
        assert_eq!(email.to_unicode(), "Jörg@bücher.example");
        assert_eq!(email.to_string(), "Jörg@xn--bcher-kva.example");
    }

    #[test]
    fn line_breaks_nul_and_control_characters_are_refused() {
        for input in [
            "admin@example.com\r\nBcc: victim@example.org",
            "admin@example.com\n",
            "admin\r@example.com",
        ] {
            assert_eq!(
                EmailAddress::parse(input),
                Err(EmailError::LineBreak),
                "{input:?}"
            );
        }
        for input in [
            "admin\0@example.com",
            "admin@example.com\0",
            "ad\tmin@example.com",
            "a\u{7f}@example.com",
            "a\u{85}@example.com",
        ] {
            assert!(
                matches!(
                    EmailAddress::parse(input),
                    Err(EmailError::ControlCharacter { .. })
                ),
                "{input:?}"
            );
        }
        assert_eq!(
            EmailError::LineBreak.to_string(),
            "the email address contains a line break"
        );
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        use EmailError as E;
        type Check = fn(&EmailError) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("", |e| matches!(e, E::Empty)),
            ("   ", |e| matches!(e, E::Empty)),
            ("admin.example.com", |e| matches!(e, E::MissingAt { .. })),
            ("a@b@example.com", |e| matches!(e, E::MultipleAt { .. })),
            ("@example.com", |e| matches!(e, E::EmptyLocalPart { .. })),
            ("admin@", |e| matches!(e, E::EmptyDomain { .. })),
            (".admin@example.com", |e| matches!(e, E::BadDots { .. })),
            ("admin.@example.com", |e| matches!(e, E::BadDots { .. })),
            ("ad..min@example.com", |e| matches!(e, E::BadDots { .. })),
            ("ad min@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { character: ' ', .. })
            }),
            ("\"admin\"@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { character: '"', .. })
            }),
            ("a(b)@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("a,b@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("a:b@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("a;b@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("<a>@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("a[b]@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("a\\b@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("a\u{a0}b@example.com", |e| {
                matches!(e, E::InvalidLocalCharacter { .. })
            }),
            ("admin@example", |e| matches!(e, E::InvalidDomain { .. })),
            ("admin@exa_mple.com", |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("admin@[192.0.2.1]", |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("admin@192.0.2.1", |e| matches!(e, E::InvalidDomain { .. })),
            ("admin@*.example.com", |e| {
                matches!(e, E::WildcardDomain { .. })
            }),
        ];
        for (input, check) in cases {
            let err = EmailAddress::parse(input).expect_err(input);
            assert!(check(&err), "{input:?} gave {err:?}");
        }
        let err = EmailAddress::parse("admin@exa_mple.com").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("domain exa_mple.com is not a valid domain name"),
            "{err}"
        );
        assert!(EmailAddress::parse("no-at-sign")
            .unwrap_err()
            .to_string()
            .contains("missing @"));
    }

    #[test]
    fn length_limits_are_64_before_the_at_and_254_in_all() {
        let local64 = "a".repeat(64);
        assert!(EmailAddress::parse(&format!("{local64}@example.com")).is_ok());
        assert!(matches!(
            EmailAddress::parse(&format!("a{local64}@example.com")),
            Err(EmailError::LocalPartTooLong { .. })
        ));
        // 64 + 1 + 190 = 255 bytes with a valid domain.
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(58)
        );
        assert_eq!(domain.len(), 190);
        assert!(matches!(
            EmailAddress::parse(&format!("{local64}@{domain}")),
            Err(EmailError::TooLong { .. })
        ));
    }

    #[test]
    fn serde_goes_through_parse() {
        let email = EmailAddress::parse("admin@Example.com").unwrap();
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            "\"admin@example.com\""
        );
        let back: EmailAddress = serde_json::from_str("\"admin@example.com\"").unwrap();
        assert_eq!(back, email);
        let err =
            serde_json::from_str::<EmailAddress>("\"a@example.com\\r\\nBcc: x@y.z\"").unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
    }
}
