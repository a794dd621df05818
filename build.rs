// The migrations and the rules are embedded in the binary; a new or changed one must rebuild it,
// which cargo does not notice by itself for a new file or directory.
//
// `sql/rules/*.sql` become `$OUT_DIR/rules.rs`: the list `store::rules::RULES`, in file name
// order, each file's text included. Adding a rule is adding its file.
use std::fmt::Write;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=sql/rules");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("sql/rules is readable")
        .map(|entry| entry.expect("sql/rules is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let mut list = String::from("&[\n");
    for path in files {
        let name = path
            .file_name()
            .unwrap()
            .to_str()
            .expect("rule file names are UTF-8");
        writeln!(
            list,
            "    Rule {{ name: {name:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        )
        .unwrap();
    }
    list.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("rules.rs");
    std::fs::write(out, list).expect("OUT_DIR is writable");
}
