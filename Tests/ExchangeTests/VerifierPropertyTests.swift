import CaseData
import DatabaseSupport
import ExchangeFleet
import ExchangerTestSupport
import Foundation
import Synchronization
import Testing

/// The source values a run changed, for the failure message.
final class ChangeLog: Sendable {
    let entries = Mutex<[String]>([])
}

/// One column of a case table the property test may overwrite.
struct MutableColumn: Sendable, CustomStringConvertible {
    enum Kind: Sendable { case integer32, integer64, real, text, timestamp }
    var table: String
    var name: String
    var kind: Kind
    var nullable: Bool
    /// PostgreSQL's type name, for the cast of a text parameter.
    var postgresType: String
    var description: String { "\(table).\(name)" }
}

/// Random source rows of every column type, copied and verified on both backends: the copy must
/// carry every value exactly, and the verifier (which compares what the databases hold) must say
/// so; a value changed in the destination afterwards must then be found.
@Suite("ExchangeVerifier properties")
struct VerifierPropertyTests {
    /// Tables the copy does not carry (its own bookkeeping and derived data).
    static func isCopied(_ table: String) -> Bool {
        !(table.hasPrefix("exchange_") || table.hasPrefix("case_schema") || table.hasPrefix("document_search")
            || table == "document_exchange_batches" || table.hasPrefix("sqlite_"))
    }

    /// Columns whose values the copy rewrites by rule or that tie rows together (ids, foreign
    /// keys, unique and CHECK-constrained columns, file names that locate the files, the
    /// confidentiality bitmask remapped by code name, document properties copied as NULL).
    static let ruled: Set<String> = [
        "document_variants.file_name", "documents.confidentiality_status", "exhibits.document_properties",
        "custom_fields.field_type", "document_variants.variant_type", "confidentiality_logs.action",
        "confidentiality_codes.bit_position",
    ]

