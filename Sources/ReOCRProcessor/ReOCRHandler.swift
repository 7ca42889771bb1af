import DocumentEngine
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import UploaderProcessor
import WorkerRuntime

/// The re-OCR processor: for each DOCUMENT_UPLOADED event of its exchange (its queue is
/// subscribed to them, filtered on the destination case and batch), reads the text of every page
/// of the uploaded document from the destination document engine, writes it to
/// `case_{caseId}/processed-files/{batchId}/txt/{documentId}/attachments/{position}/content.txt`
/// (position = the page index) and sends a ``SearchTextTask`` to the search-text queue.
///
/// The search-text queue comes in the event: ``DocumentUploadedDetail/routes`` carries the
/// task's routes (`searchText`), so no queue name is reconstructed here.
///
/// Safe to run twice on the same message: the text files are rewritten with the same bytes and
/// the search-text message is sent in the transaction that deletes the input (``Effects``), so
/// it is sent once per acknowledged delivery.
///
/// Errors: a body that is not a DOCUMENT_UPLOADED event of this build, a document id that does not
/// parse, no search-text route, or an engine that no longer has the document (or cannot read its
/// text) are permanent; transient engine and storage errors are recoverable.
public struct ReOCRHandler: MessageHandler {
    /// The program name of its queues.
    public static let program = "re-ocr"

    /// The case storage the text files are written to.
    public let store: any ObjectStore
    /// The destination document engine.
    public let engine: any DocumentEngine
    private let ownsStore: Bool

    /// - Parameter ownsStore: whether ``shutdown()`` shuts `store` down (the engine is always shut down).
    public init(store: any ObjectStore, engine: any DocumentEngine, ownsStore: Bool = true) {
        self.store = store
        self.engine = engine
        self.ownsStore = ownsStore
    }

    public func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let envelope = try EventEnvelope.decode(message.body)
        guard envelope.eventType == .documentUploaded else {
            throw WorkerError.permanent("re-OCR consumes \(EventType.documentUploaded) events, not \(envelope.eventType)")
        }
        let detail: DocumentUploadedDetail
        do {
            detail = try envelope.detail(as: DocumentUploadedDetail.self)
        } catch {
            throw WorkerError.permanent("event \(envelope.eventID) has no DOCUMENT_UPLOADED detail: \(error)")
        }
        guard let jobID = envelope.jobID, let caseID = envelope.caseID, let batchID = envelope.batchID,
              let documentID = envelope.documentID
        else {
            throw WorkerError.permanent("event \(envelope.eventID) lacks jobId, caseId, batchId or documentId")
        }
        let engineID: EngineDocumentID
        do {
            engineID = try EngineDocumentID(parsing: detail.engineDocumentID)
        } catch {
            throw WorkerError.permanent("event \(envelope.eventID): \(error)")
        }
        guard engineID.caseID == caseID, engineID.batchID == batchID, engineID.documentID == documentID else {
            throw WorkerError.permanent("event \(envelope.eventID) names engine document \(engineID), not one of case \(caseID) batch \(batchID) document \(documentID)")
        }
        guard let searchTextQueue = detail.routes?[DocumentTask.Route.searchText], !searchTextQueue.isEmpty else {
            throw WorkerError.permanent("event \(envelope.eventID) names no search-text queue (detail.routes.searchText)")
        }

        let pageCount: Int
        do {
            pageCount = try await engine.pageCount(engineID)
        } catch let error as DocumentEngineError {
            throw Self.workerError(error, context: "page count of \(engineID)")
        }
        var pages: [SearchTextTask.Page] = []
        for pageIndex in 0..<pageCount {
            let text: String
            do {
                text = try await engine.pageText(engineID, pageIndex: pageIndex)
            } catch let error as DocumentEngineError {
                throw Self.workerError(error, context: "text of page \(pageIndex) of \(engineID)")
            }
            let key = try CaseKeys.attachmentText(caseID: caseID, batchID: batchID, documentID: documentID, position: pageIndex)
            let data = Data(text.utf8)
            // Storage errors keep their kind (WorkerError.classify): transient ones are retried.
            try await store.put(key, data, contentType: "text/plain; charset=utf-8")
            pages.append(SearchTextTask.Page(position: pageIndex, key: key.rawValue, bytes: data.count))
        }
        let task = SearchTextTask(
            jobID: jobID, sourceCaseID: envelope.sourceCaseID, caseID: caseID, batchID: batchID, documentID: documentID,
            sourceDocumentID: detail.sourceDocumentID, exhibitID: detail.exhibitID, engineDocumentID: engineID.rawValue, pages: pages,
            correlationID: envelope.correlationID)
        message.logger.debug("page texts written", metadata: ["engineDocumentId": "\(engineID)", "pages": "\(pages.count)"])
        return .success(Effects(messages: [QueuedMessage(queue: searchTextQueue, try task.outgoing())]))
    }

    /// With a ``CircuitBreakingEngine`` (as `exchanger-re-ocr` opens it), the worker stops receiving while its breaker is open.
    public var receiveGate: (any ReceiveGate)? {
        (engine as? CircuitBreakingEngine).map { EngineReceiveGate(breaker: $0.breaker) }
    }

    /// Shuts the engine and (when owned) the store down.
    public func shutdown() async {
        try? await engine.shutdown()
        if ownsStore { try? await store.shutdown() }
    }

    /// The engine error as the runtime's kind: transient → recoverable, everything else permanent.
    static func workerError(_ error: DocumentEngineError, context: String) -> WorkerError {
        error.isTransient ? .recoverable("\(context): \(error)") : .permanent("\(context): \(error)")
    }
}

/// Probed at start and while the store refuses access (``StorageAccessHold``).
extension ReOCRHandler: StorageBackedHandler {}
