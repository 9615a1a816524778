//! The console's pages: askama templates and the values they show.

use askama::Template;

use crate::i18n::{self, Lang};

/// What every page needs: language, the signed-in user, the CSRF token.
pub struct Chrome {
    pub lang: Lang,
    pub user_email: Option<String>,
    pub csrf: String,
    /// The page's path and query, to come back to after switching language.
    pub path: String,
    pub can_order: bool,
}

impl Chrome {
    pub fn t(&self, id: &str) -> String {
        i18n::t(self.lang, id)
    }

    pub fn languages(&self) -> Vec<(&'static str, &'static str)> {
        Lang::ALL.iter().map(|l| (l.as_str(), l.label())).collect()
    }

    pub fn back_param(&self) -> String {
        url::form_urlencoded::byte_serialize(self.path.as_bytes()).collect()
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub c: Chrome,
    pub title: String,
    pub email: String,
    pub error: Option<String>,
    pub next: String,
    pub login_csrf: String,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub c: Chrome,
    pub title: String,
    pub message: String,
}

pub struct OrderRow {
    pub id: String,
    pub common_name: String,
    pub other_names: String,
    pub state: String,
    pub status_label: String,
    pub ca_name: String,
    pub created: String,
    pub expires: Option<String>,
    pub can_send: bool,
    pub recipient: String,
    pub email_state: Option<String>,
    pub email_class: String,
}

#[derive(Template)]
#[template(path = "console/orders.html")]
pub struct OrdersPage {
    pub c: Chrome,
    pub title: String,
    pub rows: Vec<OrderRow>,
    pub statuses: Vec<(String, String)>,
    pub status: String,
    pub domain: String,
    pub sort: String,
    pub filtered: bool,
    pub next_url: Option<String>,
    pub first_url: Option<String>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub struct CertView {
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub fingerprint: String,
    pub issuer: String,
}

pub struct OrderView {
    pub id: String,
    pub common_name: String,
    pub names: String,
    pub state: String,
    pub status_label: String,
    pub ca_name: String,
    pub key_type: String,
    pub days: u32,
    pub admin_name: String,
    pub admin_email: String,
    pub approver_email: Option<String>,
    pub language: String,
    pub created: String,
    pub failure: Option<String>,
    pub cert: Option<CertView>,
}

pub struct RequestRow {
    pub kind: String,
    pub recipient: String,
    pub state: String,
    pub class: String,
    pub error: Option<String>,
    pub when: String,
}

#[derive(Template)]
#[template(path = "console/order.html")]
pub struct OrderPage {
    pub c: Chrome,
    pub title: String,
    pub o: OrderView,
    pub requests: Vec<RequestRow>,
    pub can_send: bool,
    pub can_resend_approval: bool,
    pub can_cancel: bool,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/resend.html")]
pub struct ResendPage {
    pub c: Chrome,
    pub title: String,
    pub order_id: String,
    pub common_name: String,
    pub recipient: String,
    pub ca_name: String,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct OrderForm {
    pub csr: String,
    pub ca: String,
    pub days: String,
    pub approver_email: String,
    pub admin_name: String,
    pub admin_email: String,
    pub language: String,
}

/// A message next to each field that has a problem.
#[derive(Default)]
pub struct FieldErrors {
    pub csr: Option<String>,
    pub ca: Option<String>,
    pub days: Option<String>,
    pub approver_email: Option<String>,
    pub admin_name: Option<String>,
    pub admin_email: Option<String>,
}

impl FieldErrors {
    /// Puts `message` on `field`; false when the form has no such field.
    pub fn set(&mut self, field: &str, message: String) -> bool {
        let slot = match field {
            "csr" => &mut self.csr,
            "ca" => &mut self.ca,
            "days" => &mut self.days,
            "approver_email" => &mut self.approver_email,
            "admin_name" => &mut self.admin_name,
            "admin_email" => &mut self.admin_email,
            _ => return false,
        };
        *slot = Some(message);
        true
    }
}

#[derive(Template)]
#[template(path = "console/new_order.html")]
pub struct NewOrderPage {
    pub c: Chrome,
    pub title: String,
    pub form: OrderForm,
    pub errors: FieldErrors,
    pub error: Option<String>,
    /// The decoded CSR, rendered by [`CsrSummary`].
    pub decoded: Option<String>,
    pub approvers: Vec<String>,
    pub cas: Vec<(String, String)>,
    pub max_days: u32,
}

#[derive(Template)]
#[template(path = "console/csr_summary.html")]
pub struct CsrSummary {
    pub t_names: String,
    pub t_key: String,
    pub t_subject: String,
    pub names: String,
    pub key_type: String,
    pub subject: String,
}

impl Chrome {
    pub fn t_days(&self, days: &i32) -> String {
        i18n::t_count(self.lang, "certs-within-days", *days as i64, &[])
    }
}

pub struct CertRow {
    pub id: String,
    pub common_name: String,
    pub other_names: String,
    pub issuer: String,
    pub expires: String,
    pub days_left: String,
    pub expiry_class: String,
    pub key_type: String,
    pub notes: String,
}

#[derive(Template)]
#[template(path = "console/certificates.html")]
pub struct CertificatesPage {
    pub c: Chrome,
    pub title: String,
    pub rows: Vec<CertRow>,
    pub name: String,
    pub expiring: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub next_url: Option<String>,
    pub first_url: Option<String>,
}

pub struct CertDetail {
    pub id: String,
    pub common_name: String,
    pub names: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: String,
    pub expiry_class: String,
    pub key_type: String,
    pub fingerprint: String,
    pub notes: String,
    pub chain: Vec<String>,
    pub warnings: Vec<String>,
}

/// The PKCS#12 download form: a message next to each field that has a problem.
#[derive(Default)]
pub struct Pkcs12Errors {
    pub password: Option<String>,
    pub export_password: Option<String>,
    pub export_password_confirm: Option<String>,
}

#[derive(Template)]
#[template(path = "console/certificate.html")]
pub struct CertificatePage {
    pub c: Chrome,
    pub title: String,
    pub v: CertDetail,
    pub p12: Pkcs12Errors,
    pub export_hint: String,
    pub export_min_chars: usize,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub struct ImportField {
    pub name: &'static str,
    pub label: String,
    pub hint: String,
    pub value: String,
    pub error: Option<String>,
}

/// The certificate, key and chain fields shared by the import and replace
/// forms (console/bundle_fields.html).
pub struct BundleForm {
    pub fields: Vec<ImportField>,
    pub key_password_error: Option<String>,
    pub pkcs12_error: Option<String>,
    pub allow_expired: bool,
}

#[derive(Template)]
#[template(path = "console/import.html")]
pub struct ImportPage {
    pub c: Chrome,
    pub title: String,
    pub form: BundleForm,
    pub notes: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/replace.html")]
pub struct ReplacePage {
    pub c: Chrome,
    pub title: String,
    pub id: String,
    pub common_name: String,
    pub not_after: String,
    pub key_type: String,
    pub form: BundleForm,
    pub error: Option<String>,
}
