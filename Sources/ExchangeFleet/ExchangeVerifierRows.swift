import CaseData
import CaseDatabase
import DatabaseSupport
import Foundation
import Orchestrator

/// What the row check hands to the file and event checks.
struct RowCheckOutcome: Sendable {
    /// Source document id → destination document id (the job's map of the root table).
    var documents: [Int64: Int64]
    var rowsChecked: Int
    var tablesChecked: Int
    /// The files the exchange copies, per copied document.
    var files: [ExpectedFile]
    /// Native file names per source document (for NATIVE_DOCUMENT_COPIED).
    var nativeFileNames: [Int64: [String]]
    /// Not problems: confidentiality bits of compared rows with no code in the source case.
    var warnings: [String] = []
    /// Selected documents the job skipped as delivered by an earlier job.
    var skipped = 0
}

/// One file the exchange should have copied.
struct ExpectedFile: Sendable, Hashable {
    var sourceDocumentID: Int64
    var destinationDocumentID: Int64
    var name: String
    var variant: String
}

/// A single-column foreign key of the catalog.
struct VerifierForeignKey: Sendable, Hashable {
    var column: String
    var referencedTable: String
    var referencedColumn: String
}

/// A table as the catalog describes it.
struct VerifierTable: Sendable, Hashable {
    var name: String
    var columns: [String]
    var primaryKey: String?
    var foreignKeys: [VerifierForeignKey]
}

/// The row check: recomputes the copy's selection in the source and compares it with the job's
/// id map and the destination rows, table by table, in batches.
struct RowVerifier: Sendable {
    let settings: ExchangeVerifier.Settings
    let jobID: String
    let request: ExchangeRequest
    let pool: CaseDatabasePool

    /// Tables the copy engine never copies (the engine's bookkeeping).
    static let bookkeepingTables: Set<String> = [
        "case_schema_migrations", "exchange_id_map", "exchange_copy_checkpoints", "exchange_copy_inserted", "document_exchange_batches",
        "exchange_documents",
    ]

    private var copy: CaseCopySettings { settings.copySettings }

    func run(_ problems: inout ProblemList) async throws -> RowCheckOutcome {
        let sourceCase = request.sourceCaseID
        let destinationCase = request.destinationCaseID
        let limit = problems.limit
        let (outcome, found) = try await pool.withConnection(caseID: sourceCase, retryOnConnectionLoss: true) { source in
            try await pool.withConnection(caseID: destinationCase, retryOnConnectionLoss: true) { destination in
                var local = ProblemList(limit: limit)
                let outcome = try await check(source: source, destination: destination, problems: &local)
                return (outcome, local)
            }
        }
        problems.merge(found)
        return outcome
    }

    // MARK: The check

