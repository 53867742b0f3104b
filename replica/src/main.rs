//! `belfry`: the command line (DESIGN.md section 5).

fn main() {
    if let Err(e) = belfry_replica::cli::run() {
        eprintln!("belfry: {e:#}");
        std::process::exit(1);
    }
}
