import Foundation

/// A value bound to a statement parameter or read from a result column.
///
/// Values are always sent as parameters: no value is ever spliced into SQL text.
public enum SQLValue: Sendable, Hashable, CustomStringConvertible {
    case null
    case integer(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
    case bool(Bool)

    public var description: String {
        switch self {
        case .null: "NULL"
        case .integer(let value): String(value)
        case .double(let value): String(value)
        case .text(let value): "'\(value)'"
        case .blob(let value): "<\(value.count) bytes>"
        case .bool(let value): String(value)
        }
    }

    public var isNull: Bool { if case .null = self { true } else { false } }

    /// The value as an integer: integers, integral doubles, numeric text and booleans convert.
    public var int64: Int64? {
        switch self {
        case .integer(let value): value
        case .double(let value): value.rounded() == value ? Int64(exactly: value) : nil
        case .text(let value): Int64(value)
        case .bool(let value): value ? 1 : 0
        default: nil
        }
    }

    public var int: Int? { int64.flatMap { Int(exactly: $0) } }

    public var double: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        case .text(let value): Double(value)
        default: nil
        }
    }

    public var string: String? {
        switch self {
        case .text(let value): value
        case .integer(let value): String(value)
        case .double(let value): String(value)
        case .blob(let value): String(decoding: value, as: UTF8.self)
        case .bool(let value): value ? "true" : "false"
        case .null: nil
        }
    }

    public var bytes: [UInt8]? {
        switch self {
        case .blob(let value): value
        case .text(let value): Array(value.utf8)
        default: nil
        }
    }

    /// Booleans: PostgreSQL `bool`, SQLite integers 0/1.
    public var bool: Bool? {
        switch self {
        case .bool(let value): value
        case .integer(let value): value != 0
        case .text(let value): ["t", "true", "1"].contains(value.lowercased()) ? true : (["f", "false", "0"].contains(value.lowercased()) ? false : nil)
        default: nil
        }
    }
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension SQLValue {
    public init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    public init(_ value: Int) { self = .integer(Int64(value)) }
    public init(_ value: Int?) { self = value.map { .integer(Int64($0)) } ?? .null }
    public init(_ value: Int64) { self = .integer(value) }
    public init(_ value: Bool) { self = .bool(value) }
    public init(_ value: Double) { self = .double(value) }
}

/// One result row: column names and values, in select order.
public struct SQLRow: Sendable, Hashable {
    public let columns: [String]
    public let values: [SQLValue]

    public init(columns: [String], values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    /// The value of the named column, `.null` when there is no such column.
    public subscript(_ column: String) -> SQLValue {
        guard let index = columns.firstIndex(of: column) else { return .null }
        return values[index]
    }

    public subscript(_ index: Int) -> SQLValue {
        values.indices.contains(index) ? values[index] : .null
    }

    /// The named column, or an error naming the column and what was expected.
    public func require<T>(_ column: String, _ convert: (SQLValue) -> T?) throws(DatabaseError) -> T {
        guard let value = convert(self[column]) else {
            throw DatabaseError(.decoding, message: "column '\(column)' holds \(self[column]), not the expected type")
        }
        return value
    }
}