    private func check(source: CaseDatabaseConnection, destination: CaseDatabaseConnection, problems: inout ProblemList) async throws
        -> RowCheckOutcome
    {
        let q = Self.quote
        let sourceCatalog = try await Self.catalog(source)
        let destinationCatalog = try await Self.catalog(destination)
        guard destinationCatalog["exchange_id_map"] != nil else {
            problems.add("the destination case \(request.destinationCaseID) has no exchange_id_map table: nothing was copied")
            return RowCheckOutcome(documents: [:], rowsChecked: 0, tablesChecked: 0, files: [], nativeFileNames: [:])
        }
        let plan = try Self.plan(sourceCatalog, root: copy.rootTable)

        // The plan's shapes: columns both have, foreign keys to copied tables' primary keys.
        var columns: [String: [String]] = [:]
        var keys: [String: [VerifierForeignKey]] = [:]
        for name in plan.order {
            guard let table = plan.tables[name] else { continue }
            guard let target = destinationCatalog[name] else {
                problems.add("the destination case has no table \(name)")
                continue
            }
            let sourceColumns = Set(table.columns)
            let shared = target.columns.filter { sourceColumns.contains($0) }
            columns[name] = shared
            keys[name] = table.foreignKeys.filter { key in
                shared.contains(key.column) && plan.tables[key.referencedTable]?.primaryKey == key.referencedColumn
            }
        }

        // 1. The selection, recomputed in the source.
        var selected: [String: Set<Int64>] = [:]
        var demand: [String: Set<Int64>] = [:]
        var mask: Int64 = 0
        func note(_ name: String, _ rows: [SQLRow], downward: Bool) {
            for row in rows {
                for key in keys[name] ?? [] where key.referencedTable != name {
                    if let value = row[key.column].int64 { demand[key.referencedTable, default: []].insert(value) }
                }
                if downward { mask |= row[copy.confidentialityBitmaskColumn].int64 ?? 0 }
            }
        }
        func fetchColumns(_ name: String, downward: Bool) -> [String] {
            guard let table = plan.tables[name], let pk = table.primaryKey else { return [] }
            var list = [pk] + (keys[name] ?? []).map(\.column)
            if downward, (columns[name] ?? []).contains(copy.confidentialityBitmaskColumn) { list.append(copy.confidentialityBitmaskColumn) }
            var seen: Set<String> = []
            return list.filter { seen.insert($0).inserted }
        }
        guard let root = plan.tables[copy.rootTable], let rootKey = root.primaryKey else {
            throw ExchangeVerifierError(.database, "the source case has no table \(copy.rootTable)")
        }
        var rootIDs: [Int64]
        switch request.selection {
        case .documents(let ids): rootIDs = ids
        case .label(let id): rootIDs = try await linked(source, plan: plan, keys: keys, target: copy.labelTable, id: id, problems: &problems)
        case .folder(let id): rootIDs = try await linked(source, plan: plan, keys: keys, target: copy.folderTable, id: id, problems: &problems)
        }
        let skipped = try await checkSkips(destination, hasLedger: destinationCatalog["exchange_documents"] != nil, problems: &problems)
        rootIDs.removeAll { skipped.contains($0) }
        let rootRows = try await fetch(source, table: root.name, columns: fetchColumns(root.name, downward: true), where: rootKey, in: rootIDs)
        selected[root.name] = Set(rootRows.compactMap { $0[rootKey].int64 })
        note(root.name, rootRows, downward: true)
        for name in plan.order where plan.downward.contains(name) && name != root.name {
            guard let table = plan.tables[name], let pk = table.primaryKey else { continue }
            let down = (keys[name] ?? []).filter { plan.downward.contains($0.referencedTable) && $0.referencedTable != name }
            guard !down.isEmpty else { continue }
            var candidates: [Int64: SQLRow] = [:]
            for key in down {
                let parents = Array(selected[key.referencedTable] ?? [])
                for row in try await fetch(source, table: name, columns: fetchColumns(name, downward: true), where: key.column, in: parents) {
                    if let id = row[pk].int64 { candidates[id] = row }
                }
            }
            let chosen = candidates.values.filter { row in
                down.allSatisfy { key in
                    guard let value = row[key.column].int64 else { return true }
                    return selected[key.referencedTable]?.contains(value) == true
                }
            }
            selected[name] = Set(chosen.compactMap { $0[pk].int64 })
            note(name, Array(chosen), downward: true)
        }
        for name in plan.order.reversed() where !plan.downward.contains(name) {
            guard let table = plan.tables[name], let pk = table.primaryKey else { continue }
            var ids = demand[name] ?? []
            if name == copy.confidentialityTable, mask != 0, table.columns.contains(copy.confidentialityBitColumn) {
                for row in try await source.query("SELECT \(q(pk)) AS id, \(q(copy.confidentialityBitColumn)) AS bit FROM \(q(name))") {
                    if let id = row["id"].int64, let bit = row["bit"].int64, (0...62).contains(bit), (mask >> bit) & 1 == 1 { ids.insert(id) }
                }
            }
            guard !ids.isEmpty else { continue }
            let rows = try await fetch(source, table: name, columns: fetchColumns(name, downward: false), where: pk, in: Array(ids))
            selected[name] = Set(rows.compactMap { $0[pk].int64 })
            note(name, rows, downward: false)
        }

        // 2. The job's id map.
        var map: [String: [Int64: Int64]] = [:]
        for row in try await destination.query(
            "SELECT table_name, old_id, new_id FROM exchange_id_map WHERE job_id = $1", [.text(jobID)])
        {
            guard let table = row["table_name"].string, let old = row["old_id"].int64, let new = row["new_id"].int64 else { continue }
            if map[table]?[old] != nil { problems.add("the id map has \(table) old id \(old) more than once") }
            map[table, default: [:]][old] = new
        }
        for table in map.keys.sorted() where plan.tables[table] == nil {
            problems.add("the id map has \(map[table]?.count ?? 0) entries for table \(table), which the copy plan does not contain")
        }

        // 3. Rule inputs: the confidentiality remap and the source-exhibit field.
        let remap = try await bitRemap(source: source, destination: destination, map: map, plan: plan)
        var exhibitField: Int64?
        if destinationCatalog[copy.customFieldTable] != nil {
            let field = try await destination.query(
                "SELECT id, field_type FROM \(q(copy.customFieldTable)) WHERE name = $1 ORDER BY id LIMIT 1", [.text(copy.sourceExhibitField)]
            ).first
            exhibitField = field?["id"].int64
            if let field, field["field_type"] != .text("text") {
                problems.add("the custom field '\(copy.sourceExhibitField)' is of type \(field["field_type"]), expected 'text' (the source exhibit ids as decimal text)")
            }
        }

        // 4. Table by table.
        var rowsChecked = 0
        var tablesChecked = 0
        // Per table, per confidentiality bit no source code has: the compared rows carrying it.
        var uncoded: [String: [Int64: Int]] = [:]
        for name in plan.order {
            guard let table = plan.tables[name], let pk = table.primaryKey, let shared = columns[name] else { continue }
            tablesChecked += 1
            let expected = selected[name] ?? []
            let mapped = map[name] ?? [:]
            for old in expected.subtracting(mapped.keys).sorted() {
                problems.add("\(name) row \(old) of the source was not copied (the job's id map has no entry for it)")
            }
            for old in Set(mapped.keys).subtracting(expected).sorted() {
                problems.add("\(name): the id map maps source row \(old) to \(mapped[old] ?? 0), but the selection does not reach that row")
            }
            let mergeColumn = copy.mergeByColumn[name].flatMap { shared.contains($0) ? $0 : nil }
            if mergeColumn == nil {
                var owners: [Int64: Int64] = [:]
                for (old, new) in mapped.sorted(by: { $0.key < $1.key }) {
                    if let other = owners[new] {
                        problems.add("\(name): source rows \(other) and \(old) are both mapped to destination row \(new)")
                    } else {
                        owners[new] = old
                    }
                }
            }
            let cleared = Set((copy.clearedColumns[name] ?? []).filter { shared.contains($0) })
            let foreign = Dictionary((keys[name] ?? []).map { ($0.column, $0.referencedTable) }, uniquingKeysWith: { first, _ in first })
            let compared = expected.filter { mapped[$0] != nil }.sorted()
            // Keys and rule inputs are read as integers; every other column as the database holds
            // it (``cellExpression(_:kind:)``), never through the client's decoding.
            var raw: Set<String> = [pk]
            raw.formUnion(foreign.keys)
            if remap != nil { raw.insert(copy.confidentialityBitmaskColumn) }
            let held = Set(shared).subtracting(raw)
            let kind = source.kind
            var start = 0
            while start < compared.count {
                let batch = Array(compared[start..<min(compared.count, start + settings.batchRows)])
                start += settings.batchRows
                let before = Dictionary(
                    try await fetch(source, table: name, columns: shared, where: pk, in: batch, held: held).map { ($0[pk].int64 ?? 0, $0) },
                    uniquingKeysWith: { first, _ in first })
                let after = Dictionary(
                    try await fetch(destination, table: name, columns: shared, where: pk, in: batch.compactMap { mapped[$0] }, held: held)
                        .map { ($0[pk].int64 ?? 0, $0) },
                    uniquingKeysWith: { first, _ in first })
                for old in batch {
                    guard let new = mapped[old] else { continue }
                    guard let sourceRow = before[old] else {
                        problems.add("\(name) row \(old) vanished from the source case")
                        continue
                    }
                    guard let row = after[new] else {
                        problems.add("\(name) row \(new) (source \(old)) is missing in the destination case")
                        continue
                    }
                    rowsChecked += 1
                    if let mergeColumn {
                        if row[mergeColumn] != sourceRow[mergeColumn] {
                            problems.add("\(name) row \(new) (source \(old), merged by \(mergeColumn)): \(mergeColumn) is \(Self.display(row[mergeColumn], kind: kind)), expected \(Self.display(sourceRow[mergeColumn], kind: kind))")
                        }
                        continue
                    }
                    for column in shared where column != pk {
                        let expectedValue: SQLValue
                        var rule = ""
                        if let parent = foreign[column] {
                            if let value = sourceRow[column].int64 {
                                guard let translated = map[parent]?[value] else {
                                    problems.add("\(name) row \(new) (source \(old)): \(column) references \(parent) row \(value), which the id map does not contain")
                                    continue
                                }
                                expectedValue = .integer(translated)
                            } else {
                                expectedValue = .null
                            }
                            rule = " (source \(sourceRow[column]) through the id map)"
                        } else if cleared.contains(column) {
                            expectedValue = held.contains(column) ? .text(Self.heldNull) : .null
                            rule = " (cleared by the copy)"
                        } else if column == copy.confidentialityBitmaskColumn, let remap {
                            let value = sourceRow[column].int64 ?? 0
                            for bit in Int64(0)...63 where (value >> bit) & 1 == 1 && !remap.coded.contains(bit) {
                                uncoded[name, default: [:]][bit, default: 0] += 1
                            }
                            expectedValue = .integer(remap.apply(value))
                            rule = " (source \(sourceRow[column]) remapped to the destination's codes)"
                        } else if name == copy.customFieldValueTable, ["text_value", "number_value", "date_value"].contains(column),
                            let exhibitField, row["custom_field_id"].int64 == exhibitField, let exhibit = sourceRow["exhibit_id"].int64,
                            map[copy.exhibitTable]?[exhibit] != nil
                        {
                            // The source exhibit id, as decimal text compared exactly; the other value columns empty.
                            let wanted: SQLValue = column == "text_value" ? .text(String(exhibit)) : .null
                            let held = held.contains(column) ? Self.held(wanted, kind: kind) : wanted
                            if row[column] != held {
                                problems.add("\(name) row \(new) (source \(old)): \(column) is \(Self.display(row[column], kind: kind)), expected \(column == "text_value" ? "the source exhibit id \(exhibit)" : "NULL")")
                            }
                            continue
                        } else {
                            expectedValue = sourceRow[column]
                        }
                        // Cells read as held compare as text (type and bytes); keys and rule values as integers.
                        if held.contains(column) ? row[column] != expectedValue : !Self.same(row[column], expectedValue) {
                            problems.add("\(name) row \(new) (source \(old)): \(column) is \(Self.display(row[column], kind: kind)), expected \(Self.display(expectedValue, kind: kind))\(rule)")
                        }
                    }
                }
            }
        }

        // 5. The source-exhibit-id rule: every copied exhibit carries its source id.
        if plan.tables[copy.exhibitTable] != nil, destinationCatalog[copy.customFieldValueTable] != nil, !(map[copy.exhibitTable] ?? [:]).isEmpty {
            if let exhibitField {
                let rows = try await destination.query("""
                    SELECT m.old_id, m.new_id, v.text_value FROM exchange_id_map m
                    LEFT JOIN \(q(copy.customFieldValueTable)) v ON v.custom_field_id = $2 AND v.exhibit_id = m.new_id
                    WHERE m.job_id = $1 AND m.table_name = $3 ORDER BY m.old_id
                    """, [.text(jobID), .integer(exhibitField), .text(copy.exhibitTable)])
                for row in rows {
                    let old = row["old_id"].int64 ?? 0
                    let new = row["new_id"].int64 ?? 0
                    if row["text_value"].isNull {
                        problems.add("exhibit \(new) (source \(old)) has no '\(copy.sourceExhibitField)' value")
                    } else if row["text_value"] != .text(String(old)) {
                        problems.add("exhibit \(new) (source \(old)): '\(copy.sourceExhibitField)' is \(row["text_value"]), expected '\(old)'")
                    }
                }
            } else {
                problems.add("the destination case has no custom field '\(copy.sourceExhibitField)' for the source exhibit ids")
            }
        }

        // 6. The files the exchange copies, from the source's variants of the copied documents.
        let documents = map[copy.rootTable] ?? [:]
        var files: [ExpectedFile] = []
        var natives: [Int64: [String]] = [:]
        if sourceCatalog[copy.variantTable] != nil {
            let rows = try await fetch(
                source, table: copy.variantTable, columns: ["id", "document_id", "file_name", "variant_type"], where: "document_id",
                in: Array(documents.keys))
            for row in rows.sorted(by: { ($0["document_id"].int64 ?? 0, $0["id"].int64 ?? 0) < ($1["document_id"].int64 ?? 0, $1["id"].int64 ?? 0) }) {
                guard let old = row["document_id"].int64, let new = documents[old], let name = row["file_name"].string else { continue }
                let variant = row["variant_type"].string ?? ""
                if variant == "native" { natives[old, default: []].append(name) }
                let wanted = (variant == "pdf" && !request.requiresAnnotations) || (variant == "native" && request.includeNatives)
                if wanted { files.append(ExpectedFile(sourceDocumentID: old, destinationDocumentID: new, name: name, variant: variant)) }
            }
        }
        let warnings = uncoded.keys.sorted().compactMap { name -> String? in
            guard let bits = uncoded[name], !bits.isEmpty else { return nil }
            let list = bits.keys.sorted().map { "\($0) (\(bits[$0] ?? 0) rows)" }.joined(separator: ", ")
            return "\(name).\(copy.confidentialityBitmaskColumn): bits \(list) have no confidentiality code in the source case and were not carried over"
        }
        return RowCheckOutcome(
            documents: documents, rowsChecked: rowsChecked, tablesChecked: tablesChecked, files: files, nativeFileNames: natives,
            warnings: warnings, skipped: skipped.count)
    }

