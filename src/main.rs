use clap::Parser;

fn main() {
    let cli = eraengine::cli::Cli::parse();
    if let Err(e) = eraengine::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
