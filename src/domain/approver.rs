//! Approver addresses for domain validation by constructed email
//! (CA/Browser Forum Baseline Requirements 3.2.2.4.4).

use super::dns::DnsName;
use super::email::EmailAddress;

/// The local parts the Baseline Requirements allow, in the order offered to
/// people.
pub const APPROVER_LOCAL_PARTS: [&str; 5] = [
    "admin",
    "administrator",
    "webmaster",
    "hostmaster",
    "postmaster",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproverError {
    #[error(
        "{name} is a public suffix, so it has no domain owner to approve by email; \
         order a name below it, such as example.{name}"
    )]
    PublicSuffix { name: String },
}

/// The five constructed addresses at the registrable domain of `name`
/// (`www.example.co.uk` → `admin@example.co.uk`, …), wildcard ignored.
pub fn approver_addresses(name: &DnsName) -> Result<Vec<EmailAddress>, ApproverError> {
    let domain = name
        .registrable_domain()
        .ok_or_else(|| ApproverError::PublicSuffix {
            name: name.base().to_owned(),
        })?;
    Ok(addresses_at(&domain))
}

fn addresses_at(domain: &str) -> Vec<EmailAddress> {
    // The domain comes from a validated DnsName and the local parts are
    // constants, so there is nothing left to check.
    APPROVER_LOCAL_PARTS
        .iter()
        .map(|local| EmailAddress::from_trusted_parts(local, domain))
        .collect()
}

/// The approver addresses for every registrable domain on a request, one
/// entry per registrable domain, in the order the names first mention them.
/// Names that are public suffixes have no approver and are left out.
pub fn approver_addresses_for_names(names: &[DnsName]) -> Vec<(String, Vec<EmailAddress>)> {
    let mut out: Vec<(String, Vec<EmailAddress>)> = Vec::new();
    for domain in names.iter().filter_map(DnsName::registrable_domain) {
        if !out.iter().any(|(seen, _)| *seen == domain) {
            let addresses = addresses_at(&domain);
            out.push((domain, addresses));
        }
    }
    out
}

/// Whether `email` may approve the whole request: it must be a constructed
/// address of the one registrable domain that every name belongs to. A
/// request spanning two registrable domains has no single such address.
///
/// The local part is compared without regard to ASCII case: mail systems
/// deliver `Admin@` and `admin@` to the same role mailbox, and people type
/// either.
pub fn is_allowed_approver(names: &[DnsName], email: &EmailAddress) -> bool {
    let Some(first) = names.first().and_then(DnsName::registrable_domain) else {
        return false;
    };
    let same_domain = names
        .iter()
        .all(|n| n.registrable_domain().as_deref() == Some(first.as_str()));
    same_domain
        && email.domain_ascii() == first
        && APPROVER_LOCAL_PARTS
            .iter()
            .any(|local| email.local().eq_ignore_ascii_case(local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<DnsName> {
        list.iter().map(|s| DnsName::parse(s).unwrap()).collect()
    }

    fn email(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn approvers_for_a_name_under_co_uk_are_at_its_registrable_domain() {
        let got = approver_addresses(&DnsName::parse("www.example.co.uk").unwrap()).unwrap();
        let got: Vec<&str> = got.iter().map(EmailAddress::as_str).collect();
        assert_eq!(
            got,
            [
                "admin@example.co.uk",
                "administrator@example.co.uk",
                "webmaster@example.co.uk",
                "hostmaster@example.co.uk",
                "postmaster@example.co.uk",
            ]
        );
    }

    #[test]
    fn wildcard_and_idn_names_use_the_base_a_label_domain() {
        let got = approver_addresses(&DnsName::parse("*.shop.bücher.example").unwrap()).unwrap();
        assert_eq!(got[0].as_str(), "admin@xn--bcher-kva.example");
        assert_eq!(got[0].to_unicode(), "admin@bücher.example");
    }

    #[test]
    fn a_public_suffix_has_no_approver() {
        let err = approver_addresses(&DnsName::parse("co.uk").unwrap()).unwrap_err();
        assert_eq!(
            err,
            ApproverError::PublicSuffix {
                name: "co.uk".into()
            }
        );
        assert!(err.to_string().contains("co.uk is a public suffix"));
    }

    #[test]
    fn approvers_for_several_names_are_grouped_by_registrable_domain_in_first_seen_order() {
        let got = approver_addresses_for_names(&names(&[
            "www.example.org",
            "example.com",
            "*.example.org",
            "co.uk",
            "mail.example.com",
        ]));
        let domains: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(domains, ["example.org", "example.com"]);
        assert_eq!(got[1].1[4].as_str(), "postmaster@example.com");
    }

    #[test]
    fn an_approver_must_cover_every_name_on_the_request() {
        let one_domain = names(&["example.com", "www.example.com", "*.shop.example.com"]);
        assert!(is_allowed_approver(
            &one_domain,
            &email("admin@example.com")
        ));
        assert!(is_allowed_approver(
            &one_domain,
            &email("Hostmaster@Example.com")
        ));
        assert!(!is_allowed_approver(
            &one_domain,
            &email("root@example.com")
        ));
        assert!(!is_allowed_approver(
            &one_domain,
            &email("admin@www.example.com")
        ));
        assert!(!is_allowed_approver(
            &one_domain,
            &email("admin@example.org")
        ));

        let two_domains = names(&["example.com", "example.org"]);
        assert!(!is_allowed_approver(
            &two_domains,
            &email("admin@example.com")
        ));
        assert!(!is_allowed_approver(
            &two_domains,
            &email("admin@example.org")
        ));

        assert!(!is_allowed_approver(&[], &email("admin@example.com")));
        assert!(!is_allowed_approver(
            &names(&["co.uk"]),
            &email("admin@co.uk")
        ));
    }
}
