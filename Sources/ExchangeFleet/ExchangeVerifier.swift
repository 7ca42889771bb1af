import Broker
import CaseData
import CaseDatabase
import DatabaseSupport
import DocumentEngine
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import Orchestrator

/// The exact check of a finished exchange, for `exchanger run`, the end-to-end tests and the
/// exchange benchmark.
///
/// For one job it checks, reporting each deviation as a sentence instead of stopping at the first:
///
/// 1. **Rows.** The selection is recomputed from the source case (the documents of the request's
///    selection, the rows below them through the foreign keys, the parents they need and the
///    confidentiality codes their bitmasks use, exactly as ``CaseDataCopier`` walks the catalog).
///    The job's `exchange_id_map` in the destination must map exactly those rows, each once, and
///    each mapped destination row must equal its source row column by column, foreign keys
///    compared through the map, every other cell as the database holds it (PostgreSQL: type and
///    text output; SQLite: `typeof()` and `hex()`, a REAL to 17 digits), not as decoded; the copier's rules are checked as rules: the cleared columns
///    (`exhibits.document_properties`) are NULL, the confidentiality bitmask equals the source's
///    remapped by code, rows merged by name (label categories, folder tags, confidentiality codes,
///    custom fields) only need the same name, and every copied exhibit carries the source exhibit
///    id in the `Source Exhibit ID` text field, as decimal text compared exactly.
/// 2. **Files.** Each copied document's files the exchange copies (the PDF rendition without
///    annotations, natives when asked) exist under the destination key with the source's bytes
///    (size and streamed SHA-256), a few files at a time.
/// 3. **Events.** Per copied document exactly one event of each expected type (one per native file
///    for NATIVE_DOCUMENT_COPIED), no error events, exactly one EXCHANGER_FINISHED and no
///    EXCHANGER_FAILED. Documents with DOCUMENT_NOT_FOUND are counted, not reported.
/// 4. **Annotations** (exchanges with `requiresAnnotations`): per document the destination engine
///    document carries exactly the source's layer-routed annotations (with their attachments and
///    comment threads) and none of the brand_in kinds, its PDF changed where something was branded
///    in, and every page's text is stored and indexed (``checkAnnotations``).
/// 5. **Nothing left.** The exchange is FINISHED and no queue, subscription, deployment or worker of
///    it remains; its recorded resources are all marked removed.
///
/// Reads are batched (`IN` lists of ``Settings/batchRows`` ids), never one query per row.
public struct ExchangeVerifier: Sendable {
    /// Sizes of the verification, with defaults.
    public struct Settings: Sendable, Hashable {
        /// Problems listed before the rest is summarised as "… and N more problems" (50).
        public var maxProblems = 50
        /// Files hashed at the same time (8).
        public var fileConcurrency = 8
        /// Ids per `IN` list when reading rows (1000).
        public var batchRows = 1000
        /// The copy engine's settings the copy ran with (tables, merged tables, rules).
        public var copySettings = CaseCopySettings()
        /// The document engine an annotation exchange went through (source and destination
        /// documents), opened on the verifier's store (`local`).
        public var documentEngineURL = DocumentEngines.defaultURL
        /// The environment the engine is opened with (Nutrient token, AWS settings).
        public var environment: [String: String] = ProcessInfo.processInfo.environment

        /// The defaults.
        public init() {}
    }

    /// The broker holding the exchange's record, events, queues and deployments.
    public let broker: Broker
    /// The source and destination case databases.
    public let caseDatabases: CaseDatabases
    /// The object store holding both cases' files.
    public let store: any ObjectStore
    /// Sizes and rules.
    public var settings: Settings
    let logger: Logger

    /// A verifier reading through these connections.
    public init(broker: Broker, caseDatabases: CaseDatabases, store: any ObjectStore, logger: Logger) {
        self.init(broker: broker, caseDatabases: caseDatabases, store: store, settings: Settings(), logger: logger)
    }

    /// A verifier with explicit settings.
    public init(broker: Broker, caseDatabases: CaseDatabases, store: any ObjectStore, settings: Settings, logger: Logger) {
        self.broker = broker
        self.caseDatabases = caseDatabases
        self.store = store
        self.settings = settings
        self.logger = logger
    }

