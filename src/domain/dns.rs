//! DNS names that may appear on a certificate order.
//!
//! A [`DnsName`] is always held in its lowercase ASCII (A-label) form, so two
//! spellings of the same name (`Bücher.Example`, `xn--bcher-kva.example.`)
//! compare equal and the value can go straight into a certificate.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an orderable DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    #[error("the domain name is empty")]
    Empty,
    #[error("the domain name {name} is {len} characters long; the limit is 253")]
    TooLong { name: String, len: usize },
    #[error("the domain name {name} has an empty label (a leading dot or two dots in a row)")]
    EmptyLabel { name: String },
    #[error("the label {label} in {name} is longer than 63 characters")]
    LabelTooLong { name: String, label: String },
    #[error(
        "the domain name {name} contains {character:?}, which is not allowed; \
         use letters, digits and hyphens"
    )]
    InvalidCharacter { name: String, character: char },
    #[error("the label {label} in {name} starts or ends with a hyphen")]
    HyphenAtLabelEdge { name: String, label: String },
    #[error(
        "{name} is not a fully qualified domain name; give at least two labels, e.g. example.com"
    )]
    SingleLabel { name: String },
    #[error("the top-level domain of {name} is all digits, which no real top-level domain is")]
    NumericTld { name: String },
    #[error("IP addresses are not allowed; only DNS names can be ordered (got {name})")]
    IpAddress { name: String },
    #[error(
        "the wildcard in {name} is not allowed: a wildcard must be the whole leftmost label, \
         as in *.example.com"
    )]
    BadWildcard { name: String },
    #[error(
        "{name} puts a wildcard directly on the public suffix {suffix}; \
         a wildcard must sit below a registrable domain, as in *.example.{suffix}"
    )]
    WildcardOnPublicSuffix { name: String, suffix: String },
    #[error("{name} is not a valid internationalized domain name")]
    Idna { name: String },
}

/// A validated DNS name in lowercase A-label form, optionally a wildcard
/// (`*.example.com`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);

impl DnsName {
    /// Parses and normalizes a name typed by a person or found in a CSR.
    ///
    /// Surrounding whitespace is *not* trimmed: in a CSR it is a malformed
    /// name, and silently repairing it would hide that from the customer.
    pub fn parse(input: &str) -> Result<DnsName, DnsNameError> {
        let s = input.strip_suffix('.').unwrap_or(input);
        if s.is_empty() {
            return Err(DnsNameError::Empty);
        }
        if looks_like_ip(s) {
            return Err(DnsNameError::IpAddress {
                name: input.to_owned(),
            });
        }

        // The wildcard is checked on the raw text: IDNA processing would
        // refuse '*' with a vaguer message.
        let (wildcard, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if rest.contains('*') {
            return Err(DnsNameError::BadWildcard {
                name: input.to_owned(),
            });
        }

        let ascii = to_ascii(rest, input)?;
        // Under a wildcard one label suffices (`*.com` has two labels in all
        // and is refused below for sitting on a public suffix instead).
        validate_labels(&ascii, input, if wildcard { 1 } else { 2 })?;
        if wildcard {
            // `*.com`, `*.co.uk`: a wildcard may not span a whole public suffix.
            if psl::domain_str(&ascii).is_none() {
                return Err(DnsNameError::WildcardOnPublicSuffix {
                    name: input.to_owned(),
                    suffix: ascii,
                });
            }
            let full = format!("*.{ascii}");
            if full.len() > MAX_NAME_LEN {
                return Err(DnsNameError::TooLong {
                    len: full.len(),
                    name: input.to_owned(),
                });
            }
            Ok(DnsName(full))
        } else {
            Ok(DnsName(ascii))
        }
    }

    /// The lowercase A-label form, e.g. `*.xn--bcher-kva.example`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name without its wildcard label (`*.example.com` → `example.com`).
    pub fn base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }

    /// The registrable domain (public suffix + 1 label) of the base name, or
    /// `None` when the base name is itself a public suffix.
    pub fn registrable_domain(&self) -> Option<String> {
        psl::domain_str(self.base()).map(str::to_owned)
    }

    /// The name with A-labels decoded, for display to people only.
    pub fn to_unicode(&self) -> String {
        let (unicode, result) = idna::domain_to_unicode(&self.0);
        // A stored name always decodes; fall back to the A-label form rather
        // than show replacement characters if it ever does not.
        match result {
            Ok(()) => unicode,
            Err(_) => self.0.clone(),
        }
    }
}

