fn main() -> std::process::ExitCode {
    certdesk::cli::main()
}
