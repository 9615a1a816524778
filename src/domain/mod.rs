//! Types and rules of the desk, free of I/O.

pub mod account;
pub mod approver;
pub mod dns;
pub mod email;
pub mod order;

pub use approver::{
    approver_addresses, approver_addresses_for_names, is_allowed_approver, ApproverError,
    APPROVER_LOCAL_PARTS,
};
pub use dns::{DnsName, DnsNameError};
pub use email::{EmailAddress, EmailError};
