import Foundation

/// Where the per-case databases are and how many connections to them a process keeps open.
///
/// | environment variable | meaning | default |
/// |---|---|---|
/// | `EXCHANGER_CASE_DATABASE_URL` | URL template containing `{database}` | — (required, or `…_FILE`) |
/// | `EXCHANGER_CASE_DATABASE_URL_FILE` | a file holding that URL (a container secret), read when the variable is unset | — |
/// | `EXCHANGER_CASE_DATABASE_PREFIX` | database name prefix: `{prefix}_{caseId}` | `case` |
/// | `EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS` | case databases kept open at once (least recently used closed first) | 16 |
public struct CaseDatabaseSettings: Sendable, Hashable {
    /// Where the databases are.
    public var locator: CaseDatabaseLocator
    /// Most case-database connections kept open at once.
    public var maxOpenConnections: Int

    /// The default of ``maxOpenConnections``.
    public static let defaultMaxOpenConnections = 16

    public init(locator: CaseDatabaseLocator, maxOpenConnections: Int = Self.defaultMaxOpenConnections) throws(CaseDatabaseError) {
        guard maxOpenConnections >= 1, maxOpenConnections <= 10_000 else {
            throw CaseDatabaseError(.invalidConfiguration, "the case-database connection limit must be 1…10000, not \(maxOpenConnections)")
        }
        self.locator = locator
        self.maxOpenConnections = maxOpenConnections
    }

    /// Reads the settings from the environment (see the table above).
    /// - Throws: ``CaseDatabaseError/Code/invalidConfiguration`` naming the variable at fault.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws(CaseDatabaseError) {
        let template: String
        if let value = environment["EXCHANGER_CASE_DATABASE_URL"], !value.isEmpty {
            template = value
        } else if let path = environment["EXCHANGER_CASE_DATABASE_URL_FILE"], !path.isEmpty {
            // A container secret holding the URL with its password: whitespace and the newline trimmed.
            guard let data = FileManager.default.contents(atPath: path),
                let value = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty
            else {
                throw CaseDatabaseError(.invalidConfiguration, "EXCHANGER_CASE_DATABASE_URL_FILE names '\(path)', which cannot be read or is empty")
            }
            template = value
        } else {
            throw CaseDatabaseError(.invalidConfiguration,
                "EXCHANGER_CASE_DATABASE_URL (or EXCHANGER_CASE_DATABASE_URL_FILE) is not set (e.g. postgres://user@host:5432/{database} or sqlite:///var/lib/exchanger/cases/{database}.sqlite)")
        }
        let prefix = environment["EXCHANGER_CASE_DATABASE_PREFIX"].flatMap { $0.isEmpty ? nil : $0 } ?? CaseDatabaseLocator.defaultPrefix
        var maxOpen = Self.defaultMaxOpenConnections
        if let text = environment["EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS"], !text.isEmpty {
            guard let value = Int(text) else {
                throw CaseDatabaseError(.invalidConfiguration, "EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS='\(text)' is not a whole number")
            }
            maxOpen = value
        }
        try self.init(locator: try CaseDatabaseLocator(template: template, prefix: prefix), maxOpenConnections: maxOpen)
    }
}
