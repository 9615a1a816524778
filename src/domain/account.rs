//! Accounts, users and what each role may do.

use serde::{Deserialize, Serialize};

use super::EmailAddress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in the account, including its users.
    Admin,
    /// Orders, resends and cancels.
    Member,
    /// Reads only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Placing, cancelling and asking for emails change things at the CA.
    pub fn can_order(self) -> bool {
        matches!(self, Role::Admin | Role::Member)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub account_id: String,
    pub email: EmailAddress,
    pub role: Role,
}

/// Who is asking: every service call carries one, and every query is scoped
/// by its account.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: String,
    pub account_id: String,
    pub email: EmailAddress,
    pub role: Role,
}

impl From<User> for Actor {
    fn from(u: User) -> Actor {
        Actor {
            user_id: u.id,
            account_id: u.account_id,
            email: u.email,
            role: u.role,
        }
    }
}
