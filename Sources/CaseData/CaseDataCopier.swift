import CaseDatabase
import DatabaseSupport
import Foundation
import Logging
import PostgresClient
import SQLiteClient

/// The case-data copy engine: copies selected documents and every row reachable from them from
/// one case database into another (PostgreSQL → PostgreSQL or SQLite → SQLite).
///
/// - The foreign-key graph comes from the catalog; the walk starts at `documents`. Tables below
///   it (rows referencing copied rows) and the parent rows they need (custodians, labels,
///   categories, codes, folders, issues, fields) are copied parents first, so a schema change
///   needs no code change.
/// - Every copied row gets a new primary key from the destination (PostgreSQL sequence; SQLite
///   max + 1) and every foreign key is rewritten through `exchange_id_map` in the destination,
///   persisted per job: a re-run reuses the same new ids and inserts nothing twice.
/// - The source is read in one snapshot (REPEATABLE READ, or one SQLite read transaction); on
///   PostgreSQL rows stream with `COPY (SELECT …) TO STDOUT` → a staging table (`COPY FROM
///   STDIN`) → `INSERT … SELECT … ON CONFLICT DO NOTHING`. Each table is one destination
///   transaction ending with its row in `exchange_copy_checkpoints`; a re-run resumes at the first
///   unfinished table.
/// - Post-copy rules: `document_properties` cleared on the copied exhibits, the source exhibit id
///   written as decimal text to a text custom field of each copied exhibit, the
///   `confidentiality_status` bitmask remapped to the destination's codes (by name), label
///   categories, folder tags, confidentiality codes and custom fields merged into the
///   destination's rows of the same name (compared byte for byte).
/// - Before anything is written (in the source snapshot): a merged row whose defining columns
///   differ from the destination's row of the same name (``CaseCopySettings/mergeMustAgree``, a
///   custom field's type) fails the copy with ``CaseDataError/Code/conflict``; a selected
///   document whose row, or a row below it, references a row the source does not have is left
///   out and listed in ``CaseCopyReport/excludedDocuments`` with the reason.
/// - The `exchange_documents` ledger records each copied document (`copied`) with the last step;
///   ``recordOutcomes(destinationCase:jobID:outcomes:)`` sets how it ended. With
///   ``CaseCopyOptions/skipExchanged`` a document an earlier job from the same source case
///   delivered (its destination document still existing) is left out and recorded as `skipped`.
/// - A retry (``CaseCopyOptions/reuseIDsOf``) gives every selected row the earlier job copied the
///   destination id it got then: rows still in the destination are not inserted again, so the
///   documents that earlier job left behind (``leftBehind(destinationCase:jobID:)``) go through
///   once more without a row copied twice.
/// - A copy that fails for good (not cancelled, not a transient database error, not an error of
///   the table hook) removes the rows the job inserted (recorded in `exchange_copy_inserted`), its
///   id map and checkpoints; a finished job is never undone.
///
/// Self-referencing foreign keys are rewritten when the referenced row is copied too, but the
/// walk does not add such rows by itself: a reference to an unselected row of the same table
/// fails the copy with ``CaseDataError/Code/inconsistentSource``.
public struct CaseDataCopier: CaseCopyEngine {
    /// Called after each table's transaction committed, with the table and the rows it inserted
    /// (progress reports; tests interrupt a copy by throwing here).
    public typealias TableHook = @Sendable (_ table: String, _ insertedRows: Int) async throws -> Void

    /// The case databases and the sessions' settings.
    public let databases: CaseDatabases
    /// Tables, rules, sizes and timeouts of the copy.
    public let settings: CaseCopySettings
    private let logger: Logger
    private let afterTable: TableHook?

    /// The checkpoint name of the post-copy rules step (after the last table).
    public static let postCopyStep = "(post-copy rules)"

    /// A copier over the case databases `locator` finds.
    /// - Parameter afterTable: called after each table committed (see ``TableHook``).
    public init(
        locator: CaseDatabaseLocator, settings: CaseCopySettings = CaseCopySettings(),
        logger: Logger = Logger(label: "exchanger.case-copy"), afterTable: TableHook? = nil
    ) {
        var configuration = CaseDatabasePool.defaultPostgresConfiguration
        configuration.applicationName = "exchanger-case-copy"
        configuration.statementTimeout = settings.statementTimeout
        configuration.idleInTransactionTimeout = settings.idleInTransactionTimeout
        self.databases = CaseDatabases(locator: locator, postgresConfiguration: configuration)
        self.settings = settings
        self.logger = logger
        self.afterTable = afterTable
    }

    /// A copier over the same case databases as `databases` (its PostgreSQL session settings
    /// get the copy's timeouts).
    public init(
        databases: CaseDatabases, settings: CaseCopySettings = CaseCopySettings(),
        logger: Logger = Logger(label: "exchanger.case-copy"), afterTable: TableHook? = nil
    ) {
        self.init(locator: databases.locator, settings: settings, logger: logger, afterTable: afterTable)
    }