    /// The source documents the job skipped (`skipExchanged`), each checked on its own: the request
    /// asked for skipping, and an earlier job from the same source case delivered the document to a
    /// destination document that still exists. Read from the ledger rows, not from the copier.
    private func checkSkips(_ destination: CaseDatabaseConnection, hasLedger: Bool, problems: inout ProblemList) async throws -> Set<Int64> {
        guard hasLedger else { return [] }
        let q = Self.quote
        let rows = try await destination.query("""
            SELECT s.source_document_id AS doc, s.destination_document_id AS target, s.earlier_job_id AS earlier, s.source_case_id AS source,
                   (SELECT count(*) FROM exchange_documents e
                    WHERE e.job_id = s.earlier_job_id AND e.source_document_id = s.source_document_id
                      AND e.destination_document_id = s.destination_document_id AND e.source_case_id = s.source_case_id
                      AND e.outcome = 'delivered') AS delivered,
                   (SELECT count(*) FROM \(q(copy.rootTable)) d WHERE d.id = s.destination_document_id) AS present
            FROM exchange_documents s WHERE s.job_id = $1 AND s.outcome = 'skipped' ORDER BY s.source_document_id
            """, [.text(jobID)])
        var skipped: Set<Int64> = []
        for row in rows {
            guard let document = row["doc"].int64 else { continue }
            skipped.insert(document)
            let target = row["target"].int64 ?? 0
            let earlier = row["earlier"].string ?? "?"
            if !request.skipExchanged {
                problems.add("source document \(document) was skipped, but the request did not ask to skip exchanged documents")
            }
            if row["source"].int64 != request.sourceCaseID {
                problems.add("source document \(document) was skipped for source case \(row["source"].int64 ?? 0), not \(request.sourceCaseID)")
            }
            if (row["delivered"].int64 ?? 0) == 0 {
                problems.add("source document \(document) was skipped as delivered by job \(earlier), but that job's ledger has no delivery of it to document \(target)")
            }
            if (row["present"].int64 ?? 0) == 0 {
                problems.add("source document \(document) was skipped, but its earlier copy, destination document \(target), no longer exists")
            }
        }
        return skipped
    }

