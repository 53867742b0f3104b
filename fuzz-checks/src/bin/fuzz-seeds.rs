//! Writes the seed corpora: `fuzz-seeds <dir>` makes `<dir>/<target>/seed-<k>`
//! for every fuzz target; `fuzz-seeds --test-cluster <dir>` writes the test
//! cluster's configuration files (`fuzz-checks/data/`).

use std::path::PathBuf;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir] if flag == "--test-cluster" => {
            belfry_fuzz_checks::seeds::write_test_cluster(&PathBuf::from(dir))
        }
        [dir] => {
            for (target, inputs) in belfry_fuzz_checks::seeds::all() {
                let at = PathBuf::from(dir).join(target);
                std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
                for (k, input) in inputs.iter().enumerate() {
                    std::fs::write(at.join(format!("seed-{k:03}")), input)
                        .map_err(|e| e.to_string())?;
                }
                println!("{target}: {} seeds", inputs.len());
            }
            Ok(())
        }
        _ => Err("usage: fuzz-seeds <dir> | fuzz-seeds --test-cluster <dir>".into()),
    }
}