    /// Copies the selected documents of `sourceCase` with everything reachable from them into
    /// `destinationCase`.
    /// - Throws: ``CaseDataError``: `.invalidArgument` (same case, empty job id), `.notFound`
    ///   (a case database is missing), `.invalidSchema`, `.conflict` (a merged custom field of
    ///   another type), `.inconsistentSource`, `.database`, `.interrupted` (cancelled); an error
    ///   thrown by the table hook as it is.
    public func copy(
        sourceCase: Int64, destinationCase: Int64, selection: CaseDocumentSelection, jobID: String, options: CaseCopyOptions
    ) async throws -> CaseCopyReport {
        guard sourceCase != destinationCase else {
            throw CaseDataError(.invalidArgument, "the source and destination case are the same (\(sourceCase))")
        }
        guard !jobID.isEmpty, jobID.utf8.count <= 200 else { throw CaseDataError(.invalidArgument, "the job id must be 1…200 bytes") }
        let started = ContinuousClock.now
        let source = try await databases.open(caseID: sourceCase)
        let destination: CaseSQLConnection
        do {
            destination = try await databases.open(caseID: destinationCase)
        } catch {
            await source.close()
            throw error
        }
        do {
            guard source.kind == destination.kind else {
                throw CaseDataError(.invalidArgument, "the source and destination databases are of different kinds")
            }
            let (tables, destinationTables, excluded, notFound, skipped, warnings) = try await run(
                source: source, destination: destination, sourceCase: sourceCase, selection: selection, jobID: jobID, options: options)
            let documents = try await documentMappings(destination, jobID: jobID, tables: destinationTables)
            let mapSize = try await destination.query("SELECT count(*) AS n FROM exchange_id_map WHERE job_id = $1", [.text(jobID)])
                .first?["n"].int ?? 0
            await source.close()
            await destination.close()
            let elapsed = ContinuousClock.now - started
            let report = CaseCopyReport(
                jobID: jobID, sourceCaseID: sourceCase, destinationCaseID: destinationCase, tables: tables, idMapSize: mapSize,
                documents: documents, excludedDocuments: excluded, notFoundDocumentIDs: notFound, skippedDocuments: skipped, warnings: warnings,
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            for warning in warnings {
                logger.warning("copy warning", metadata: ["jobId": "\(jobID)", "warning": "\(warning)"])
            }
            if !notFound.isEmpty {
                logger.warning("requested documents not in the source case", metadata: [
                    "jobId": "\(jobID)", "sourceCaseId": "\(sourceCase)", "count": "\(notFound.count)",
                    "sourceDocumentIds": "\(notFound.prefix(100).map(String.init).joined(separator: ","))",
                ])
            }
            if !skipped.isEmpty {
                logger.info("documents an earlier exchange delivered were skipped", metadata: [
                    "jobId": "\(jobID)", "sourceCaseId": "\(sourceCase)", "count": "\(skipped.count)",
                    "sourceDocumentIds": "\(skipped.prefix(100).map { String($0.sourceDocumentID) }.joined(separator: ","))",
                ])
            }
            for document in excluded {
                logger.warning("document not copied", metadata: [
                    "jobId": "\(jobID)", "sourceDocumentId": "\(document.sourceDocumentID)", "name": "\(document.name ?? "")",
                    "reason": "\(document.reason)",
                ])
            }
            logger.info("case data copied", metadata: [
                "jobId": "\(jobID)", "sourceCaseId": "\(sourceCase)", "caseId": "\(destinationCase)", "documents": "\(documents.count)",
                "insertedRows": "\(report.insertedRows)", "seconds": "\(report.seconds)",
            ])
            return report
        } catch {
            await source.close()
            await destination.close()
            if error is CancellationError {
                throw CaseDataError(.interrupted, "copy \(jobID) was cancelled; a re-run resumes at the first unfinished table")
            }
            throw CaseDatabases.wrap(error, "copy \(jobID)")
        }
    }

    // MARK: The run

    private func run(
        source: CaseSQLConnection, destination: CaseSQLConnection, sourceCase: Int64, selection: CaseDocumentSelection, jobID: String,
        options: CaseCopyOptions
    ) async throws
        -> ([CaseCopyTableReport], Set<String>, [CaseExcludedDocument], [Int64], [CaseSkippedDocument], [String])
    {
        let kind = source.kind
        try await destination.execute(kind == .postgres ? CaseSchema.postgresV2 : CaseSchema.sqliteV2)
        try await destination.execute(kind == .postgres ? CaseSchema.postgresV4 : CaseSchema.sqliteV4)
        if let reuse = options.reuseIDsOf { try await Self.checkReuse(destination, reuse: reuse, jobID: jobID, sourceCase: sourceCase) }
        let sourceCatalog = try await CaseCatalog.load(source)
        let destinationCatalog = try await CaseCatalog.load(destination)
        var extraEdges: [(String, String)] = []
        for table in sourceCatalog.tables.values where table.columns.contains(settings.confidentialityBitmaskColumn) {
            extraEdges.append((settings.confidentialityTable, table.name))
        }
        let plan = try CopyPlan.make(
            catalog: sourceCatalog, root: settings.rootTable, excluded: CaseSchema.bookkeepingTables, extraEdges: extraEdges)
        var shapes: [String: TableShape] = [:]
        for (index, name) in plan.order.enumerated() {
            guard let table = plan.tables[name], let primaryKey = table.primaryKey else { continue }
            guard let target = destinationCatalog.tables[name] else {
                throw CaseDataError(.invalidSchema, "the destination case has no table '\(name)' (migrate it first)")
            }
            let sourceColumns = Set(table.columns)
            let columns = target.columns.filter { sourceColumns.contains($0) }
            guard columns.contains(primaryKey) else {
                throw CaseDataError(.invalidSchema, "the destination table '\(name)' has no column '\(primaryKey)'")
            }
            let keys = table.foreignKeys.filter { key in
                columns.contains(key.column) && plan.tables[key.referencedTable]?.primaryKey == key.referencedColumn
            }
            shapes[name] = TableShape(
                name: name, index: index, primaryKey: primaryKey, columns: columns, foreignKeys: keys,
                downward: plan.downward.contains(name))
        }
        let finished = Dictionary(
            try await destination.query("SELECT table_name, rows FROM exchange_copy_checkpoints WHERE job_id = $1", [.text(jobID)])
                .compactMap { row in row["table_name"].string.map { ($0, row["rows"].int ?? 0) } },
            uniquingKeysWith: { first, _ in first })
        let order = plan.order
        let shapesByTable = shapes
        let hasPostCopyStep = finished[Self.postCopyStep] != nil
        let destinationTables = Set(destinationCatalog.tables.keys)
        // The documents to skip: recorded by the job's first run (a re-run keeps its choice), or
        // chosen now among the ones earlier jobs delivered.
        let recordedSkips = try await Self.skippedDocuments(destination, jobID: jobID)
        let skipCandidates: [Int64: CaseSkippedDocument]
        if options.skipExchanged, recordedSkips.isEmpty, finished.isEmpty {
            skipCandidates = try await deliveredEarlier(destination, sourceCase: sourceCase, jobID: jobID)
        } else {
            skipCandidates = [:]
        }

        let body: @Sendable (CaseSQLConnection) async throws
            -> ([CaseCopyTableReport], [CaseExcludedDocument], [Int64], [CaseSkippedDocument], [String]) = { source in
            let shapes = shapesByTable
            var counts = try await select(source: source, order: order, shapes: shapes, selection: selection, excluding: [])
            guard let root = shapes[settings.rootTable] else { throw CaseDataError(.invalidSchema, "no table '\(settings.rootTable)'") }
            // The selected root ids, read only when something needs them: a label or folder of
            // 100,000 documents with nothing to skip does not pay for it.
            var requested: [Int64]?
            if case .documentIDs(let ids) = selection { requested = ids }
            let present: Set<Int64> = requested == nil && skipCandidates.isEmpty && recordedSkips.isEmpty
                ? []
                : Set(try await source.query("SELECT id FROM \(root.selection)").compactMap { $0["id"].int64 })
            // Requested ids the source does not have (the root selection holds the ones it has).
            let notFound = requested.map { Set($0).subtracting(present).sorted() } ?? []
            // Documents an earlier job delivered (skipExchanged): left out, and recorded before
            // anything is written, so a re-run of the job skips the same ones.
            let skipped = recordedSkips.isEmpty
                ? present.sorted().compactMap { skipCandidates[$0] }
                : recordedSkips.filter { present.contains($0.sourceDocumentID) }
            if !skipped.isEmpty {
                if recordedSkips.isEmpty {
                    try await Self.recordSkips(destination, skipped, jobID: jobID, sourceCase: sourceCase)
                }
                counts = try await select(
                    source: source, order: order, shapes: shapes, selection: selection, excluding: skipped.map(\.sourceDocumentID))
            }
            // References to rows the source does not have: their documents are left out, by name.
            let excluded = try await brokenReferences(source: source, order: order, shapes: shapes)
            if !excluded.isEmpty {
                counts = try await select(
                    source: source, order: order, shapes: shapes, selection: selection,
                    excluding: skipped.map(\.sourceDocumentID) + excluded.map(\.sourceDocumentID))
                let left = try await brokenReferences(source: source, order: order, shapes: shapes)
                guard left.isEmpty else {
                    throw CaseDataError(.inconsistentSource, "nothing was copied: \(left.map(\.reason).joined(separator: "; "))")
                }
            }
            if !hasPostCopyStep { try await checkMergeConflicts(source: source, destination: destination, shapes: shapes) }
            let warnings = try await uncodedBits(source: source, order: order, shapes: shapes)
            var reports: [CaseCopyTableReport] = []
            var remap: BitRemap?
            for name in order {
                guard let shape = shapes[name] else { continue }
                try Task.checkCancellation()
                let selected = counts[name] ?? 0
                if finished[name] != nil {
                    reports.append(CaseCopyTableReport(table: name, selectedRows: selected, insertedRows: 0, resumed: true))
                    continue
                }
                if shape.columns.contains(settings.confidentialityBitmaskColumn), remap == nil {
                    remap = try await bitRemap(source: source, destination: destination, jobID: jobID, available: shapes[settings.confidentialityTable] != nil)
                }
                let inserted = try await copyTable(
                    shape, shapes: shapes, source: source, destination: destination, jobID: jobID, selected: selected, remap: remap,
                    reuse: options.reuseIDsOf)
                logger.debug("table copied", metadata: ["jobId": "\(jobID)", "table": "\(name)", "selected": "\(selected)", "inserted": "\(inserted)"])
                reports.append(CaseCopyTableReport(table: name, selectedRows: selected, insertedRows: inserted, resumed: false))
                if let afterTable { try await afterTable(name, inserted) }
            }
            if !hasPostCopyStep {
                try Task.checkCancellation()
                try await postCopy(
                    destination: destination, destinationTables: destinationTables, shapes: shapes, jobID: jobID, sourceCase: sourceCase,
                    position: order.count)
            }
            return (reports, excluded, notFound, skipped, warnings)
        }
        do {
            let (reports, excluded, notFound, skipped, warnings) = try await source.transaction(
                postgres: .repeatableRead, sqlite: .deferred, body)
            return (reports, destinationTables, excluded, notFound, skipped, warnings)
        } catch {
            // A finished job's rows are never removed (a re-run only reads them).
            guard !hasPostCopyStep, Self.undoes(error) else { throw error }
            var note: String
            do {
                let removed = try await undo(destination: destination, jobID: jobID, order: order, shapes: shapesByTable)
                logger.warning("failed copy undone", metadata: ["jobId": "\(jobID)", "removedRows": "\(removed)", "error": "\(error)"])
                note = " (the rows this job had written to the destination were removed)"
            } catch let undoError {
                logger.error("the undo of a failed copy failed", metadata: ["jobId": "\(jobID)", "error": "\(undoError)"])
                note = " (removing the rows this job had written failed: \(undoError))"
            }
            if var failure = error as? CaseDataError {
                failure.message += note
                throw failure
            }
            if let failure = error as? DatabaseError {
                throw CaseDataError(.database, "copy \(jobID): \(failure.description)\(note)", underlying: failure)
            }
            throw error
        }
    }

    /// The job's documents with their new exhibit and their files, by source id.
    private func documentMappings(_ destination: CaseSQLConnection, jobID: String, tables: Set<String>) async throws -> [CaseDocumentMapping] {
        let q = CaseSQLConnection.quote
        let binds: [SQLValue] = [.text(jobID), .text(settings.rootTable)]
        // One pass with hash joins: correlated subqueries looked the map up by new_id, which no
        // index covers (13 s for 10,000 documents instead of 0.1 s).
        let hasExhibits = tables.contains(settings.exhibitTable)
        let hasBatches = tables.contains("batches")
        var ctes: [String] = []
        var joins: [String] = []
        if hasExhibits {
            ctes.append("e AS (SELECT document_id, min(id) AS id FROM \(q(settings.exhibitTable)) GROUP BY document_id)")
            // The source document's exhibit, back through the id map (for its source engine id).
            ctes.append("xm AS (SELECT new_id, min(old_id) AS old_id FROM exchange_id_map WHERE job_id = $1 AND table_name = '\(settings.exhibitTable)' GROUP BY new_id)")
            joins.append("LEFT JOIN e ON e.document_id = m.new_id LEFT JOIN xm ON xm.new_id = e.id")
        }
        if hasBatches {
            ctes.append("bm AS (SELECT new_id, min(old_id) AS old_id FROM exchange_id_map WHERE job_id = $1 AND table_name = 'batches' GROUP BY new_id)")
            joins.append("LEFT JOIN \(q(settings.rootTable)) d ON d.id = m.new_id LEFT JOIN bm ON bm.new_id = d.batch_id")
        }
        let columns = [
            hasExhibits ? "e.id AS exhibit_id" : "NULL AS exhibit_id",
            hasExhibits ? "xm.old_id AS source_exhibit_id" : "NULL AS source_exhibit_id",
            hasBatches ? "bm.old_id AS source_batch_id" : "NULL AS source_batch_id",
        ]
        let with = ctes.isEmpty ? "" : "WITH " + ctes.joined(separator: ", ") + " "
        var mappings = try await destination.query(
            with + "SELECT m.old_id, m.new_id, \(columns.joined(separator: ", ")) FROM exchange_id_map m \(joins.joined(separator: " ")) "
                + "WHERE m.job_id = $1 AND m.table_name = $2 ORDER BY m.old_id",
            binds
        ).map {
            CaseDocumentMapping(
                sourceDocumentID: $0["old_id"].int64 ?? 0, destinationDocumentID: $0["new_id"].int64 ?? 0,
                destinationExhibitID: $0["exhibit_id"].int64, files: [], sourceExhibitID: $0["source_exhibit_id"].int64,
                sourceBatchID: $0["source_batch_id"].int64)
        }
        guard tables.contains(settings.variantTable) else { return mappings }
        var files: [Int64: [CaseDocumentFile]] = [:]
        for row in try await destination.query("""
            SELECT v.document_id, v.file_name, v.variant_type FROM \(q(settings.variantTable)) v
            JOIN exchange_id_map m ON m.job_id = $1 AND m.table_name = $2 AND m.new_id = v.document_id
            ORDER BY v.document_id, v.id
            """, binds)
        {
            guard let document = row["document_id"].int64, let name = row["file_name"].string else { continue }
            files[document, default: []].append(CaseDocumentFile(name: name, variant: row["variant_type"].string ?? ""))
        }
        for index in mappings.indices { mappings[index].files = files[mappings[index].destinationDocumentID] ?? [] }
        return mappings
    }

    // MARK: The ledger (`exchange_documents`)

    /// The skips the job recorded in an earlier run, by source id.
    private static func skippedDocuments(_ destination: CaseSQLConnection, jobID: String) async throws -> [CaseSkippedDocument] {
        try await destination.query("""
            SELECT source_document_id, destination_document_id, earlier_job_id FROM exchange_documents
            WHERE job_id = $1 AND outcome = 'skipped' ORDER BY source_document_id
            """, [.text(jobID)]
        ).compactMap { row in
            guard let source = row["source_document_id"].int64, let destination = row["destination_document_id"].int64 else { return nil }
            return CaseSkippedDocument(sourceDocumentID: source, destinationDocumentID: destination, earlierJobID: row["earlier_job_id"].string ?? "")
        }
    }

    /// Source documents of `sourceCase` that another job delivered into this case and whose
    /// destination document still exists; the earliest delivery per document.
    private func deliveredEarlier(_ destination: CaseSQLConnection, sourceCase: Int64, jobID: String) async throws -> [Int64: CaseSkippedDocument] {
        let q = CaseSQLConnection.quote
        var result: [Int64: CaseSkippedDocument] = [:]
        for row in try await destination.query("""
            SELECT e.source_document_id, e.destination_document_id, e.job_id FROM exchange_documents e
            JOIN \(q(settings.rootTable)) d ON d.id = e.destination_document_id
            WHERE e.source_case_id = $1 AND e.outcome = 'delivered' AND e.job_id <> $2
            ORDER BY e.source_document_id, e.updated_at DESC, e.job_id
            """, [.integer(sourceCase), .text(jobID)])
        {
            guard let source = row["source_document_id"].int64, let target = row["destination_document_id"].int64,
                let job = row["job_id"].string, result[source] == nil
            else { continue }
            result[source] = CaseSkippedDocument(sourceDocumentID: source, destinationDocumentID: target, earlierJobID: job)
        }
        return result
    }

    /// Records the job's skips (one transaction; a second call adds nothing).
    private static func recordSkips(_ destination: CaseSQLConnection, _ skipped: [CaseSkippedDocument], jobID: String, sourceCase: Int64) async throws {
        try await destination.transaction { destination in
            for document in skipped {
                try await destination.query("""
                    INSERT INTO exchange_documents (job_id, source_case_id, source_document_id, destination_document_id, outcome, earlier_job_id)
                    VALUES ($1, $2, $3, $4, 'skipped', $5) ON CONFLICT DO NOTHING
                    """, [
                        .text(jobID), .integer(sourceCase), .integer(document.sourceDocumentID), .integer(document.destinationDocumentID),
                        .text(document.earlierJobID),
                    ])
            }
        }
    }

    /// A job's id map may be reused only by another job, and only for the same source case: the
    /// ledger says where the job copied from (a job without ledger rows has nothing to reuse).
    private static func checkReuse(_ destination: CaseSQLConnection, reuse: String, jobID: String, sourceCase: Int64) async throws {
        guard reuse != jobID, !reuse.isEmpty else {
            throw CaseDataError(.invalidArgument, "job \(jobID) cannot reuse its own id map")
        }
        let cases = try await destination.query(
            "SELECT DISTINCT source_case_id FROM exchange_documents WHERE job_id = $1", [.text(reuse)]
        ).compactMap { $0["source_case_id"].int64 }
        guard !cases.isEmpty else {
            throw CaseDataError(.notFound, "job \(reuse) copied no documents into this case: there is no id map to reuse")
        }
        guard cases == [sourceCase] else {
            throw CaseDataError(
                .invalidArgument,
                "job \(reuse) copied from case \(cases.map(String.init).joined(separator: ", ")), not \(sourceCase): its id map does not apply")
        }
    }

    public func leftBehind(destinationCase: Int64, jobID: String) async throws -> [Int64] {
        let destination = try await databases.open(caseID: destinationCase)
        do {
            try await destination.execute(destination.kind == .postgres ? CaseSchema.postgresV4 : CaseSchema.sqliteV4)
            let ids = try await destination.query("""
                SELECT DISTINCT e.source_document_id FROM exchange_documents e
                WHERE e.job_id = $1 AND e.outcome IN ('failed', 'not_found')
                  AND NOT EXISTS (
                    SELECT 1 FROM exchange_documents l JOIN \(CaseSQLConnection.quote(settings.rootTable)) d ON d.id = l.destination_document_id
                    WHERE l.source_case_id = e.source_case_id AND l.source_document_id = e.source_document_id AND l.outcome = 'delivered')
                ORDER BY e.source_document_id
                """, [.text(jobID)]
            ).compactMap { $0["source_document_id"].int64 }
            await destination.close()
            return ids
        } catch {
            await destination.close()
            throw CaseDatabases.wrap(error, "left-behind documents of \(jobID)")
        }
    }

    /// Writes how the job's copied documents ended: `delivered` and `not_found` as given, every
    /// other `copied` row `failed`. Rows already past `copied` keep their outcome unless the new
    /// one is given for them (a repeated call changes nothing).
    /// - Returns: the ledger rows changed.
    public func recordOutcomes(destinationCase: Int64, jobID: String, outcomes: CaseDocumentOutcomes) async throws -> Int {
        let destination = try await databases.open(caseID: destinationCase)
        do {
            // A job copied by an older build has no ledger rows: nothing to change, and no error.
            try await destination.execute(destination.kind == .postgres ? CaseSchema.postgresV4 : CaseSchema.sqliteV4)
            let now = destination.kind == .postgres ? "now()" : CaseSchema.sqliteNow
            let changed = try await destination.transaction { destination in
                var changed = 0
                let rows = try await destination.query(
                    "SELECT destination_document_id, outcome FROM exchange_documents WHERE job_id = $1 AND outcome <> 'skipped'", [.text(jobID)])
                var wanted: [String: [Int64]] = [:]
                for row in rows {
                    guard let id = row["destination_document_id"].int64, let current = row["outcome"].string else { continue }
                    let outcome = outcomes.delivered.contains(id) ? "delivered" : outcomes.notFound.contains(id) ? "not_found" : "failed"
                    if outcome != current { wanted[outcome, default: []].append(id) }
                }
                for (outcome, ids) in wanted.sorted(by: { $0.key < $1.key }) {
                    for start in stride(from: 0, to: ids.count, by: 1000) {
                        let chunk = ids[start..<min(ids.count, start + 1000)].map(String.init).joined(separator: ", ")
                        changed += try await destination.update("""
                            UPDATE exchange_documents SET outcome = $2, updated_at = \(now)
                            WHERE job_id = $1 AND destination_document_id IN (\(chunk))
                            """, [.text(jobID), .text(outcome)])
                    }
                }
                return changed
            }
            await destination.close()
            if changed > 0 {
                logger.info("document outcomes recorded", metadata: [
                    "jobId": "\(jobID)", "caseId": "\(destinationCase)", "changed": "\(changed)",
                    "delivered": "\(outcomes.delivered.count)", "notFound": "\(outcomes.notFound.count)",
                ])
            }
            return changed
        } catch {
            await destination.close()
            throw CaseDatabases.wrap(error, "record outcomes of \(jobID)")
        }
    }

    // MARK: Selection (in the source snapshot)

    /// Fills one temporary table of selected primary keys per table; returns the counts.
    /// - Parameter excluding: root ids left out of the selection (and so everything below them).
    private func select(
        source: CaseSQLConnection, order: [String], shapes: [String: TableShape], selection: CaseDocumentSelection, excluding: [Int64]
    ) async throws -> [String: Int] {
        let postgres = source.kind == .postgres
        for name in order {
            guard let shape = shapes[name] else { continue }
            try await source.execute("DROP TABLE IF EXISTS \(postgres ? "" : "temp.")\(shape.selection)")
            try await source.execute("CREATE TEMP TABLE \(shape.selection) (id bigint PRIMARY KEY)\(postgres ? " ON COMMIT DROP" : "")")
        }
        guard let root = shapes[settings.rootTable] else { throw CaseDataError(.invalidSchema, "no table '\(settings.rootTable)'") }
        let q = CaseSQLConnection.quote
        switch selection {
        case .documentIDs(let ids):
            let unique = Array(Set(ids)).sorted()
            if postgres {
                try await source.query(
                    "INSERT INTO \(root.selection) (id) SELECT \(q(root.primaryKey)) FROM \(q(root.name)) WHERE \(q(root.primaryKey)) = ANY(CAST($1 AS bigint[]))",
                    [.text("{" + unique.map(String.init).joined(separator: ",") + "}")])
            } else {
                try await source.query(
                    "INSERT INTO \(root.selection) (id) SELECT \(q(root.primaryKey)) FROM \(q(root.name)) WHERE \(q(root.primaryKey)) IN (SELECT value FROM json_each($1))",
                    [.text("[" + unique.map(String.init).joined(separator: ",") + "]")])
            }
        case .labelID(let id):
            try await selectThroughLink(source: source, root: root, shapes: shapes, target: settings.labelTable, id: id)
        case .folderID(let id):
            try await selectThroughLink(source: source, root: root, shapes: shapes, target: settings.folderTable, id: id)
        }
        if !excluding.isEmpty {
            try await source.query("DELETE FROM \(root.selection) WHERE id IN (\(excluding.map(String.init).joined(separator: ", ")))")
        }
        // Below the root, parents first: a row whose every downward parent is selected.
        for name in order {
            guard let shape = shapes[name], shape.downward, name != root.name else { continue }
            let keys = shape.foreignKeys.filter { shapes[$0.referencedTable]?.downward == true && $0.referencedTable != name }
            guard !keys.isEmpty else { continue }
            let anyPresent = keys.map { "t.\(q($0.column)) IS NOT NULL" }.joined(separator: " OR ")
            let allSelected = keys.compactMap { key in
                shapes[key.referencedTable].map { "(t.\(q(key.column)) IS NULL OR t.\(q(key.column)) IN (SELECT id FROM \($0.selection)))" }
            }.joined(separator: " AND ")
            try await source.query(
                "INSERT INTO \(shape.selection) (id) SELECT t.\(q(shape.primaryKey)) FROM \(q(name)) t WHERE (\(anyPresent)) AND \(allSelected)")
        }
        // The confidentiality codes the selected bitmasks use.
        var mask: Int64 = 0
        for name in order {
            guard let shape = shapes[name], shape.downward, shape.columns.contains(settings.confidentialityBitmaskColumn) else { continue }
            let column = q(settings.confidentialityBitmaskColumn)
            for row in try await source.query(
                "SELECT DISTINCT t.\(column) AS v FROM \(q(name)) t WHERE t.\(q(shape.primaryKey)) IN (SELECT id FROM \(shape.selection))")
            {
                mask |= row["v"].int64 ?? 0
            }
        }
        // Parents the selected rows need, children first.
        for name in order.reversed() {
            guard let shape = shapes[name], !shape.downward else { continue }
            var branches: [String] = []
            for child in order {
                guard let childShape = shapes[child], child != name else { continue }
                for key in childShape.foreignKeys where key.referencedTable == name {
                    branches.append(
                        "SELECT t.\(q(key.column)) AS id FROM \(q(child)) t WHERE t.\(q(childShape.primaryKey)) IN (SELECT id FROM \(childShape.selection)) AND t.\(q(key.column)) IS NOT NULL"
                    )
                }
            }
            if name == settings.confidentialityTable, mask != 0 {
                branches.append(
                    "SELECT \(q(shape.primaryKey)) AS id FROM \(q(name)) WHERE ((CAST(\(mask) AS bigint) >> \(q(settings.confidentialityBitColumn))) & 1) = 1")
            }
            guard !branches.isEmpty else { continue }
            try await source.query(
                "INSERT INTO \(shape.selection) (id) SELECT DISTINCT u.id FROM (\(branches.joined(separator: " UNION "))) u")
        }
        var counts: [String: Int] = [:]
        for name in order {
            guard let shape = shapes[name] else { continue }
            counts[name] = try await source.query("SELECT count(*) AS n FROM \(shape.selection)").first?["n"].int ?? 0
        }
        return counts
    }

    // MARK: Broken references (before anything is written)

    /// The selected documents with a row (theirs or below them) referencing a row the source case
    /// does not have, each with every such reference. A broken reference in a row above the
    /// documents (a parent table) belongs to no document: it fails the copy with
    /// ``CaseDataError/Code/inconsistentSource``.
    private func brokenReferences(source: CaseSQLConnection, order: [String], shapes: [String: TableShape]) async throws
        -> [CaseExcludedDocument]
    {
        let q = CaseSQLConnection.quote
        guard let root = shapes[settings.rootTable] else { return [] }
        var reasons: [Int64: [String]] = [:]
        var unattributed: [String] = []
        for name in order {
            guard let shape = shapes[name] else { continue }
            let document = documentExpression(shape, alias: "t", shapes: shapes, depth: 0) ?? "NULL"
            for key in shape.foreignKeys where key.referencedTable != name {
                guard let parent = shapes[key.referencedTable] else { continue }
                let rows = try await source.query("""
                    SELECT \(document) AS doc, t.\(q(shape.primaryKey)) AS id, CAST(t.\(q(key.column)) AS text) AS value
                    FROM \(q(name)) t
                    WHERE t.\(q(shape.primaryKey)) IN (SELECT id FROM \(shape.selection)) AND t.\(q(key.column)) IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM \(q(parent.name)) p WHERE p.\(q(parent.primaryKey)) = t.\(q(key.column)))
                    ORDER BY t.\(q(shape.primaryKey))
                    """)
                for row in rows {
                    let text = "\(name) row \(row["id"].int64 ?? 0): \(key.column) = \(row["value"].string ?? "?") references no \(parent.name) row"
                    if let doc = row["doc"].int64 { reasons[doc, default: []].append(text) } else { unattributed.append(text) }
                }
            }
        }
        guard unattributed.isEmpty else {
            throw CaseDataError(.inconsistentSource, "nothing was copied: " + unattributed.prefix(20).joined(separator: "; "))
        }
        guard !reasons.isEmpty else { return [] }
        var names: [Int64: String] = [:]
        if root.columns.contains(settings.rootNameColumn) {
            let hex = source.kind == .postgres
                ? "upper(encode(convert_to(CAST(\(q(settings.rootNameColumn)) AS text), 'UTF8'), 'hex'))" : "hex(\(q(settings.rootNameColumn)))"
            for row in try await source.query(
                "SELECT \(q(root.primaryKey)) AS id, \(hex) AS name FROM \(q(root.name)) WHERE \(q(root.primaryKey)) IN (\(reasons.keys.map(String.init).joined(separator: ", ")))")
            {
                if let id = row["id"].int64, let name = row["name"].string { names[id] = Self.text(hex: name) }
            }
        }
        return reasons.keys.sorted().map { id in
            CaseExcludedDocument(sourceDocumentID: id, name: names[id], reason: (reasons[id] ?? []).joined(separator: "; "))
        }
    }

    /// SQL for the root id a row of `shape` (aliased `alias`) belongs to, following its foreign
    /// keys to tables below the root; nil for a table above the root.
    private func documentExpression(_ shape: TableShape, alias: String, shapes: [String: TableShape], depth: Int) -> String? {
        let q = CaseSQLConnection.quote
        if shape.name == settings.rootTable { return "\(alias).\(q(shape.primaryKey))" }
        guard shape.downward, depth < 16 else { return nil }
        let paths = shape.foreignKeys.compactMap { key -> String? in
            guard key.referencedTable != shape.name, let parent = shapes[key.referencedTable], parent.downward else { return nil }
            if parent.name == settings.rootTable { return "\(alias).\(q(key.column))" }
            let next = "a\(depth)"
            guard let inner = documentExpression(parent, alias: next, shapes: shapes, depth: depth + 1) else { return nil }
            return "(SELECT \(inner) FROM \(q(parent.name)) \(next) WHERE \(next).\(q(parent.primaryKey)) = \(alias).\(q(key.column)))"
        }
        switch paths.count {
        case 0: return nil
        case 1: return paths[0]
        default: return "coalesce(\(paths.joined(separator: ", ")))"
        }
    }

    // MARK: Confidentiality bits without a code

    /// One warning per table whose selected rows set confidentiality bits (0…63) that no code of
    /// the source case has: the remap goes by code name, so such bits are not carried over.
    private func uncodedBits(source: CaseSQLConnection, order: [String], shapes: [String: TableShape]) async throws -> [String] {
        let q = CaseSQLConnection.quote
        let column = settings.confidentialityBitmaskColumn
        var coded = Set<Int64>()
        if let codes = shapes[settings.confidentialityTable], codes.columns.contains(settings.confidentialityBitColumn) {
            coded = Set(try await source.query("SELECT \(q(settings.confidentialityBitColumn)) AS bit FROM \(q(codes.name))")
                .compactMap { $0["bit"].int64 })
        }
        var warnings: [String] = []
        for name in order {
            guard let shape = shapes[name], shape.downward, shape.columns.contains(column) else { continue }
            var rowsPerBit: [Int64: Int] = [:]
            for row in try await source.query("""
                SELECT t.\(q(column)) AS v, count(*) AS n FROM \(q(name)) t
                WHERE t.\(q(shape.primaryKey)) IN (SELECT id FROM \(shape.selection)) AND t.\(q(column)) <> 0 GROUP BY t.\(q(column))
                """)
            {
                guard let value = row["v"].int64 else { continue }
                for bit in Int64(0)...63 where (value >> bit) & 1 == 1 && !coded.contains(bit) {
                    rowsPerBit[bit, default: 0] += row["n"].int ?? 0
                }
            }
            guard !rowsPerBit.isEmpty else { continue }
            let bits = rowsPerBit.keys.sorted().map { "\($0) (\(rowsPerBit[$0] ?? 0) rows)" }.joined(separator: ", ")
            warnings.append("\(name).\(column): bits \(bits) have no confidentiality code in the source case and are not carried over")
        }
        return warnings
    }

    // MARK: Undo of a failed copy

    /// True for a failure a re-run of the job would not resume from: the job's rows are removed.
    /// Cancellation, connection loss and other transient failures, and errors of the table hook,
    /// keep them (a re-run resumes at the first unfinished table).
    static func undoes(_ error: any Error) -> Bool {
        switch error {
        case let error as CaseDataError:
            return error.code != .interrupted && !error.isTransient
        case let error as DatabaseError:
            return !error.isTransient
        default:
            return false
        }
    }

    /// Deletes, in one destination transaction, every row the job inserted (children first; not
    /// the rows it merged into), then its id map, checkpoints and undo record.
    /// - Returns: the rows deleted.
    private func undo(destination: CaseSQLConnection, jobID: String, order: [String], shapes: [String: TableShape]) async throws -> Int {
        let q = CaseSQLConnection.quote
        let postgres = destination.kind == .postgres
        return try await destination.transaction { destination in
            if postgres { try await destination.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7345102))", [.text(jobID)]) }
            var removed = 0
            for name in order.reversed() {
                guard let shape = shapes[name] else { continue }
                removed += try await destination.update("""
                    DELETE FROM \(q(name)) WHERE \(q(shape.primaryKey)) IN (
                        SELECT new_id FROM exchange_copy_inserted WHERE job_id = $1 AND table_name = $2)
                    """, [.text(jobID), .text(name)])
            }
            for table in ["exchange_copy_inserted", "exchange_id_map", "exchange_copy_checkpoints", "exchange_documents"] {
                try await destination.query("DELETE FROM \(table) WHERE job_id = $1", [.text(jobID)])
            }
            return removed
        }
    }

