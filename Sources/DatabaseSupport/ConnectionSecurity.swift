/// Whether a PostgreSQL connection URL protects what travels over the network.
///
/// A connection to another host carries the password and the case data in the clear unless TLS
/// is required: `sslmode=require` encrypts, `verify-ca` and `verify-full` also check the server
/// (`verify-full` with `sslrootcert=` is the production setting). Loopback addresses and Unix
/// sockets never leave the machine.
public enum ConnectionSecurity {
    /// The `sslmode` values that require TLS.
    public static let encryptingModes: Set<String> = ["require", "verify-ca", "verify-full"]

    /// A warning for `url` when it is a PostgreSQL URL to a host that is not this machine and its
    /// `sslmode` does not require TLS; nil otherwise (SQLite, loopback, a socket, TLS required).
    public static func weakTLSWarning(_ url: String) -> String? {
        let lower = url.lowercased()
        guard lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://"), let schemeEnd = lower.range(of: "://") else { return nil }
        let authority = lower[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" }
        let hostPort = authority.split(separator: "@").last.map(String.init) ?? ""
        let host: String
        if hostPort.hasPrefix("[") {
            host = String(hostPort.dropFirst().prefix { $0 != "]" })
        } else {
            host = String(hostPort.prefix { $0 != ":" })
        }
        let query = lower.split(separator: "?", maxSplits: 1).dropFirst().first ?? ""
        var mode: String?
        var socketHost = false
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            if parts[0] == "sslmode" { mode = parts[1] }
            if parts[0] == "host", parts[1].hasPrefix("/") || parts[1].hasPrefix("%2f") { socketHost = true }
        }
        let local = host.isEmpty || host == "localhost" || host.hasPrefix("127.") || host == "::1" || host.hasPrefix("%2f") || socketHost
        if local || mode.map(encryptingModes.contains) == true { return nil }
        return "the PostgreSQL connection to \(host) does not require TLS (sslmode=\(mode ?? "prefer")): passwords and case data may travel in the clear; set sslmode=verify-full (with sslrootcert) or at least sslmode=require"
    }
}