    /// The per-document event types an exchange of `request` publishes once per document:
    /// DOCUMENT_COPIED + DOCUMENT_UPLOADED without annotations, DOCUMENT_PRE_PROCESSED +
    /// DOCUMENT_UPLOADED + DOCUMENT_INDEXED with them, and NATIVE_DOCUMENT_COPIED (once per native file) when natives
    /// are included.
    public static func defaultDocumentEvents(for request: ExchangeRequest) -> [EventType] {
        var types: [EventType] = request.requiresAnnotations
            ? [.documentPreProcessed, .documentUploaded, .documentIndexed] : [.documentCopied, .documentUploaded]
        if request.includeNatives { types.append(.nativeDocumentCopied) }
        return types
    }

    /// Checks the exchange `jobID` (see the type's description).
    /// - Parameter expectedDocumentEvents: the event types each copied document must have exactly
    ///   once; nil for ``defaultDocumentEvents(for:)``.
    /// - Returns: the counts and every problem found.
    /// - Throws: ``ExchangeVerifierError``: `.notFound` when no exchange has the job id,
    ///   `.database` / `.storage` when a database or the store cannot be read.
    public func verify(jobID: String, expectedDocumentEvents: [EventType]? = nil) async throws -> ExchangeVerification {
        guard settings.maxProblems >= 1, settings.fileConcurrency >= 1, settings.batchRows >= 1 else {
            throw ExchangeVerifierError(.invalidArgument, "maxProblems, fileConcurrency and batchRows must be at least 1")
        }
        let started = ContinuousClock.now
        let record: ExchangeRecord
        do {
            guard let found = try await ExchangeStore(broker: broker).get(jobID) else {
                throw ExchangeVerifierError(.notFound, "no exchange has job id '\(jobID)'")
            }
            record = found
        } catch let error as ExchangeVerifierError {
            throw error
        } catch {
            throw ExchangeVerifierError(.database, "cannot read exchange \(jobID): \(error)")
        }
        var result = ExchangeVerification(jobID: jobID, state: record.state.description)
        var problems = ProblemList(limit: settings.maxProblems)
        if record.state != .finished {
            problems.add("the exchange is \(record.state), not FINISHED")
        }

        // Rows (and the document map the other checks use).
        let pool = CaseDatabasePool(
            settings: try CaseDatabaseSettingsValue(locator: caseDatabases.locator).make(), postgres: caseDatabases.postgresConfiguration,
            logger: logger)
        let rows: RowCheckOutcome
        do {
            rows = try await RowVerifier(settings: settings, jobID: jobID, request: record.request, pool: pool)
                .run(&problems)
            await pool.shutdown()
        } catch {
            await pool.shutdown()
            if let error = error as? ExchangeVerifierError { throw error }
            throw ExchangeVerifierError(.database, "exchange \(jobID): cannot read the case databases: \(error)")
        }
        result.documents = rows.documents.count
        result.rowsChecked = rows.rowsChecked
        result.documentsSkipped = rows.skipped
        result.warnings = rows.warnings
        result.tablesChecked = rows.tablesChecked

        // Events (which documents were not found decides which files are expected).
        let events: EventCheckOutcome
        do {
            events = try await checkEvents(
                jobID: jobID, documents: rows.documents, nativeFiles: rows.nativeFileNames,
                expected: expectedDocumentEvents ?? Self.defaultDocumentEvents(for: record.request), problems: &problems)
        } catch {
            throw ExchangeVerifierError(.database, "exchange \(jobID): cannot read the events: \(error)")
        }
        result.eventsChecked = events.rows
        result.documentsNotFound = events.notFound.count

        // Files.
        let files = try await checkFiles(record: record, files: rows.files, notFound: events.notFound, problems: &problems)
        result.filesChecked = files.files
        result.bytesChecked = files.bytes

        // Annotations, page texts and the full-text index (the annotation path).
        if record.request.requiresAnnotations {
            let engine: any DocumentEngine
            do {
                engine = try await DocumentEngines.open(
                    url: settings.documentEngineURL, caseStore: store, environment: settings.environment, logger: logger)
            } catch {
                throw ExchangeVerifierError(.storage, "exchange \(jobID): cannot open the document engine \(settings.documentEngineURL): \(error)")
            }
            do {
                let annotations = try await checkAnnotations(
                    record: record, documents: rows.documents, notFound: events.notFound, engine: engine, problems: &problems)
                try? await engine.shutdown()
                result.annotatedDocuments = annotations.documents
                result.layerAnnotationsChecked = annotations.layerAnnotations
                result.brandedInAnnotations = annotations.brandedIn
                result.pageTextsChecked = annotations.pageTexts
                result.indexedPagesChecked = annotations.indexedPages
                result.redactionsChecked = annotations.redactions
            } catch {
                try? await engine.shutdown()
                if let error = error as? ExchangeVerifierError { throw error }
                throw ExchangeVerifierError(.database, "exchange \(jobID): cannot check the annotations: \(error)")
            }
        }

        // Nothing left.
        do {
            try await checkLeftovers(jobID: jobID, problems: &problems)
        } catch {
            throw ExchangeVerifierError(.database, "exchange \(jobID): cannot read the broker's resources: \(error)")
        }

        result.problems = problems.final
        let elapsed = ContinuousClock.now - started
        result.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        logger.info("exchange verified", metadata: [
            "jobId": "\(jobID)", "exact": "\(result.isExact)", "problems": "\(problems.items.count + problems.dropped)",
            "documents": "\(result.documents)", "rows": "\(result.rowsChecked)", "files": "\(result.filesChecked)",
            "bytes": "\(result.bytesChecked)", "events": "\(result.eventsChecked)", "notFound": "\(result.documentsNotFound)",
            "seconds": "\(result.seconds)",
        ])
        return result
    }