/// IPv4 / IPv6 literals, bracketed IPv6, and all-numeric dotted names such as
/// `10.1` that resolvers and browsers would read as an IPv4 address.
fn looks_like_ip(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() <= 4
        && labels.iter().all(|l| {
            let hex = l
                .strip_prefix("0x")
                .or_else(|| l.strip_prefix("0X"))
                .map(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
            (!l.is_empty() && l.chars().all(|c| c.is_ascii_digit())) || hex == Some(true)
        })
}

/// UTS #46 to ASCII with the STD3 rules, so only LDH ASCII survives.
fn to_ascii(s: &str, input: &str) -> Result<String, DnsNameError> {
    // Report the first plainly invalid ASCII character by name: the IDNA
    // error alone does not say which character was wrong.
    if let Some(c) = s
        .chars()
        .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(DnsNameError::InvalidCharacter {
            name: input.to_owned(),
            character: c,
        });
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(DnsNameError::InvalidCharacter {
            name: input.to_owned(),
            character: c,
        });
    }
    if s.split('.').any(str::is_empty) {
        return Err(DnsNameError::EmptyLabel {
            name: input.to_owned(),
        });
    }
    idna::domain_to_ascii_cow(s.as_bytes(), idna::AsciiDenyList::STD3)
        .map(|cow| cow.to_ascii_lowercase())
        .map_err(|_| DnsNameError::Idna {
            name: input.to_owned(),
        })
}

