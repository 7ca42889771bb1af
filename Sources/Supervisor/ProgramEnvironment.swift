/// What of the supervisor's own environment a program it runs gets: least privilege.
///
/// A program gets the environment it can need and no other program's secrets:
/// - the system's basics (`PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_*`, `TZ`, `TMPDIR`,
///   `LD_LIBRARY_PATH`, `SSL_CERT_FILE`, `SSL_CERT_DIR`), libpq's `PG*` and the `AWS_*` settings
///   every worker may need for the broker, the object store and staging;
/// - every `EXCHANGER_*` setting except the secrets below;
/// - each secret only for the executables that use it (by the command's file name):
///
/// | secret | executables |
/// |---|---|
/// | `EXCHANGER_API_TOKENS`, `…_FILE` (the API's accepted tokens) | `exchanger-orchestrator` |
/// | `EXCHANGER_API_TOKEN`, `…_FILE` (a client's token) | none of the supervised programs |
/// | `EXCHANGER_SUPERVISOR_CONTROL_TOKEN`, `…_FILE` (`exchanger ctl`'s token) | none of the supervised programs |
/// | `EXCHANGER_NUTRIENT_API_TOKEN`, `…_FILE` | `exchanger-pre-uploader`, `exchanger-uploader`, `exchanger-re-ocr` |
/// | `EXCHANGER_CASE_DATABASE_URL`, `…_FILE` | `exchanger-orchestrator`, `exchanger-status-update`, `exchanger-search-text` |
///
/// Anything else of the supervisor's environment (another application's variables) is not
/// passed. `EXCHANGER_SUPERVISOR_PASS_ENV` (comma-separated names) passes more names to every
/// program, and a program's own `environment =` line in supervisor.conf always applies.
public struct ProgramEnvironment: Sendable, Hashable {
    /// Names passed to every program.
    static let basics: Set<String> = [
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    ]
    /// Prefixes passed to every program.
    static let prefixes = ["LC_", "PG", "AWS_"]
    /// Secret settings → the executables that may see them.
    static let secrets: [String: Set<String>] = {
        let orchestrator: Set<String> = ["exchanger-orchestrator"]
        let engine: Set<String> = ["exchanger-pre-uploader", "exchanger-uploader", "exchanger-re-ocr"]
        let caseDatabases: Set<String> = ["exchanger-orchestrator", "exchanger-status-update", "exchanger-search-text"]
        return [
            "EXCHANGER_API_TOKENS": orchestrator, "EXCHANGER_API_TOKENS_FILE": orchestrator,
            "EXCHANGER_API_TOKEN": [], "EXCHANGER_API_TOKEN_FILE": [],
            "EXCHANGER_SUPERVISOR_CONTROL_TOKEN": [], "EXCHANGER_SUPERVISOR_CONTROL_TOKEN_FILE": [],
            "EXCHANGER_NUTRIENT_API_TOKEN": engine, "EXCHANGER_NUTRIENT_API_TOKEN_FILE": engine,
            "EXCHANGER_CASE_DATABASE_URL": caseDatabases, "EXCHANGER_CASE_DATABASE_URL_FILE": caseDatabases,
        ]
    }()

    /// Extra names passed to every program (`EXCHANGER_SUPERVISOR_PASS_ENV`).
    public var passed: Set<String>

    /// The policy with the extra names of `environment`'s `EXCHANGER_SUPERVISOR_PASS_ENV`.
    public init(environment: [String: String]) {
        passed = Set((environment["EXCHANGER_SUPERVISOR_PASS_ENV"] ?? "").split(separator: ",").map {
            String($0).trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty })
    }

    /// The part of `environment` the program whose command starts with `executable` (a name or a
    /// path) gets.
    public func filter(_ environment: [String: String], executable: String) -> [String: String] {
        let name = executable.split(separator: "/").last.map(String.init) ?? executable
        return environment.filter { key, _ in allows(key, executable: name) }
    }

    func allows(_ key: String, executable: String) -> Bool {
        if passed.contains(key) { return true }
        if let allowed = Self.secrets[key] { return allowed.contains(executable) }
        return Self.basics.contains(key) || key.hasPrefix("EXCHANGER_") || Self.prefixes.contains { key.hasPrefix($0) }
    }
}