    static func columns(_ databases: CaseDatabases, _ caseID: Int64, postgres: Bool) async throws -> [MutableColumn] {
        var result: [MutableColumn] = []
        if postgres {
            let rows = try await runCaseSQL(databases, caseID, """
                SELECT c.table_name, c.column_name, c.data_type, c.is_nullable
                FROM information_schema.columns c JOIN information_schema.tables t
                  ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
                WHERE c.table_schema = current_schema() AND c.is_generated = 'NEVER'
                ORDER BY c.table_name, c.ordinal_position
                """)
            let keyed = Set(try await runCaseSQL(databases, caseID, """
                SELECT t.relname || '.' || a.attname AS k FROM pg_index i
                JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
                JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)
                WHERE i.indisunique AND n.nspname = current_schema()
                UNION
                SELECT kcu.table_name || '.' || kcu.column_name FROM information_schema.table_constraints tc
                JOIN information_schema.key_column_usage kcu
                  ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
                WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()
                """).compactMap { $0["k"].string })
            for row in rows {
                guard let table = row["table_name"].string, let name = row["column_name"].string, let type = row["data_type"].string,
                    isCopied(table), name != "id", !name.hasSuffix("_id"), !keyed.contains("\(table).\(name)"), !ruled.contains("\(table).\(name)")
                else { continue }
                let kind: MutableColumn.Kind
                switch type {
                case "integer": kind = .integer32
                case "bigint": kind = .integer64
                case "double precision": kind = .real
                case "text": kind = .text
                case "timestamp with time zone": kind = .timestamp
                default: continue
                }
                result.append(MutableColumn(table: table, name: name, kind: kind, nullable: row["is_nullable"].string == "YES", postgresType: type))
            }
        } else {
            let tables = try await runCaseSQL(databases, caseID, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .compactMap { $0["name"].string }.filter(isCopied)
            for table in tables {
                guard !table.contains("fts") else { continue }
                let keyed = Set(
                    try await runCaseSQL(databases, caseID, """
                        SELECT ii.name AS n FROM pragma_index_list($1) il JOIN pragma_index_info(il.name) ii WHERE il."unique" = 1
                        UNION SELECT "from" FROM pragma_foreign_key_list($1)
                        """, [.text(table)]).compactMap { $0[0].string })
                for row in try await runCaseSQL(databases, caseID, #"SELECT name, type, "notnull" AS nn FROM pragma_table_info($1)"#, [.text(table)]) {
                    guard let name = row["name"].string, let type = row["type"].string?.uppercased(), name != "id", !name.hasSuffix("_id"),
                        !keyed.contains(name), !ruled.contains("\(table).\(name)")
                    else { continue }
                    let kind: MutableColumn.Kind
                    switch type {
                    case "INTEGER": kind = .integer64
                    case "REAL": kind = .real
                    case "TEXT": kind = name.hasSuffix("_at") || name.hasSuffix("_date") ? .timestamp : .text
                    default: continue
                    }
                    result.append(MutableColumn(table: table, name: name, kind: kind, nullable: row["nn"].int64 == 0, postgresType: type))
                }
            }
        }
        return result
    }

    /// A random value for `column`, as SQL text to place in an UPDATE (a cast parameter on
    /// PostgreSQL, a literal on SQLite for bytes that are not UTF-8) and its bind.
    static func value(for column: MutableColumn, postgres: Bool, using random: inout SeededGenerator) -> (sql: String, bind: SQLValue) {
        if column.nullable, Int.random(in: 0..<5, using: &random) == 0 { return ("NULL", .null) }
        func param(_ text: String) -> (String, SQLValue) { (postgres ? "CAST($1 AS \(column.postgresType))" : "$1", .text(text)) }
        switch column.kind {
        case .integer32:
            let picks: [Int64] = [0, -1, 1, Int64(Int32.max), Int64(Int32.min), Int64.random(in: Int64(Int32.min)...Int64(Int32.max), using: &random)]
            let value = picks.randomElement(using: &random) ?? 0
            return postgres ? param(String(value)) : ("$1", .integer(value))
        case .integer64:
            let picks: [Int64] = [0, -1, Int64.max, Int64.min, 9_007_199_254_740_993, -9_007_199_254_740_993, Int64.random(in: .min ... .max, using: &random)]
            let value = picks.randomElement(using: &random) ?? 0
            return postgres ? param(String(value)) : ("$1", .integer(value))
        case .real:
            let picks: [Double] = [
                0, -0.0, 0.1, 1.0 / 3.0, -1.7976931348623157e308, 1.7976931348623157e308, Double.leastNonzeroMagnitude, 2.2250738585072014e-308,
                9_007_199_254_740_992, Double.random(in: -1e12...1e12, using: &random),
            ]
            let value = picks.randomElement(using: &random) ?? 0
            return postgres ? param("\(value)") : ("$1", .double(value))
        case .timestamp:
            let year = Int.random(in: 1...9999, using: &random), month = Int.random(in: 1...12, using: &random)
            let day = Int.random(in: 1...28, using: &random), micros = Int.random(in: 0...999_999, using: &random)
            let text = String(
                format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", year, month, day, Int.random(in: 0...23, using: &random),
                Int.random(in: 0...59, using: &random), Int.random(in: 0...59, using: &random), micros)
            return param(text)
        case .text:
            if !postgres, Int.random(in: 0..<4, using: &random) == 0 {
                // Bytes SQLite keeps as TEXT that are not UTF-8, an embedded NUL among them.
                let bytes = (0..<Int.random(in: 1...24, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                let hex = bytes.map { String(format: "%02X", $0) }.joined()
                return ("CAST(X'\(hex)' AS TEXT)", .null)
            }
            let pieces = [
                "", " ", "e\u{301}", "\u{E9}", "\u{1F600}", "\u{202E}rtl", "\t\r\n", "\u{1}\u{1F}\u{7F}", "'\"\\%_", "\u{FFFD}", "𝄞", "ß",
                String(repeating: "x", count: 10_000), "0", "-0", "1e5", "NULL", "\u{2028}",
            ]
            let count = Int.random(in: 0...4, using: &random)
            return param((0..<count).map { _ in pieces.randomElement(using: &random) ?? "" }.joined())
        }
    }

    @Test("random values of every column type are copied exactly, and the verifier sees a changed one", arguments: [
        (Backend.postgres, UInt64(1)), (.postgres, 2), (.postgres, 3), (.sqlite, 1), (.sqlite, 2), (.sqlite, 3),
    ])
    func randomRowsCopyExactly(_ backend: Backend, seed: UInt64) async throws {
        let changed = ChangeLog()
        try await withBuiltExchange(backend, documents: 6, prepareSource: { databases, sourceCase in
            var random = SeededGenerator(seed: seed)
            let postgres = backend == .postgres
            let columns = try await Self.columns(databases, sourceCase, postgres: postgres)
            #expect(columns.count > 20, "the scan finds the case schema's columns: \(columns)")
            // SQLite declares one INTEGER type; PostgreSQL has integer and bigint.
            #expect(Set(columns.map(\.kind)).count == (postgres ? 5 : 4), "every column kind is exercised: \(Set(columns.map(\.kind)))")
            for column in columns {
                let ids = try await runCaseSQL(databases, sourceCase, "SELECT id FROM \(column.table) ORDER BY id").compactMap { $0["id"].int64 }
                for id in ids where Int.random(in: 0..<3, using: &random) == 0 {
                    let (sql, bind) = Self.value(for: column, postgres: postgres, using: &random)
                    let binds: [SQLValue] = sql.contains("$1") ? [bind, .integer(id)] : [.integer(id)]
                    let idParameter = sql.contains("$1") ? "$2" : "$1"
                    try await runCaseSQL(databases, sourceCase, "UPDATE \(column.table) SET \(column.name) = \(sql) WHERE id = \(idParameter)", binds)
                    changed.entries.withLock { $0.append("\(column) row \(id) = \(sql == "$1" || sql.hasPrefix("CAST($1") ? "\(bind)" : sql)") }
                }
            }
        }) { built in
            #expect(changed.entries.withLock { $0.count } > 50, "the run changed source values")
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(result.problems.isEmpty, "seed \(seed) on \(backend): \(result.problems)\nchanged: \(changed.entries.withLock { $0 }.prefix(400))")
            #expect(result.rowsChecked > 0)

            // The check has teeth: one copied title changed afterwards is found.
            let document = try await built.someRow("documents")
            try await built.caseSQL(
                built.request.destinationCaseID, "UPDATE documents SET title = $1 WHERE id = $2", [.text("changed after the copy"), .integer(document.new)])
            let tampered = try await built.verifier.verify(jobID: built.jobID)
            #expect(tampered.problems.contains { $0.contains("documents row \(document.new)") && $0.contains("title") }, "\(tampered.problems)")
        }
    }
}
