import DatabaseSupport

/// The dialect-dependent pieces of a statement that callers of ``BrokerTransaction/query(clock:_:_:)``
/// write once for both backends. Statements use PostgreSQL's `$n` placeholders (SQLite gets `?n`);
/// times are `timestamptz` compared with the database clock in PostgreSQL, and INTEGER
/// milliseconds from the caller's clock in SQLite (one host, so one clock), passed as one more
/// parameter after the statement's own when the statement reads the time.
public final class SQLTime {
    /// Whether the statement is for PostgreSQL.
    public let postgres: Bool
    private let nowParameter: Int
    /// Whether the statement read ``now`` (SQLite then needs the clock parameter).
    public private(set) var readsClock = false

    /// Pieces for a statement of `dialect` with `parameters` parameters of its own.
    public init(dialect: SQLDialect, parameters: Int) {
        postgres = dialect == .postgres
        nowParameter = parameters + 1
    }

    /// The current time.
    public var now: String {
        if postgres { return "now()" }
        readsClock = true
        return "$\(nowParameter)"
    }

    /// The current time plus the milliseconds in parameter `index`.
    public func plus(_ index: Int) -> String {
        postgres ? "(now() + $\(index)::bigint * interval '1 millisecond')" : "(\(now) + $\(index))"
    }

    /// The current time minus the milliseconds in parameter `index`.
    public func minus(_ index: Int) -> String {
        postgres ? "(now() - $\(index)::bigint * interval '1 millisecond')" : "(\(now) - $\(index))"
    }

    /// A time column as milliseconds since 1970.
    public func milliseconds(_ column: String) -> String {
        postgres ? "(extract(epoch FROM \(column)) * 1000)::bigint" : column
    }

    /// Milliseconds since 1970 in parameter `index` as a time value.
    public func time(_ index: Int) -> String {
        postgres ? "to_timestamp($\(index)::bigint / 1000.0)" : "$\(index)"
    }

    /// A text parameter that may be NULL (PostgreSQL needs its type spelled out).
    public func nullableText(_ index: Int) -> String {
        postgres ? "$\(index)::text" : "$\(index)"
    }

    /// A bigint parameter that may be NULL.
    public func bigint(_ index: Int) -> String {
        postgres ? "$\(index)::bigint" : "$\(index)"
    }

    /// A boolean parameter that may be NULL.
    public func bool(_ index: Int) -> String {
        postgres ? "$\(index)::boolean" : "$\(index)"
    }

    /// A row-locking clause (`FOR UPDATE`, …): PostgreSQL only; SQLite write transactions are
    /// serialized already (`BEGIN IMMEDIATE`).
    public func lock(_ clause: String) -> String { postgres ? clause : "" }

    /// `IS DISTINCT FROM` (SQLite: `IS NOT`).
    public var distinct: String { postgres ? "IS DISTINCT FROM" : "IS NOT" }

    /// `IS NOT DISTINCT FROM` (SQLite: `IS`).
    public var notDistinct: String { postgres ? "IS NOT DISTINCT FROM" : "IS" }
}

extension BrokerTransaction {
    /// Runs the statement `sql` builds (with ``SQLTime``'s pieces), `binds` for `$1…$n`, in this
    /// transaction's dialect; `clock` (milliseconds since 1970) is SQLite's "now".
    @discardableResult
    public func query(clock: Int64, _ binds: [SQLValue] = [], _ sql: (SQLTime) -> String) async throws -> [SQLRow] {
        let time = SQLTime(dialect: dialect, parameters: binds.count)
        let text = sql(time)
        var all = binds
        if time.readsClock { all.append(.integer(clock)) }
        return try await query(dialect.placeholders(text), all)
    }
}
