//! `belfry`: the command line (docs/design.md section 5).

mod audit;
mod ceremony;
mod cli;
mod common;
mod demo;
mod gateway;
mod keygen;
mod node;
mod notes;
mod rfc3161;
mod seal;
mod stamp;
mod verify;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain joined by ": ".
            eprintln!("belfry: {}", format!("{e:#}").replace('\n', " "));
            if e.downcast_ref::<common::Failed>().is_some() {
                common::EXIT_FAILED
            } else {
                common::EXIT_ERROR
            }
        }
    };
    std::process::exit(i32::from(code));
}