    /// Equality of two cells; an integer equals a REAL only when the REAL is exactly that integer
    /// (never through a rounding conversion: 2^53 + 1 does not equal 2^53).
    static func same(_ a: SQLValue, _ b: SQLValue) -> Bool {
        if a == b { return true }
        switch (a, b) {
        case (.integer(let integer), .double(let real)), (.double(let real), .integer(let integer)):
            return Int64(exactly: real) == integer
        default: return false
        }
    }

    /// Root ids linked to `target` row `id` (label → documents), through the first table (by name)
    /// referencing both, as the copy engine selects them.
    private func linked(
        _ source: CaseDatabaseConnection, plan: VerifierPlan, keys: [String: [VerifierForeignKey]], target: String, id: Int64,
        problems: inout ProblemList
    ) async throws -> [Int64] {
        for name in plan.tables.keys.sorted() {
            let tableKeys = keys[name] ?? []
            guard let toRoot = tableKeys.first(where: { $0.referencedTable == copy.rootTable }),
                let toTarget = tableKeys.first(where: { $0.referencedTable == target })
            else { continue }
            return try await source.query(
                "SELECT DISTINCT \(Self.quote(toRoot.column)) AS id FROM \(Self.quote(name)) WHERE \(Self.quote(toTarget.column)) = $1",
                [.integer(id)]
            ).compactMap { $0["id"].int64 }
        }
        problems.add("no table of the source case links \(copy.rootTable) to \(target)")
        return []
    }