    // MARK: Events

    struct EventCheckOutcome: Sendable {
        var rows: Int
        /// Destination document ids with DOCUMENT_NOT_FOUND.
        var notFound: Set<Int64>
    }

    /// Event types that mean a document failed in a stage.
    static let failureTypes: Set<EventType> = [.s3DocCopied, .preUploaderFinished, .uploaderFinished, .reOCRFinished, .searchTextFinished]

    private func checkEvents(
        jobID: String, documents: [Int64: Int64], nativeFiles: [Int64: [String]], expected: [EventType], problems: inout ProblemList
    ) async throws -> EventCheckOutcome {
        let rows = try await broker.transaction { tx in
            let postgres = tx.dialect == .postgres
            let (type, job, document, file) = postgres
                ? ("(attributes->'eventType'->>'value')", "(attributes->'jobId'->>'value')", "(body::jsonb->>'documentId')",
                   "(body::jsonb->'detail'->>'fileName')")
                : ("json_extract(attributes, '$.eventType.value')", "json_extract(attributes, '$.jobId.value')",
                   "CAST(json_extract(body, '$.documentId') AS TEXT)", "json_extract(body, '$.detail.fileName')")
            let sql = "SELECT event_id, \(type) AS t, \(document) AS doc, \(file) AS f FROM broker_events WHERE \(job) = $1 ORDER BY seq"
            return try await tx.query(postgres ? sql : SQLPlaceholders.sqlite(sql), [.text(jobID)])
        }
        // Destination document id → source id.
        var sourceOf: [Int64: Int64] = [:]
        for (old, new) in documents { sourceOf[new] = old }
        struct Key: Hashable { var type: String; var document: Int64; var qualifier: String? }
        var counts: [Key: [String]] = [:]
        var finished = 0
        var failed = 0
        var notFound: Set<Int64> = []
        for row in rows {
            let eventID = row["event_id"].string ?? "?"
            guard let type = row["t"].string else {
                problems.add("event \(eventID) of the job has no eventType attribute")
                continue
            }
            if type == EventType.exchangerFinished.rawValue { finished += 1 }
            if type == EventType.exchangerFailed.rawValue { failed += 1 }
            guard let document = row["doc"].int64 else { continue }
            if sourceOf[document] == nil {
                problems.add("event \(eventID) (\(type)) names document \(document), which the exchange's id map does not contain")
                continue
            }
            if Self.failureTypes.contains(EventType(type)) {
                problems.add("document \(document) (source \(sourceOf[document] ?? 0)) has the error event \(type) (\(eventID))")
            }
            if type == EventType.documentNotFound.rawValue { notFound.insert(document) }
            let qualifier = type == EventType.nativeDocumentCopied.rawValue ? row["f"].string : nil
            counts[Key(type: type, document: document, qualifier: qualifier), default: []].append(eventID)
        }
        if finished != 1 { problems.add("the job has \(finished) EXCHANGER_FINISHED events, not exactly one") }
        if failed > 0 { problems.add("the job has \(failed) EXCHANGER_FAILED event(s)") }
        // Duplicates of any per-document fact.
        for (key, ids) in counts.sorted(by: { ($0.key.document, $0.key.type) < ($1.key.document, $1.key.type) }) where ids.count > 1 {
            let what = key.qualifier.map { " for file \($0)" } ?? ""
            problems.add("document \(key.document) has \(ids.count) \(key.type) events\(what) (event ids \(ids.joined(separator: ", "))), not one")
        }
        // Missing ones.
        for (new, old) in sourceOf.sorted(by: { $0.key < $1.key }) where !notFound.contains(new) {
            for type in expected {
                if type == .nativeDocumentCopied {
                    for name in nativeFiles[old] ?? [] where counts[Key(type: type.rawValue, document: new, qualifier: name)] == nil {
                        problems.add("document \(new) (source \(old)) has no \(type.rawValue) event for file \(name)")
                    }
                } else if counts[Key(type: type.rawValue, document: new, qualifier: nil)] == nil {
                    problems.add("document \(new) (source \(old)) has no \(type.rawValue) event")
                }
            }
        }
        return EventCheckOutcome(rows: rows.count, notFound: notFound)
    }

