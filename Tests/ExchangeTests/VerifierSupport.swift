import Broker
import CaseData
import CaseDatabase
import DatabaseSupport
import ExchangeFleet
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Logging
import ObjectStorage
import Orchestrator
import Testing

/// A finished exchange built without processes: seeded source and destination cases, the case
/// data copied by the engine, the PDF renditions copied in the store, the per-document events and
/// EXCHANGER_FINISHED published, and the exchange record walked to FINISHED.
struct BuiltExchange: Sendable {
    let broker: Broker
    let databases: CaseDatabases
    let store: FileObjectStore
    let jobID: String
    let request: ExchangeRequest
    let report: CaseCopyReport

    var verifier: ExchangeVerifier {
        ExchangeVerifier(broker: broker, caseDatabases: databases, store: store, logger: Logger(label: "test.verifier"))
    }

    /// Runs one of the test's own statements on a case database (`$n` placeholders).
    @discardableResult
    func caseSQL(_ caseID: Int64, _ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await runCaseSQL(databases, caseID, sql, binds)
    }

    /// Runs one of the test's own statements on the broker database (`$n` placeholders).
    @discardableResult
    func brokerSQL(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await broker.transaction { tx in
            try await tx.query(tx.dialect == .postgres ? sql : SQLPlaceholders.sqlite(sql), binds)
        }
    }

    /// The destination id of a copied row.
    func newID(_ table: String, _ old: Int64) async throws -> Int64 {
        try #require(
            try await caseSQL(
                request.destinationCaseID, "SELECT new_id FROM exchange_id_map WHERE job_id = $1 AND table_name = $2 AND old_id = $3",
                [.text(jobID), .text(table), .integer(old)]
            ).first?["new_id"].int64)
    }

    /// Some copied row of `table` (the smallest source id) as (old, new).
    func someRow(_ table: String) async throws -> (old: Int64, new: Int64) {
        let row = try #require(
            try await caseSQL(
                request.destinationCaseID,
                "SELECT old_id, new_id FROM exchange_id_map WHERE job_id = $1 AND table_name = $2 ORDER BY old_id LIMIT 1",
                [.text(jobID), .text(table)]
            ).first)
        return (try #require(row["old_id"].int64), try #require(row["new_id"].int64))
    }
}

/// Runs one statement on a case database (`$n` placeholders) through a pool of its own.
@discardableResult
func runCaseSQL(_ databases: CaseDatabases, _ caseID: Int64, _ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
    let pool = CaseDatabasePool(settings: try CaseDatabaseSettings(locator: databases.locator))
    do {
        let rows = try await pool.withConnection(caseID: caseID) { try await $0.query(sql, binds) }
        await pool.shutdown()
        return rows
    } catch {
        await pool.shutdown()
        throw error
    }
}

/// Changes a seeded source case before the copy: given the case databases and the source case id.
typealias SourcePreparation = @Sendable (_ databases: CaseDatabases, _ sourceCase: Int64) async throws -> Void

/// Builds a finished exchange of `documents` documents on `backend` and runs `body` with it;
/// everything is dropped afterwards. `prepareSource` runs on the seeded source case before the copy.
func withBuiltExchange<T: Sendable>(
    _ backend: Backend, documents: Int = 12, prepareSource: SourcePreparation? = nil, _ body: (BuiltExchange) async throws -> T
) async throws -> T {
    try await withTestBroker(backend) { broker, _ in
        try await withTemporaryDirectory { directory in
            let sourceCase = Int64.random(in: 100_000...899_999)
            let destinationCase = sourceCase + 1
            let prefix = "vfy_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
            let template: String
            switch backend {
            case .postgres: template = postgresURL(try TestEnvironment.postgresURL(), database: "{database}")
            case .sqlite: template = "sqlite://\(directory.path)/{database}.sqlite"
            }
            let databases = CaseDatabases(locator: try CaseDatabaseLocator(template: template, prefix: prefix))
            let store = FileObjectStore(directory: directory.appendingPathComponent("objects").path)
            do {
                let built = try await buildExchange(
                    broker: broker, databases: databases, store: store, sourceCase: sourceCase, destinationCase: destinationCase,
                    documents: documents, prepareSource: prepareSource)
                let result = try await body(built)
                try await databases.drop(caseID: sourceCase)
                try await databases.drop(caseID: destinationCase)
                return result
            } catch {
                try? await databases.drop(caseID: sourceCase)
                try? await databases.drop(caseID: destinationCase)
                throw error
            }
        }
    }
}