    // MARK: Conflicts (before anything is written)

    /// Fails with ``CaseDataError/Code/conflict`` when a selected row merged by name differs from
    /// the destination's row of that name in a column of ``CaseCopySettings/mergeMustAgree``, or
    /// when the source-exhibit-id field exists (in the destination, or among the selected rows) with
    /// another type than text. Names and values are compared as bytes (hex), in both dialects.
    private func checkMergeConflicts(source: CaseSQLConnection, destination: CaseSQLConnection, shapes: [String: TableShape]) async throws {
        let q = CaseSQLConnection.quote
        var conflicts: [String] = []
        for (table, mergeColumn) in settings.mergeByColumn.sorted(by: { $0.key < $1.key }) {
            guard let shape = shapes[table], shape.columns.contains(mergeColumn) else { continue }
            let agree = (settings.mergeMustAgree[table] ?? []).filter { shape.columns.contains($0) }
            let checksExhibitField = table == settings.customFieldTable && shape.columns.contains("field_type")
            guard !agree.isEmpty || checksExhibitField else { continue }
            let columns = [mergeColumn] + agree
            func hex(_ connection: CaseSQLConnection, _ column: String) -> String {
                connection.kind == .postgres
                    ? "upper(encode(convert_to(CAST(\(q(column)) AS text), 'UTF8'), 'hex'))" : "hex(\(q(column)))"
            }
            func read(_ connection: CaseSQLConnection, where condition: String) async throws -> [[String]] {
                let list = columns.enumerated().map { "\(hex(connection, $0.element)) AS c\($0.offset)" }.joined(separator: ", ")
                return try await connection.query("SELECT \(list) FROM \(q(table)) \(condition)").map { row in
                    columns.indices.map { row["c\($0)"].string ?? "" }
                }
            }
            let selected = try await read(source, where: "WHERE \(q(shape.primaryKey)) IN (SELECT id FROM \(shape.selection))")
            let existing = Dictionary(
                try await read(destination, where: "").map { ($0[0], $0) }, uniquingKeysWith: { first, _ in first })
            let exhibitField = Self.hexText(settings.sourceExhibitField)
            for row in selected {
                if let other = existing[row[0]] {
                    for (offset, column) in agree.enumerated() where row[offset + 1] != other[offset + 1] {
                        conflicts.append(
                            "\(table) '\(Self.text(hex: row[0]))' has \(column) '\(Self.text(hex: row[offset + 1]))' in the source and '\(Self.text(hex: other[offset + 1]))' in the destination")
                    }
                }
            }
            if checksExhibitField, let typeIndex = columns.firstIndex(of: "field_type") {
                let textType = Self.hexText("text")
                if let field = existing[exhibitField], field[typeIndex] != textType {
                    conflicts.append(Self.exhibitFieldConflict(settings, type: Self.text(hex: field[typeIndex])).message)
                } else if let field = selected.first(where: { $0[0] == exhibitField }), field[typeIndex] != textType {
                    conflicts.append(
                        "the source's custom field '\(settings.sourceExhibitField)' is of type '\(Self.text(hex: field[typeIndex]))'; the copy writes the source exhibit ids to a text field of that name (set EXCHANGER_CASE_COPY_SOURCE_EXHIBIT_FIELD to another name)")
                }
            }
        }
        guard conflicts.isEmpty else {
            throw CaseDataError(.conflict, "nothing was copied: " + conflicts.joined(separator: "; "))
        }
    }