    // MARK: Nothing left

    private func checkLeftovers(jobID: String, problems: inout ProblemList) async throws {
        let found = try await broker.transaction { tx in
            let postgres = tx.dialect == .postgres
            func run(_ sql: String) async throws -> [SQLRow] {
                try await tx.query(postgres ? sql : SQLPlaceholders.sqlite(sql), [.text(jobID)])
            }
            let queues = try await run("""
                SELECT name FROM broker_queues WHERE exchange_id = $1
                   OR name IN (SELECT name FROM exchange_resources WHERE job_id = $1 AND kind = 'queue' AND removed_at IS NULL)
                ORDER BY name
                """)
            let subscriptions = try await run("""
                SELECT s.id, s.topic, q.name FROM broker_subscriptions s JOIN broker_queues q ON q.id = s.queue_id
                WHERE q.exchange_id = $1
                   OR EXISTS (SELECT 1 FROM exchange_resources r WHERE r.job_id = $1 AND r.kind = 'subscription'
                              AND r.removed_at IS NULL AND r.name = q.name AND (r.detail IS NULL OR r.detail = s.topic))
                ORDER BY s.id
                """)
            let deployments = try await run("""
                SELECT id, program FROM exchanger_deployments WHERE exchange_id = $1
                   OR id IN (SELECT name FROM exchange_resources WHERE job_id = $1 AND kind = 'deployment')
                ORDER BY id
                """)
            let workers = try await run("""
                SELECT supervisor_id, program, instance, deployment_id, state FROM exchanger_workers
                WHERE deployment_id <> '' AND (deployment_id IN (SELECT id FROM exchanger_deployments WHERE exchange_id = $1)
                   OR deployment_id IN (SELECT name FROM exchange_resources WHERE job_id = $1 AND kind = 'deployment'))
                ORDER BY deployment_id, instance
                """)
            let resources = try await run("""
                SELECT kind, name FROM exchange_resources WHERE job_id = $1 AND removed_at IS NULL ORDER BY kind, name
                """)
            return (queues, subscriptions, deployments, workers, resources)
        }
        for row in found.0 { problems.add("queue \(row["name"].string ?? "?") of the exchange still exists") }
        for row in found.1 {
            problems.add("subscription \(row["id"].int64 ?? 0) of queue \(row["name"].string ?? "?") to topic \(row["topic"].string ?? "?") still exists")
        }
        for row in found.2 {
            problems.add("deployment \(row["id"].string ?? "?") (\(row["program"].string ?? "?")) of the exchange still exists")
        }
        for row in found.3 {
            problems.add("worker \(row["program"].string ?? "?")#\(row["instance"].int ?? 0) of deployment \(row["deployment_id"].string ?? "?") "
                + "(supervisor \(row["supervisor_id"].string ?? "?"), \(row["state"].string ?? "?")) still exists")
        }
        for row in found.4 {
            problems.add("resource \(row["kind"].string ?? "?") \(row["name"].string ?? "?") of the exchange is not marked removed")
        }
    }
}

/// Builds the pool settings (the locator was validated when `CaseDatabases` was made).
private struct CaseDatabaseSettingsValue {
    var locator: CaseDatabaseLocator
    func make() throws -> CaseDatabaseSettings {
        do {
            return try CaseDatabaseSettings(locator: locator, maxOpenConnections: 4)
        } catch {
            throw ExchangeVerifierError(.invalidArgument, "case databases: \(error)")
        }
    }
}