    /// Source bit → destination bit for the codes the job mapped (nil without a codes table).
    private func bitRemap(
        source: CaseDatabaseConnection, destination: CaseDatabaseConnection, map: [String: [Int64: Int64]], plan: VerifierPlan
    ) async throws -> VerifierBitRemap? {
        guard let table = plan.tables[copy.confidentialityTable], table.columns.contains(copy.confidentialityBitColumn) else { return nil }
        let q = Self.quote
        let sql = "SELECT id, \(q(copy.confidentialityBitColumn)) AS bit FROM \(q(copy.confidentialityTable))"
        var sourceBits: [Int64: Int64] = [:]
        for row in try await source.query(sql) { if let id = row["id"].int64, let bit = row["bit"].int64 { sourceBits[id] = bit } }
        var destinationBits: [Int64: Int64] = [:]
        for row in try await destination.query(sql) { if let id = row["id"].int64, let bit = row["bit"].int64 { destinationBits[id] = bit } }
        var pairs: [(Int64, Int64)] = []
        for (old, new) in map[copy.confidentialityTable] ?? [:] {
            if let from = sourceBits[old], let to = destinationBits[new] { pairs.append((from, to)) }
        }
        return VerifierBitRemap(pairs: pairs, coded: Set(sourceBits.values))
    }

