// The migrations are embedded in the binary (`embed_migrations!`); a new or changed migration
// must rebuild it, which cargo does not notice by itself for a new directory.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
