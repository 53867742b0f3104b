//! `belfry`: the command line (DESIGN.md section 5).

mod cli;
mod demo;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("belfry: {e:#}");
        std::process::exit(1);
    }
}