    // MARK: Reads

    /// Rows of `table` whose `column` is one of `ids`, in batches of ``ExchangeVerifier/Settings/batchRows``.
    /// - Parameter held: columns read as the database holds them (``cellExpression(_:kind:)``).
    private func fetch(
        _ connection: CaseDatabaseConnection, table: String, columns: [String], where column: String, in ids: [Int64],
        held: Set<String> = []
    ) async throws -> [SQLRow] {
        guard !ids.isEmpty, !columns.isEmpty else { return [] }
        let q = Self.quote
        let list = columns.map { held.contains($0) ? "\(Self.cellExpression($0, kind: connection.kind)) AS \(q($0))" : q($0) }
            .joined(separator: ", ")
        let condition = connection.kind == .postgres
            ? "\(q(column)) = ANY(CAST($1 AS bigint[]))" : "\(q(column)) IN (SELECT value FROM json_each($1))"
        let unique = Array(Set(ids)).sorted()
        var rows: [SQLRow] = []
        var start = 0
        while start < unique.count {
            let batch = unique[start..<min(unique.count, start + settings.batchRows)]
            start += settings.batchRows
            let text = batch.map(String.init).joined(separator: ",")
            rows += try await connection.query(
                "SELECT \(list) FROM \(q(table)) WHERE \(condition)",
                [.text(connection.kind == .postgres ? "{\(text)}" : "[\(text)]")])
        }
        return rows
    }

