import DatabaseSupport
import SQLiteClient

/// The kind of database server behind the case databases.
public enum CaseDatabaseKind: String, Sendable, Hashable {
    case postgres, sqlite
}

/// Finds the database of a case: `{prefix}_{caseId}` put into a URL template.
///
/// Templates: `postgres://user@host:5432/{database}` (any libpq URI; a password comes from
/// `PGPASSWORD` / `PGPASSFILE`, never the template) or
/// `sqlite:///var/lib/exchanger/cases/{database}.sqlite`.
public struct CaseDatabaseLocator: Sendable, Hashable {
    /// The default database name prefix.
    public static let defaultPrefix = "case"
    /// The placeholder the template must contain.
    public static let placeholder = "{database}"

    public let template: String
    public let prefix: String
    public let kind: CaseDatabaseKind

    /// - Throws: ``CaseDatabaseError/Code/invalidConfiguration`` when the template has no
    ///   `{database}` or an unknown scheme, or the prefix is not `[A-Za-z0-9_]{1,40}`.
    public init(template: String, prefix: String = Self.defaultPrefix) throws(CaseDatabaseError) {
        guard template.contains(Self.placeholder) else {
            throw CaseDatabaseError(.invalidConfiguration, "the case-database URL template must contain \(Self.placeholder)")
        }
        if template.hasPrefix("postgres://") || template.hasPrefix("postgresql://") {
            kind = .postgres
        } else if template.hasPrefix("sqlite:") {
            kind = .sqlite
        } else {
            throw CaseDatabaseError(.invalidConfiguration, "the case-database URL template must start with postgres:// or sqlite:///")
        }
        // The name goes into a URL and is a PostgreSQL identifier (63 bytes at most, unquoted).
        guard !prefix.isEmpty, prefix.utf8.count <= 40,
            prefix.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F })
        else {
            throw CaseDatabaseError(.invalidConfiguration, "the case-database prefix must be 1–40 of [A-Za-z0-9_], not '\(prefix)'")
        }
        self.template = template
        self.prefix = prefix
    }

    /// `{prefix}_{caseId}`.
    public func databaseName(caseID: Int64) throws(CaseDatabaseError) -> String {
        guard caseID > 0 else { throw CaseDatabaseError(.invalidCaseID, "case id must be positive, not \(caseID)") }
        return "\(prefix)_\(caseID)"
    }

    /// The connection URL of the case's database.
    public func url(caseID: Int64) throws(CaseDatabaseError) -> String {
        template.replacingOccurrences(of: Self.placeholder, with: try databaseName(caseID: caseID))
    }

    /// The file of an SQLite case database (nil for PostgreSQL).
    public func sqlitePath(caseID: Int64) throws(CaseDatabaseError) -> String? {
        guard kind == .sqlite else { return nil }
        do {
            return try SQLiteConfiguration.parse(url: try url(caseID: caseID)).path
        } catch let error as DatabaseError {
            throw CaseDatabaseError(.invalidConfiguration, "case-database URL: \(error.message)", underlying: error)
        } catch let error as CaseDatabaseError {
            throw error
        } catch {
            throw CaseDatabaseError(.invalidConfiguration, "case-database URL: \(error)")
        }
    }
}
