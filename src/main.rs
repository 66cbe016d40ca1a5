//! The `p2psip` command: see `p2psip --help` and README.md.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    p2psip::cli::main()
}
