//! Rebuild when a migration changes: `sqlx::migrate!` embeds them, and cargo does not see
//! files a macro reads.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