    static func quote(_ identifier: String) -> String { "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    // MARK: Cells as the database holds them

    /// A NULL cell read through ``cellExpression(_:kind:)``.
    static let heldNull = "null"

    /// SQL for a cell as the database holds it, as ASCII text: PostgreSQL `type:text output`
    /// (exact for every type, doubles included); SQLite `typeof:hex(bytes)`, a REAL as
    /// `real:` with 17 significant digits (exact for a double). NULL is `null`.
    static func cellExpression(_ column: String, kind: CaseDatabaseKind) -> String {
        let c = quote(column)
        switch kind {
        case .postgres:
            return "CASE WHEN \(c) IS NULL THEN 'null' ELSE pg_typeof(\(c))::text || ':' || CAST(\(c) AS text) END"
        case .sqlite:
            return "CASE typeof(\(c)) WHEN 'null' THEN 'null' WHEN 'real' THEN 'real:' || printf('%!.17g', \(c)) "
                + "ELSE typeof(\(c)) || ':' || hex(\(c)) END"
        }
    }

    /// `value` as ``cellExpression(_:kind:)`` renders a text cell holding it (or NULL).
    static func held(_ value: SQLValue, kind: CaseDatabaseKind) -> SQLValue {
        guard case .text(let text) = value else { return .text(heldNull) }
        switch kind {
        case .postgres: return .text("text:" + text)
        case .sqlite: return .text("text:" + text.utf8.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined())
        }
    }

    /// A cell for a problem sentence: read-as-held cells shown as their value (text quoted, bytes
    /// that are not UTF-8 as `X'…'`), other cells as they are.
    static func display(_ value: SQLValue, kind: CaseDatabaseKind) -> String {
        guard case .text(let cell) = value, let colon = cell.firstIndex(of: ":") else {
            if case .text(heldNull) = value { return "NULL" }
            return "\(value)"
        }
        let type = String(cell[..<colon])
        let body = String(cell[cell.index(after: colon)...])
        switch kind {
        case .postgres:
            let numeric: Set<String> = ["smallint", "integer", "bigint", "real", "double precision", "numeric"]
            return numeric.contains(type) ? body : "'\(body)'"
        case .sqlite:
            switch type {
            case "integer", "real":
                return type == "real" ? body : String(decoding: Self.bytes(hex: body), as: UTF8.self)
            case "text":
                let bytes = Self.bytes(hex: body)
                return String(validating: bytes, as: UTF8.self).map { "'\($0)'" } ?? "X'\(body)'"
            default:
                return "X'\(body)'"
            }
        }
    }

    private static func bytes(hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index != hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            if let byte = UInt8(hex[index..<next], radix: 16) { bytes.append(byte) }
            index = next
        }
        return bytes
    }

    // MARK: Catalog and plan (as the copy engine derives them)

    static func catalog(_ connection: CaseDatabaseConnection) async throws -> [String: VerifierTable] {
        var tables: [String: VerifierTable] = [:]
        switch connection.kind {
        case .postgres:
            for row in try await connection.query("""
                SELECT c.relname AS table_name, a.attname AS column_name FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                ORDER BY c.relname, a.attnum
                """)
            {
                guard let table = row["table_name"].string, let column = row["column_name"].string else { continue }
                tables[table, default: VerifierTable(name: table, columns: [], primaryKey: nil, foreignKeys: [])].columns.append(column)
            }
            for row in try await connection.query("""
                SELECT c.relname AS table_name, a.attname AS column_name FROM pg_constraint k
                JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                WHERE k.contype = 'p' AND n.nspname = current_schema() AND cardinality(k.conkey) = 1
                """)
            {
                guard let table = row["table_name"].string, let column = row["column_name"].string else { continue }
                tables[table]?.primaryKey = column
            }
            for row in try await connection.query("""
                SELECT c.relname AS table_name, a.attname AS column_name, rc.relname AS referenced_table, ra.attname AS referenced_column
                FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class rc ON rc.oid = k.confrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
                JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
                WHERE k.contype = 'f' AND n.nspname = current_schema() AND cardinality(k.conkey) = 1
                ORDER BY c.relname, a.attnum
                """)
            {
                guard let table = row["table_name"].string, let column = row["column_name"].string,
                    let referenced = row["referenced_table"].string, let referencedColumn = row["referenced_column"].string
                else { continue }
                tables[table]?.foreignKeys.append(VerifierForeignKey(column: column, referencedTable: referenced, referencedColumn: referencedColumn))
            }
        case .sqlite:
            for nameRow in try await connection.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            {
                guard let name = nameRow["name"].string else { continue }
                var table = VerifierTable(name: name, columns: [], primaryKey: nil, foreignKeys: [])
                var keyColumns: [String] = []
                for row in try await connection.query("SELECT name, pk FROM pragma_table_info($1) ORDER BY cid", [.text(name)]) {
                    guard let column = row["name"].string else { continue }
                    table.columns.append(column)
                    if (row["pk"].int ?? 0) > 0 { keyColumns.append(column) }
                }
                if keyColumns.count == 1 { table.primaryKey = keyColumns[0] }
                let foreign = try await connection.query(
                    "SELECT id, \"table\" AS referenced_table, \"from\" AS column_name, \"to\" AS referenced_column FROM pragma_foreign_key_list($1) ORDER BY id, seq",
                    [.text(name)])
                let counts = Dictionary(grouping: foreign, by: { $0["id"].int ?? 0 }).mapValues(\.count)
                for row in foreign where counts[row["id"].int ?? 0] == 1 {
                    guard let column = row["column_name"].string, let referenced = row["referenced_table"].string else { continue }
                    table.foreignKeys.append(
                        VerifierForeignKey(column: column, referencedTable: referenced, referencedColumn: row["referenced_column"].string ?? ""))
                }
                tables[name] = table
            }
            let primaryKeys = tables.mapValues { $0.primaryKey }
            for (name, table) in tables {
                tables[name]?.foreignKeys = table.foreignKeys.map { key in
                    var key = key
                    if key.referencedColumn.isEmpty { key.referencedColumn = (primaryKeys[key.referencedTable] ?? nil) ?? "id" }
                    return key
                }
            }
        }
        return tables
    }

