// sqlx's `migrate!` embeds the migration files when the crate compiles;
// without this a migration added alone would not be built in.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
