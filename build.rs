// sqlx::migrate! embeds the migration files at compile time; without this,
// cargo does not rebuild when a migration is added.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations/postgres");
    println!("cargo:rerun-if-changed=src/ca/builtin/migrations");
}
