//! Seeds one account with a large order history, through the desk's own
//! store code (`import_orders` of the SQLite or PostgreSQL store) while the
//! desk is stopped, then, on PostgreSQL, vacuums and analyzes it as the
//! server's autovacuum would (`Database::settle`).
//!
//! The orders look like a hosting provider's: 1,000 customer domains, each
//! order for `hostN.customerK.com` and `customerK.com`, one a minute apart
//! going back in time, mostly complete with their certificate's public
//! metadata, some failed or cancelled. Every order carries the same real CSR
//! (a P-256 request, as big as a real one); the lists never decode it.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use certdesk::domain::order::{IssuedMetadata, Order, OrderState};
use certdesk::domain::{DnsName, EmailAddress};
use certdesk::store::Cursor;
use time::OffsetDateTime;

pub const CUSTOMERS: u64 = 1000;
const BATCH: u64 = 10_000;

pub struct Seeded {
    pub orders_per_second: f64,
    pub seconds: f64,
    /// Where a page deep in the list starts: the cursor of the order
    /// 1,000 from the oldest (so, newest first, almost the whole list deep).
    pub deep_cursor: Cursor,
    /// How many seeded orders come before that page, newest first.
    pub deep_position: u64,
}

pub fn customer_domain(k: u64) -> String {
    format!("customer{k}.com")
}

/// How many of `count` seeded orders are for `customer_domain(k)`: order i
/// goes to customer i % CUSTOMERS.
pub fn orders_of_customer(k: u64, count: u64) -> u64 {
    (count + CUSTOMERS - 1 - k) / CUSTOMERS
}

pub async fn seed(
    database: &crate::database::Database,
    data: &Path,
    account_id: &str,
    user_id: &str,
    count: u64,
    csr_pem: &str,
) -> Result<Seeded> {
    let store = database.importer(data).await?;
    let admin = EmailAddress::parse("hostmaster@customer0.com")?;
    let now = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let mut deep_cursor = None;
    // i = 0 is the oldest order; newest first, order i has count - 1 - i
    // seeded orders before it.
    let deep_index = 1000.min(count / 2);
    let mut done = 0u64;
    while done < count {
        let n = BATCH.min(count - done);
        let mut batch = Vec::with_capacity(n as usize);
        for i in done..done + n {
            // Order i was placed (count - i) minutes ago: i = 0 is the oldest.
            let created = now - time::Duration::minutes((count - i) as i64);
            let k = i % CUSTOMERS;
            let host = format!("host{i}.{}", customer_domain(k));
            let names = vec![host.clone(), customer_domain(k)];
            let registrable = names
                .iter()
                .map(|n| DnsName::parse(n).ok().and_then(|d| d.registrable_domain()))
                .collect::<Vec<_>>();
            let state = match i % 50 {
                0 => OrderState::Failed,
                1 => OrderState::Cancelled,
                _ => OrderState::Issued,
            };
            let certificate = (state == OrderState::Issued).then(|| IssuedMetadata {
                serial: format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                not_before: created,
                not_after: created + time::Duration::days(90),
                sha256_fingerprint: format!("{:064x}", i as u128 * 0x2545_f491_4f6c_dd1d),
                issuer: "CN=certdesk Intermediate CA".to_string(),
            });
            let order = Order {
                id: uuid::Uuid::now_v7().to_string(),
                account_id: account_id.to_string(),
                state,
                ca: "builtin".to_string(),
                ca_reference: Some(format!("seed-{i}")),
                common_name: host,
                names,
                key_type: "ECDSA P-256".to_string(),
                days: 90,
                admin_email: admin.clone(),
                admin_name: "Hostmaster".to_string(),
                approver_email: None,
                language: "en".to_string(),
                failure_reason: (state == OrderState::Failed)
                    .then(|| "the CA refused the request".to_string()),
                certificate,
                created_by: user_id.to_string(),
                created_at: created,
                updated_at: created,
                csr_pem: csr_pem.to_string(),
            };
            if i == deep_index {
                deep_cursor = Some(Cursor {
                    created_at_ms: certdesk::store::to_ms(order.created_at),
                    id: order.id.clone(),
                });
            }
            batch.push((order, registrable));
        }
        store.import_orders(batch).await?;
        done += n;
        progress(done, count, t0);
    }
    eprintln!();
    store.close().await;
    // Counted in the seed's time: the data set is ready when it is.
    database.settle().await?;
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Seeded {
        orders_per_second: count as f64 / seconds,
        seconds,
        deep_cursor: deep_cursor.expect("count > 0"),
        deep_position: count - 1 - deep_index,
    })
}

fn progress(done: u64, total: u64, t0: Instant) {
    const WIDTH: u64 = 40;
    let filled = done * WIDTH / total;
    let rate = done as f64 / t0.elapsed().as_secs_f64();
    eprint!(
        "\r  seeding [{}{}] {done}/{total} orders, {rate:.0}/s ",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize)
    );
    let _ = std::io::stderr().flush();
}