private func buildExchange(
    broker: Broker, databases: CaseDatabases, store: FileObjectStore, sourceCase: Int64, destinationCase: Int64, documents: Int,
    prepareSource: SourcePreparation?
) async throws -> BuiltExchange {
    let seeder = CaseSeeder(databases: databases, store: store)
    let seeded = try await seeder.seed(caseID: sourceCase, documents: documents, seed: 1)
    _ = try await CaseSeeder(databases: databases).seed(caseID: destinationCase, documents: 5, seed: 2)
    if let prepareSource { try await prepareSource(databases, sourceCase) }
    let first = try #require(seeded.firstDocumentID)
    let last = try #require(seeded.lastDocumentID)
    let ids = Array(first...last)
    let request = ExchangeRequest(sourceCaseID: sourceCase, destinationCaseID: destinationCase, batchID: 1, selection: .documents(ids))
    let exchangeStore = ExchangeStore(broker: broker)
    let record = try await exchangeStore.accept(request, idempotencyKey: "verifier-\(UUID().uuidString)").record
    let jobID = record.jobID
    var state = ExchangeState.accepted
    for next in ExchangeState.happyPath.dropFirst().dropLast() {
        try await exchangeStore.transition(jobID, from: state, to: next)
        state = next
    }
    let report = try await CaseDataCopier(databases: databases).copy(
        sourceCase: sourceCase, destinationCase: destinationCase, selection: .documentIDs(ids), jobID: jobID)
    var events: [TopicMessage] = []
    for document in report.documents {
        let task = DocumentTask(
            jobID: jobID, sourceCaseID: sourceCase, caseID: destinationCase, batchID: 1, sourceDocumentID: document.sourceDocumentID,
            documentID: document.destinationDocumentID, exhibitID: document.destinationExhibitID,
            files: document.files.filter { $0.variant == "pdf" }.map { DocumentFile(name: $0.name, kind: .rendition) })
        for file in task.files {
            let from = try CaseKeys.documentFile(caseID: sourceCase, documentID: document.sourceDocumentID, fileName: file.name)
            let to = try CaseKeys.documentFile(caseID: destinationCase, documentID: document.destinationDocumentID, fileName: file.name)
            let bytes = try await store.quickCopy(from: from, to: to)
            let detail = FileCopiedDetail(
                sourceDocumentID: document.sourceDocumentID, exhibitID: document.destinationExhibitID, fileName: file.name,
                sourceKey: from.rawValue, destinationKey: to.rawValue, bytes: bytes)
            events.append(try task.event(.documentCopied, source: "exchanger-s3-copy", detail: detail).topicMessage())
        }
        events.append(try task.event(.documentUploaded, source: "exchanger-uploader", detail: ["status": "SUCCESS"]).topicMessage())
    }
    let finished = try EventEnvelope(
        type: .exchangerFinished, source: "exchanger-orchestrator", jobID: jobID, caseID: destinationCase, sourceCaseID: sourceCase,
        batchID: 1, correlationID: jobID,
        detail: ExchangeStatusDetail(summary: ExchangeSummary(documents: ids.count, copied: report.documents.count, notFound: 0, failed: 0)))
    events.append(try finished.topicMessage())
    let messages = events
    try await broker.transaction { tx in
        var start = 0
        while start < messages.count {
            _ = try await tx.publishBatch(Array(messages[start..<min(messages.count, start + 5_000)]))
            start += 5_000
        }
        try await ExchangeStore(broker: broker).transition(in: tx, jobID, from: .draining, to: .finished)
    }
    return BuiltExchange(broker: broker, databases: databases, store: store, jobID: jobID, request: request, report: report)
}
