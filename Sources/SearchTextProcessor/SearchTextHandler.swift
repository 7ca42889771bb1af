import CaseData
import CaseDatabase
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import WorkerRuntime

/// Detail of DOCUMENT_INDEXED: a destination document's page texts are in the case's full-text index.
public struct DocumentIndexedDetail: Sendable, Hashable, Codable {
    public var sourceDocumentID: Int64?
    public var exhibitID: Int64?
    public var engineDocumentID: String
    /// Pages (attachment positions) indexed.
    public var pages: Int
    /// UTF-8 bytes of text indexed.
    public var bytes: Int

    enum CodingKeys: String, CodingKey {
        case sourceDocumentID = "sourceDocumentId", exhibitID = "exhibitId", engineDocumentID = "engineDocumentId", pages, bytes
    }

    public init(sourceDocumentID: Int64?, exhibitID: Int64?, engineDocumentID: String, pages: Int, bytes: Int) {
        self.sourceDocumentID = sourceDocumentID
        self.exhibitID = exhibitID
        self.engineDocumentID = engineDocumentID
        self.pages = pages
        self.bytes = bytes
    }
}

/// The search-text processor: indexes each document's page texts (written by re-OCR) in the
/// destination case database's full-text index (``SearchIndexStore``) and publishes
/// DOCUMENT_INDEXED.
///
/// The messages of a received batch are indexed together: their texts join one bulk write per
/// case (``BulkIndexWriter``, at most ``SearchTextSettings/bulkSize`` rows per statement), and a
/// failing bulk is retried message by message so a bad message never fails its neighbours.
///
/// Safe to run twice on the same message: rows are upserts keyed by (document id, position), a
/// page the document no longer has is removed, and DOCUMENT_INDEXED has a deterministic id.
///
/// Errors: a body that is not a search-text task, or a text object that is gone, are permanent; a
/// case without a database is permanent; unreachable databases and storage are recoverable.
public struct SearchTextHandler: MessageHandler {
    /// The `source` of the events this processor publishes.
    public static let eventSource = "exchanger-search-text"
    /// The program name of its queues.
    public static let program = "search-text"

    /// The case storage the page texts are read from.
    public let store: any ObjectStore
    /// The index.
    public let index: SearchIndexStore
    private let writer: BulkIndexWriter
    private let ownsStore: Bool

    /// - Parameters:
    ///   - bulkSize: most rows per bulk write.
    ///   - batchWindow: how long pending texts wait for the rest of the batch.
    ///   - ownsStore: whether ``shutdown()`` shuts `store` down (the index is always shut down).
    public init(
        store: any ObjectStore, index: SearchIndexStore, bulkSize: Int = SearchIndexStore.defaultBulkSize,
        batchWindow: Duration = SearchTextSettings.defaultBatchWindow, ownsStore: Bool = true
    ) {
        self.store = store
        self.index = index
        self.ownsStore = ownsStore
        self.writer = BulkIndexWriter(bulkSize: bulkSize, window: batchWindow) { entries, caseID in
            _ = try await index.write(entries, caseID: caseID)
        }
    }

    /// Bulk writes done so far (tests).
    public var bulkWrites: Int { get async { await writer.bulkWrites } }

    public func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let task = try SearchTextTask.decode(message.body)
        var entries: [SearchIndexEntry] = []
        var bytes = 0
        for page in task.pages.sorted(by: { $0.position < $1.position }) {
            let key: ObjectKey
            do {
                key = try ObjectKey(page.key)
            } catch {
                throw WorkerError.permanent("page \(page.position) of document \(task.documentID): \(error)")
            }
            let data: Data
            do {
                data = try await store.get(key)
            } catch let error as ObjectStorageError where error.code == .notFound {
                throw WorkerError.permanent("the text of page \(page.position) of document \(task.documentID) is gone: \(key)")
            }
            bytes += data.count
            entries.append(SearchIndexEntry(
                documentID: task.documentID, position: page.position, batchID: task.batchID, text: String(decoding: data, as: UTF8.self)))
        }
        do {
            if !entries.isEmpty { try await writer.write(entries, caseID: task.caseID) }
            // A document re-indexed with fewer pages keeps none of its old ones.
            let positions = task.pages.map(\.position)
            if positions.isEmpty || positions.max() == positions.count - 1 {
                try await index.removePages(documentID: task.documentID, from: positions.count, caseID: task.caseID)
            }
        } catch let error as CaseDatabaseError {
            throw Self.workerError(error, caseID: task.caseID)
        } catch let error as CaseDataError {
            throw WorkerError.recoverable("case \(task.caseID): \(error)")
        }
        let detail = DocumentIndexedDetail(
            sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, engineDocumentID: task.engineDocumentID,
            pages: entries.count, bytes: bytes)
        message.logger.debug("document indexed", metadata: ["pages": "\(entries.count)", "bytes": "\(bytes)"])
        return .success(Effects(events: [try task.event(.documentIndexed, source: Self.eventSource, detail: detail)]))
    }

    /// Closes the index's connections and (when owned) the store.
    public func shutdown() async {
        await index.shutdown()
        if ownsStore { try? await store.shutdown() }
    }

    static func workerError(_ error: CaseDatabaseError, caseID: Int64) -> WorkerError {
        switch error.code {
        case .notFound, .invalidCaseID, .invalidConfiguration: .permanent("case \(caseID): \(error.message)")
        // Unreachable, lost or failing statements: retried, bounded by the queue's max receive count.
        default: .recoverable("case \(caseID): \(error.message)")
        }
    }
}

/// Probed at start and while the store refuses access (``StorageAccessHold``).
extension SearchTextHandler: StorageBackedHandler {}