fn validate_labels(ascii: &str, input: &str, min_labels: usize) -> Result<(), DnsNameError> {
    if ascii.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if ascii.len() > MAX_NAME_LEN {
        return Err(DnsNameError::TooLong {
            name: input.to_owned(),
            len: ascii.len(),
        });
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel {
                name: input.to_owned(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DnsNameError::LabelTooLong {
                name: input.to_owned(),
                label: (*label).to_owned(),
            });
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(DnsNameError::InvalidCharacter {
                name: input.to_owned(),
                character: c,
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DnsNameError::HyphenAtLabelEdge {
                name: input.to_owned(),
                label: (*label).to_owned(),
            });
        }
    }
    if labels.len() < min_labels {
        return Err(DnsNameError::SingleLabel {
            name: input.to_owned(),
        });
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(DnsNameError::NumericTld {
            name: input.to_owned(),
        });
    }
    Ok(())
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DnsName {
    type Err = DnsNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DnsName::parse(s)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for DnsName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DnsName {
    // Through `parse`, so no invalid name can enter from JSON or a database row.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        DnsName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        DnsName::parse(s)
            .unwrap_or_else(|e| panic!("{s} should parse: {e}"))
            .to_string()
    }

    #[test]
    fn ordinary_names_are_lowercased_and_lose_their_trailing_dot() {
        for (input, want) in [
            ("example.com", "example.com"),
            ("WWW.Example.COM", "www.example.com"),
            ("www.example.com.", "www.example.com"),
            ("a-b.c-d.example", "a-b.c-d.example"),
            ("123.example.com", "123.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("*.example.com", "*.example.com"),
            ("*.Example.co.uk.", "*.example.co.uk"),
        ] {
            assert_eq!(ok(input), want, "{input}");
        }
    }

    #[test]
    fn unicode_names_become_a_labels_and_display_back_as_unicode() {
        let name = DnsName::parse("bücher.example").unwrap();
        assert_eq!(name.as_str(), "xn--bcher-kva.example");
        assert_eq!(name.to_unicode(), "bücher.example");
        assert_eq!(DnsName::parse("Bücher.Example.").unwrap(), name);
        let wild = DnsName::parse("*.bücher.example").unwrap();
        assert_eq!(wild.as_str(), "*.xn--bcher-kva.example");
        assert_eq!(wild.to_unicode(), "*.bücher.example");
    }

    #[test]
    fn refused_names_say_why() {
        use DnsNameError as E;
        type Check = fn(&DnsNameError) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("", |e| matches!(e, E::Empty)),
            (".", |e| matches!(e, E::Empty)),
            ("localhost", |e| matches!(e, E::SingleLabel { .. })),
            ("com", |e| matches!(e, E::SingleLabel { .. })),
            ("a..example.com", |e| matches!(e, E::EmptyLabel { .. })),
            (".example.com", |e| matches!(e, E::EmptyLabel { .. })),
            ("-a.example.com", |e| {
                matches!(e, E::HyphenAtLabelEdge { .. })
            }),
            ("a-.example.com", |e| {
                matches!(e, E::HyphenAtLabelEdge { .. })
            }),
            ("a_b.example.com", |e| {
                matches!(e, E::InvalidCharacter { character: '_', .. })
            }),
            ("a b.example.com", |e| {
                matches!(e, E::InvalidCharacter { character: ' ', .. })
            }),
            ("a\nb.example.com", |e| {
                matches!(e, E::InvalidCharacter { .. })
            }),
            (" example.com", |e| matches!(e, E::InvalidCharacter { .. })),
            ("example.123", |e| matches!(e, E::NumericTld { .. })),
            ("1.2.3.4", |e| matches!(e, E::IpAddress { .. })),
            ("10.1", |e| matches!(e, E::IpAddress { .. })),
            ("0x7f.1", |e| matches!(e, E::IpAddress { .. })),
            ("::1", |e| matches!(e, E::IpAddress { .. })),
            ("2001:db8::1", |e| matches!(e, E::IpAddress { .. })),
            ("[2001:db8::1]", |e| matches!(e, E::IpAddress { .. })),
            ("*", |e| matches!(e, E::BadWildcard { .. })),
            ("www.*.example.com", |e| matches!(e, E::BadWildcard { .. })),
            ("w*.example.com", |e| matches!(e, E::BadWildcard { .. })),
            ("*.*.example.com", |e| matches!(e, E::BadWildcard { .. })),
            ("*example.com", |e| matches!(e, E::BadWildcard { .. })),
            ("*.com", |e| matches!(e, E::WildcardOnPublicSuffix { .. })),
            ("*.co.uk", |e| matches!(e, E::WildcardOnPublicSuffix { .. })),
            ("xn--zz.example", |e| matches!(e, E::Idna { .. })),
        ];
        for (input, check) in cases {
            let err = DnsName::parse(input).expect_err(input);
            assert!(check(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn length_limits_are_253_for_the_name_and_63_for_a_label() {
        let label63 = "a".repeat(63);
        assert!(DnsName::parse(&format!("{label63}.example")).is_ok());
        let err = DnsName::parse(&format!("{}a.example", label63)).unwrap_err();
        assert!(matches!(err, DnsNameError::LabelTooLong { .. }), "{err:?}");

        // 3 × 63 + 4 dots + ... → build exactly 253 and 254 characters.
        let name253 = format!("{l}.{l}.{l}.{m}.com", l = label63, m = "a".repeat(57));
        assert_eq!(name253.len(), 253);
        assert!(DnsName::parse(&name253).is_ok());
        let name254 = format!("a{name253}");
        let err = DnsName::parse(&name254).unwrap_err();
        assert!(
            matches!(err, DnsNameError::TooLong { len: 254, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("253"));
    }

    #[test]
    fn error_messages_name_the_offending_name() {
        let err = DnsName::parse("www.*.example.com").unwrap_err();
        assert!(err.to_string().contains("www.*.example.com"), "{err}");
        let err = DnsName::parse("192.0.2.1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "IP addresses are not allowed; only DNS names can be ordered (got 192.0.2.1)"
        );
        let err = DnsName::parse("*.co.uk").unwrap_err();
        assert!(err.to_string().contains("*.co.uk"), "{err}");
    }

    #[test]
    fn wildcard_helpers_strip_the_star_label() {
        let name = DnsName::parse("*.www.example.co.uk").unwrap();
        assert!(name.is_wildcard());
        assert_eq!(name.base(), "www.example.co.uk");
        assert_eq!(name.registrable_domain().as_deref(), Some("example.co.uk"));
        let plain = DnsName::parse("example.com").unwrap();
        assert!(!plain.is_wildcard());
        assert_eq!(plain.base(), "example.com");
        assert_eq!(plain.registrable_domain().as_deref(), Some("example.com"));
        // A public suffix on its own is a valid name with no registrable domain.
        let suffix = DnsName::parse("co.uk").unwrap();
        assert_eq!(suffix.registrable_domain(), None);
    }

    #[test]
    fn serde_goes_through_parse() {
        let name = DnsName::parse("Bücher.example").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"xn--bcher-kva.example\"");
        let back: DnsName = serde_json::from_str("\"WWW.Example.com.\"").unwrap();
        assert_eq!(back.as_str(), "www.example.com");
        let err = serde_json::from_str::<DnsName>("\"*.com\"").unwrap_err();
        assert!(err.to_string().contains("public suffix"), "{err}");
    }

    #[test]
    fn names_sort_and_hash_by_their_ascii_form() {
        let mut names: Vec<DnsName> = ["b.example", "a.example", "*.a.example"]
            .iter()
            .map(|s| DnsName::parse(s).unwrap())
            .collect();
        names.sort();
        let sorted: Vec<&str> = names.iter().map(DnsName::as_str).collect();
        assert_eq!(sorted, ["*.a.example", "a.example", "b.example"]);
        let set: std::collections::HashSet<DnsName> = ["A.example", "a.example."]
            .iter()
            .map(|s| DnsName::parse(s).unwrap())
            .collect();
        assert_eq!(set.len(), 1);
    }
}