    /// The conflict of an existing source-exhibit-id field of another type than text.
    static func exhibitFieldConflict(_ settings: CaseCopySettings, type: String?) -> CaseDataError {
        CaseDataError(
            .conflict,
            "the destination's custom field '\(settings.sourceExhibitField)' is of type '\(type ?? "?")'; the copy writes the source exhibit ids to a text field of that name (set EXCHANGER_CASE_COPY_SOURCE_EXHIBIT_FIELD to another name)")
    }

    /// Upper-case hex of a string's UTF-8 bytes.
    static func hexText(_ text: String) -> String {
        text.utf8.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }

    /// The text of hex-encoded bytes, for messages (bytes that are not UTF-8 shown as `X'…'`).
    static func text(hex: String) -> String {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex), index != hex.endIndex {
            if let byte = UInt8(hex[index..<next], radix: 16) { bytes.append(byte) }
            index = next
        }
        return String(validating: bytes, as: UTF8.self) ?? "X'\(hex)'"
    }

    /// Root rows linked to `target` row `id` through a table referencing both (label → documents).
    private func selectThroughLink(
        source: CaseSQLConnection, root: TableShape, shapes: [String: TableShape], target: String, id: Int64
    ) async throws {
        let q = CaseSQLConnection.quote
        let links = shapes.values.sorted { $0.name < $1.name }.compactMap { shape -> (TableShape, ForeignKey, ForeignKey)? in
            guard let toRoot = shape.foreignKeys.first(where: { $0.referencedTable == root.name }),
                let toTarget = shape.foreignKeys.first(where: { $0.referencedTable == target })
            else { return nil }
            return (shape, toRoot, toTarget)
        }
        guard let (link, toRoot, toTarget) = links.first else {
            throw CaseDataError(.invalidSchema, "no table links '\(root.name)' to '\(target)'")
        }
        try await source.query(
            "INSERT INTO \(root.selection) (id) SELECT DISTINCT l.\(q(toRoot.column)) FROM \(q(link.name)) l WHERE l.\(q(toTarget.column)) = $1",
            [.integer(id)])
    }

    // MARK: One table (one destination transaction)

    private func copyTable(
        _ shape: TableShape, shapes: [String: TableShape], source: CaseSQLConnection, destination: CaseSQLConnection, jobID: String,
        selected: Int, remap: BitRemap?, reuse: String?
    ) async throws -> Int {
        let q = CaseSQLConnection.quote
        let settings = self.settings
        let postgres = destination.kind == .postgres
        let columnList = shape.columns.map(q).joined(separator: ", ")
        let pk = q(shape.primaryKey)
        return try await destination.transaction { destination in
            // Two runs of one job take turns table by table; the later one skips what the other finished.
            if postgres { try await destination.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7345102))", [.text(jobID)]) }
            let done = try await destination.query(
                "SELECT 1 AS done FROM exchange_copy_checkpoints WHERE job_id = $1 AND table_name = $2", [.text(jobID), .text(shape.name)])
            guard done.isEmpty else { return 0 }
            var inserted = 0
            if selected > 0 {
                // 1. Stage the selected source rows.
                if postgres {
                    try await destination.execute(
                        "CREATE TEMP TABLE exch_stage ON COMMIT DROP AS SELECT \(columnList) FROM \(q(shape.name)) WITH NO DATA")
                    guard case .postgres(let from) = source, case .postgres(let to) = destination else {
                        throw CaseDataError(.invalidArgument, "mixed database kinds")
                    }
                    _ = try await CopyPipe.run(
                        from: from,
                        "COPY (SELECT \(columnList) FROM \(q(shape.name)) WHERE \(pk) IN (SELECT id FROM \(shape.selection))) TO STDOUT",
                        to: to, "COPY exch_stage (\(columnList)) FROM STDIN",
                        chunkBytes: settings.copyChunkBytes, bufferedChunks: settings.pipeChunks)
                    // Statistics for the joins below (a fresh temporary table has none).
                    try await destination.execute("ANALYZE exch_stage")
                } else {
                    try await destination.execute("DROP TABLE IF EXISTS temp.exch_stage")
                    try await destination.execute(
                        "CREATE TEMP TABLE exch_stage AS SELECT \(columnList), CAST(NULL AS TEXT) AS exch_text FROM main.\(q(shape.name)) WHERE 0")
                    try await stageSQLite(shape, source: source, destination: destination, batchRows: settings.sqliteBatchRows)
                    // Without it SQLite may drive the joins below from the id map and scan the stage per row.
                    try await destination.execute("CREATE UNIQUE INDEX temp.exch_stage_key ON exch_stage (\(pk))")
                }
                // 2. New ids: the one the reused job gave the row (a retry), else merged into an
                //    existing row of the same name, else the destination's next id.
                let mapBinds: [SQLValue] = [.text(jobID), .text(shape.name)]
                let unmapped = "NOT EXISTS (SELECT 1 FROM exchange_id_map m WHERE m.job_id = $1 AND m.table_name = $2 AND m.old_id = s.\(pk))"
                if let reuse {
                    try await destination.query("""
                        INSERT INTO exchange_id_map (job_id, table_name, old_id, new_id)
                        SELECT CAST($1 AS text), CAST($2 AS text), s.\(pk), r.new_id FROM exch_stage s
                        JOIN exchange_id_map r ON r.job_id = $3 AND r.table_name = $2 AND r.old_id = s.\(pk)
                        WHERE \(unmapped)
                        """, mapBinds + [.text(reuse)])
                }
                if let mergeColumn = settings.mergeByColumn[shape.name], shape.columns.contains(mergeColumn) {
                    try await destination.query("""
                        INSERT INTO exchange_id_map (job_id, table_name, old_id, new_id)
                        SELECT CAST($1 AS text), CAST($2 AS text), s.\(pk), min(d.\(pk)) FROM exch_stage s
                        JOIN \(q(shape.name)) d ON d.\(q(mergeColumn)) = s.\(q(mergeColumn))
                        WHERE \(unmapped) GROUP BY s.\(pk)
                        """, mapBinds)
                }
                if postgres {
                    let sequence = try await destination.query(
                        "SELECT pg_get_serial_sequence($1, $2) AS seq", [.text(q(shape.name)), .text(shape.primaryKey)]
                    ).first?["seq"].string
                    if let sequence {
                        try await destination.query("""
                            INSERT INTO exchange_id_map (job_id, table_name, old_id, new_id)
                            SELECT CAST($1 AS text), CAST($2 AS text), s.\(pk), nextval(CAST($3 AS regclass)) FROM exch_stage s WHERE \(unmapped)
                            """, mapBinds + [.text(sequence)])
                    } else {
                        try await destination.execute("LOCK TABLE \(q(shape.name)) IN SHARE ROW EXCLUSIVE MODE")
                        try await destination.query(Self.maxPlusOne(shape, unmapped: unmapped), mapBinds)
                    }
                } else {
                    try await destination.query(Self.maxPlusOne(shape, unmapped: unmapped), mapBinds)
                }
                // Fresh statistics for the map the joins below read: it grew by this table's rows in
                // this transaction, and with the statistics of its earlier size the planner picks
                // nested loops over sequential scans (13 s instead of 0.3 s for 20,000 variants).
                if postgres { try await destination.execute("ANALYZE exchange_id_map") }
                // 3. Column rules.
                var overrides: [String: String] = [:]
                for column in settings.clearedColumns[shape.name] ?? [] where shape.columns.contains(column) { overrides[column] = "NULL" }
                if shape.columns.contains(settings.confidentialityBitmaskColumn), let remap {
                    overrides[settings.confidentialityBitmaskColumn] = remap.expression("s.\(q(settings.confidentialityBitmaskColumn))")
                }
                if shape.name == settings.confidentialityTable, shape.columns.contains(settings.confidentialityBitColumn) {
                    try await assignBits(shape, destination: destination, jobID: jobID)
                    let bit = q(settings.confidentialityBitColumn)
                    overrides[settings.confidentialityBitColumn] = "coalesce((SELECT b.bit FROM exch_bits b WHERE b.old_id = s.\(pk)), s.\(bit))"
                }
                // 4. Insert through the id map.
                var joins = ["JOIN exchange_id_map k ON k.job_id = $1 AND k.table_name = $2 AND k.old_id = s.\(pk)"]
                var binds = mapBinds
                var keyAlias: [String: String] = [:]
                for (offset, key) in shape.foreignKeys.enumerated() {
                    binds.append(.text(key.referencedTable))
                    joins.append(
                        "LEFT JOIN exchange_id_map f\(offset) ON f\(offset).job_id = $1 AND f\(offset).table_name = $\(binds.count) AND f\(offset).old_id = s.\(q(key.column))")
                    keyAlias[key.column] = "f\(offset).new_id"
                }
                let expressions = shape.columns.map { column -> String in
                    if column == shape.primaryKey { return "k.new_id" }
                    if let alias = keyAlias[column] { return alias }
                    if let override = overrides[column] { return override }
                    return "s.\(q(column))"
                }
                // Every non-null reference must have been copied by this job. It fails only when the
                // source changed between two runs of the job (a resumed run reads a new snapshot)
                // or for a self-reference to a row the selection did not reach.
                for (offset, key) in shape.foreignKeys.enumerated() {
                    let missing = try await destination.query("""
                        SELECT count(*) AS n FROM exch_stage s
                        WHERE s.\(q(key.column)) IS NOT NULL AND NOT EXISTS (
                            SELECT 1 FROM exchange_id_map f WHERE f.job_id = $1 AND f.table_name = $2 AND f.old_id = s.\(q(key.column)))
                        """, [.text(jobID), binds[2 + offset]]).first?["n"].int ?? 0
                    if missing > 0 {
                        throw CaseDataError(
                            .inconsistentSource,
                            "\(missing) rows of \(shape.name) reference \(key.referencedTable) rows job \(jobID) did not copy (the source changed between runs?)")
                    }
                }
                // The undo record: the rows this insert creates (not the rows merged into).
                try await destination.query("""
                    INSERT INTO exchange_copy_inserted (job_id, table_name, new_id)
                    SELECT CAST($1 AS text), CAST($2 AS text), k.new_id FROM exch_stage s
                    JOIN exchange_id_map k ON k.job_id = $1 AND k.table_name = $2 AND k.old_id = s.\(pk)
                    WHERE NOT EXISTS (SELECT 1 FROM \(q(shape.name)) d WHERE d.\(pk) = k.new_id)
                    ON CONFLICT DO NOTHING
                    """, mapBinds)
                inserted = try await destination.update("""
                    INSERT INTO \(q(shape.name)) (\(columnList))
                    SELECT \(expressions.joined(separator: ", ")) FROM exch_stage s
                    \(joins.joined(separator: "\n"))
                    WHERE NOT EXISTS (SELECT 1 FROM \(q(shape.name)) d WHERE d.\(pk) = k.new_id)
                    ON CONFLICT DO NOTHING
                    """, binds)
                try await destination.query("""
                    DELETE FROM exchange_copy_inserted WHERE job_id = $1 AND table_name = $2
                      AND NOT EXISTS (SELECT 1 FROM \(q(shape.name)) d WHERE d.\(pk) = exchange_copy_inserted.new_id)
                    """, mapBinds)
                if postgres {
                    // The next tables (and the post-copy rules) join against this one: a table just
                    // filled has no statistics until autovacuum comes by.
                    try await destination.execute("ANALYZE \(q(shape.name))")
                } else {
                    try await destination.execute("DROP TABLE IF EXISTS temp.exch_stage")
                    try await destination.execute("DROP TABLE IF EXISTS temp.exch_bits")
                }
            }
            try await Self.checkpoint(destination, jobID: jobID, table: shape.name, position: shape.index, rows: inserted)
            return inserted
        }
    }

    /// SQLite, or a PostgreSQL table without a sequence: max(id) + row number.
    private static func maxPlusOne(_ shape: TableShape, unmapped: String) -> String {
        let q = CaseSQLConnection.quote
        let pk = q(shape.primaryKey)
        return """
            INSERT INTO exchange_id_map (job_id, table_name, old_id, new_id)
            SELECT CAST($1 AS text), CAST($2 AS text), s.\(pk),
                (SELECT coalesce(max(d.\(pk)), 0) FROM \(q(shape.name)) d) + row_number() OVER (ORDER BY s.\(pk))
            FROM exch_stage s WHERE \(unmapped)
            """
    }

    /// SQLite: reads the selected rows page by page (keyset on the primary key) into the stage.
    ///
    /// Values travel as the bytes the source holds: a text value is read as a blob
    /// (`CAST(c AS BLOB)`), a per-row mask column `exch_text` marks which cells were text, and one
    /// `UPDATE` turns those back with `CAST(… AS TEXT)`. So text that is not valid UTF-8 keeps its
    /// bytes (a Swift `String` could not hold them).
    private func stageSQLite(_ shape: TableShape, source: CaseSQLConnection, destination: CaseSQLConnection, batchRows: Int) async throws {
        let q = CaseSQLConnection.quote
        let pk = q(shape.primaryKey)
        let columnList = shape.columns.map(q).joined(separator: ", ")
        let selectList = shape.columns.map { "CASE WHEN typeof(\(q($0))) = 'text' THEN CAST(\(q($0)) AS BLOB) ELSE \(q($0)) END" }
            .joined(separator: ", ")
        let mask = shape.columns.map { "CASE WHEN typeof(\(q($0))) = 'text' THEN 't' ELSE 'f' END" }.joined(separator: " || ")
        let keyIndex = shape.columns.firstIndex(of: shape.primaryKey) ?? 0
        // One parameter per column and the mask; SQLite allows 32766 per statement.
        let parameters = shape.columns.count + 1
        let rowsPerInsert = max(1, min(batchRows, 32_000 / parameters))
        var last = Int64.min
        while true {
            let rows = try await source.query(
                "SELECT \(selectList), \(mask) FROM \(q(shape.name)) WHERE \(pk) IN (SELECT id FROM \(shape.selection)) AND \(pk) > $1 ORDER BY \(pk) LIMIT $2",
                [.integer(last), .integer(Int64(batchRows))])
            guard let final = rows.last else { break }
            last = final[keyIndex].int64 ?? Int64.max
            var start = 0
            while start < rows.count {
                let slice = rows[start..<min(rows.count, start + rowsPerInsert)]
                let placeholders = slice.indices.map { row in
                    "(" + (0..<parameters).map { "$\((row - start) * parameters + $0 + 1)" }.joined(separator: ", ") + ")"
                }.joined(separator: ", ")
                try await destination.query(
                    "INSERT INTO exch_stage (\(columnList), exch_text) VALUES \(placeholders)", slice.flatMap { Array($0.values) })
                start += rowsPerInsert
            }
            if rows.count < batchRows { break }
        }
        let restore = shape.columns.enumerated().map { offset, column in
            "\(q(column)) = CASE WHEN substr(exch_text, \(offset + 1), 1) = 't' THEN CAST(\(q(column)) AS TEXT) ELSE \(q(column)) END"
        }.joined(separator: ", ")
        try await destination.execute("UPDATE exch_stage SET \(restore) WHERE instr(exch_text, 't') > 0")
    }

    /// Bit positions for the confidentiality codes this job creates in the destination: the
    /// source's position when it is free there, else the lowest free one.
    private func assignBits(_ shape: TableShape, destination: CaseSQLConnection, jobID: String) async throws {
        let q = CaseSQLConnection.quote
        let pk = q(shape.primaryKey)
        let bit = q(settings.confidentialityBitColumn)
        let postgres = destination.kind == .postgres
        if !postgres { try await destination.execute("DROP TABLE IF EXISTS temp.exch_bits") }
        try await destination.execute("CREATE TEMP TABLE exch_bits (old_id bigint PRIMARY KEY, bit integer NOT NULL)\(postgres ? " ON COMMIT DROP" : "")")
        var used = Set(try await destination.query("SELECT \(bit) AS bit FROM \(q(shape.name))").compactMap { $0["bit"].int })
        let fresh = try await destination.query("""
            SELECT s.\(pk) AS old_id, s.\(bit) AS bit FROM exch_stage s
            JOIN exchange_id_map k ON k.job_id = $1 AND k.table_name = $2 AND k.old_id = s.\(pk)
            WHERE NOT EXISTS (SELECT 1 FROM \(q(shape.name)) d WHERE d.\(pk) = k.new_id)
            ORDER BY s.\(bit), s.\(pk)
            """, [.text(jobID), .text(shape.name)])
        var assigned: [(Int64, Int)] = []
        for row in fresh {
            guard let old = row["old_id"].int64 else { continue }
            var position = row["bit"].int ?? 0
            if used.contains(position) || !(0...62).contains(position) {
                guard let free = (0...62).first(where: { !used.contains($0) }) else {
                    throw CaseDataError(.invalidSchema, "the destination case has no free confidentiality bit (63 codes)")
                }
                position = free
            }
            used.insert(position)
            assigned.append((old, position))
        }
        for (old, position) in assigned {
            try await destination.query("INSERT INTO exch_bits (old_id, bit) VALUES ($1, $2)", [.integer(old), SQLValue(position)])
        }
    }

    /// Source bit → destination bit, by code name (the codes table is copied before any table
    /// carrying the bitmask).
    private func bitRemap(source: CaseSQLConnection, destination: CaseSQLConnection, jobID: String, available: Bool) async throws -> BitRemap {
        guard available else { return BitRemap(pairs: []) }
        let q = CaseSQLConnection.quote
        let table = q(settings.confidentialityTable)
        let bit = q(settings.confidentialityBitColumn)
        var sourceBits: [Int64: Int] = [:]
        for row in try await source.query("SELECT id, \(bit) AS bit FROM \(table)") {
            if let id = row["id"].int64, let position = row["bit"].int { sourceBits[id] = position }
        }
        var pairs: [(Int, Int)] = []
        for row in try await destination.query("""
            SELECT m.old_id, d.\(bit) AS bit FROM exchange_id_map m JOIN \(table) d ON d.id = m.new_id
            WHERE m.job_id = $1 AND m.table_name = $2
            """, [.text(jobID), .text(settings.confidentialityTable)])
        {
            if let old = row["old_id"].int64, let from = sourceBits[old], let to = row["bit"].int { pairs.append((from, to)) }
        }
        return BitRemap(pairs: pairs.sorted { $0.0 < $1.0 })
    }

    // MARK: Post-copy rules

    private func postCopy(
        destination: CaseSQLConnection, destinationTables: Set<String>, shapes: [String: TableShape], jobID: String, sourceCase: Int64,
        position: Int
    ) async throws {
        let settings = self.settings
        let q = CaseSQLConnection.quote
        try await destination.transaction { destination in
            // The ledger: each copied document, `copied` until the orchestrator records its outcome.
            try await destination.query("""
                INSERT INTO exchange_documents (job_id, source_case_id, source_document_id, destination_document_id, outcome)
                SELECT $1, CAST($2 AS bigint), m.old_id, m.new_id, 'copied' FROM exchange_id_map m WHERE m.job_id = $1 AND m.table_name = $3
                ON CONFLICT DO NOTHING
                """, [.text(jobID), .integer(sourceCase), .text(settings.rootTable)])
            if shapes[settings.exhibitTable] != nil, destinationTables.contains(settings.customFieldTable),
                destinationTables.contains(settings.customFieldValueTable)
            {
                let fields = q(settings.customFieldTable)
                let values = q(settings.customFieldValueTable)
                // The id as decimal text in a text field: a number field is a double, which holds
                // integers exactly only up to 2^53.
                let created = try await destination.update("""
                    INSERT INTO \(fields) (name, field_type) SELECT CAST($1 AS text), 'text'
                    WHERE NOT EXISTS (SELECT 1 FROM \(fields) WHERE name = $1)
                    """, [.text(settings.sourceExhibitField)])
                guard let row = try await destination.query(
                    "SELECT id, field_type FROM \(fields) WHERE name = $1", [.text(settings.sourceExhibitField)]).first,
                    let field = row["id"].int64
                else {
                    throw CaseDataError(.database, "the custom field '\(settings.sourceExhibitField)' could not be created")
                }
                guard row["field_type"].string == "text" else {
                    throw Self.exhibitFieldConflict(settings, type: row["field_type"].string)
                }
                if created > 0 {
                    try await destination.query(
                        "INSERT INTO exchange_copy_inserted (job_id, table_name, new_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        [.text(jobID), .text(settings.customFieldTable), .integer(field)])
                }
                let binds: [SQLValue] = [.text(jobID), .integer(field), .text(settings.exhibitTable)]
                try await destination.query("""
                    UPDATE \(values) SET text_value = (
                        SELECT CAST(m.old_id AS text) FROM exchange_id_map m
                        WHERE m.job_id = $1 AND m.table_name = $3 AND m.new_id = \(values).exhibit_id),
                        number_value = NULL, date_value = NULL
                    WHERE custom_field_id = $2
                      AND exhibit_id IN (SELECT m.new_id FROM exchange_id_map m WHERE m.job_id = $1 AND m.table_name = $3)
                    """, binds)
                try await destination.query("""
                    INSERT INTO \(values) (custom_field_id, exhibit_id, text_value)
                    SELECT CAST($2 AS bigint), m.new_id, CAST(m.old_id AS text) FROM exchange_id_map m
                    WHERE m.job_id = $1 AND m.table_name = $3
                      AND NOT EXISTS (SELECT 1 FROM \(values) v WHERE v.custom_field_id = $2 AND v.exhibit_id = m.new_id)
                    """, binds)
            }
            try await Self.checkpoint(destination, jobID: jobID, table: Self.postCopyStep, position: position, rows: 0)
        }
    }

    private static func checkpoint(_ destination: CaseSQLConnection, jobID: String, table: String, position: Int, rows: Int) async throws {
        let now = destination.kind == .postgres ? "now()" : CaseSchema.sqliteNow
        try await destination.query("""
            INSERT INTO exchange_copy_checkpoints (job_id, table_name, position, rows, finished_at) VALUES ($1, $2, $3, $4, \(now))
            ON CONFLICT (job_id, table_name) DO UPDATE SET rows = excluded.rows, finished_at = excluded.finished_at
            """, [.text(jobID), .text(table), SQLValue(position), SQLValue(rows)])
    }
}

/// The copy-relevant shape of one table.
struct TableShape: Sendable {
    var name: String
    /// Position in the copy order.
    var index: Int
    var primaryKey: String
    /// Columns both databases have, in the destination's order.
    var columns: [String]
    /// Foreign keys to copied tables' primary keys.
    var foreignKeys: [ForeignKey]
    /// Below the root table.
    var downward: Bool

    /// The source-session temporary table of selected primary keys.
    var selection: String { "exch_sel_\(index)" }
}

/// The confidentiality bitmask rewrite: each source bit moved to its destination bit.
struct BitRemap: Sendable {
    var pairs: [(Int, Int)]

    /// An SQL expression of `column` (same in both dialects; only integer literals).
    func expression(_ column: String) -> String {
        guard !pairs.isEmpty else { return "CAST(0 AS bigint)" }
        return "(" + pairs.map { "(((\(column) >> \($0.0)) & 1) << \($0.1))" }.joined(separator: " | ") + ")"
    }
}