    /// The tables connected to the root through foreign keys, parents first, and which of them
    /// hang below the root.
    static func plan(_ catalog: [String: VerifierTable], root: String) throws -> VerifierPlan {
        let all = catalog.filter { !bookkeepingTables.contains($0.key) && !$0.key.hasPrefix("exch_") }
        guard all[root] != nil else { throw ExchangeVerifierError(.database, "the source case has no table '\(root)'") }
        var neighbours: [String: Set<String>] = [:]
        for table in all.values {
            for key in table.foreignKeys where all[key.referencedTable] != nil && key.referencedTable != table.name {
                neighbours[table.name, default: []].insert(key.referencedTable)
                neighbours[key.referencedTable, default: []].insert(table.name)
            }
        }
        var reached: Set<String> = [root]
        var queue = [root]
        while let current = queue.popLast() {
            for next in neighbours[current] ?? [] where !reached.contains(next) {
                reached.insert(next)
                queue.append(next)
            }
        }
        var tables: [String: VerifierTable] = [:]
        for name in reached {
            guard let table = all[name], table.primaryKey != nil else {
                throw ExchangeVerifierError(.database, "table '\(name)' has no single-column primary key")
            }
            tables[name] = table
        }
        var downward: Set<String> = [root]
        var changed = true
        while changed {
            changed = false
            for table in tables.values where !downward.contains(table.name) {
                if table.foreignKeys.contains(where: { downward.contains($0.referencedTable) && $0.referencedTable != table.name }) {
                    downward.insert(table.name)
                    changed = true
                }
            }
        }
        var parents: [String: Set<String>] = [:]
        for table in tables.values {
            for key in table.foreignKeys where tables[key.referencedTable] != nil && key.referencedTable != table.name {
                parents[table.name, default: []].insert(key.referencedTable)
            }
        }
        var order: [String] = []
        var remaining = Set(tables.keys)
        while !remaining.isEmpty {
            guard let next = remaining.filter({ (parents[$0] ?? []).isDisjoint(with: remaining) }).min() else {
                throw ExchangeVerifierError(.database, "the foreign keys form a cycle among \(remaining.sorted().joined(separator: ", "))")
            }
            order.append(next)
            remaining.remove(next)
        }
        return VerifierPlan(order: order, downward: downward, tables: tables)
    }
}

/// The copy plan as the verifier derives it.
struct VerifierPlan: Sendable {
    var order: [String]
    var downward: Set<String>
    var tables: [String: VerifierTable]
}

/// The confidentiality bitmask rewrite: each source bit moved to its destination bit.
struct VerifierBitRemap: Sendable {
    var pairs: [(Int64, Int64)]
    /// The bit positions the source case's codes use.
    var coded: Set<Int64>

    func apply(_ value: Int64) -> Int64 {
        var result: Int64 = 0
        for (from, to) in pairs where (0...62).contains(from) && (0...62).contains(to) {
            result |= ((value >> from) & 1) << to
        }
        return result
    }
}

