fn main() -> std::process::ExitCode {
    revokd::cli::main()
}
