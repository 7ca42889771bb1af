import DocumentEngine
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import WorkerRuntime

/// The uploader processor: ingests each destination PDF (with the layer annotations the
/// pre-uploader carried, if any) into the destination document engine and publishes
/// DOCUMENT_UPLOADED. It is the last stage of the no-annotation path and sends nothing on; with
/// annotations the re-OCR queue hears of the document through its subscription to DOCUMENT_UPLOADED
/// (filtered on the event's `caseId` and `batchId` attributes).
///
/// - The PDF is `case_{caseId}/documents/{documentId}/{rendition}` of the destination case; its
///   engine id is `document_{caseId}_{batchId}_{documentId}_{exhibitId}` (exhibit `0` when none).
/// - Layer annotations are read from ``DocumentEngineKeys/layerAnnotations(caseID:batchID:documentID:)``
///   when the task requires annotations; an absent file means none.
/// - A missing PDF publishes DOCUMENT_NOT_FOUND (stage `uploader`) and acknowledges the message.
/// - Transient engine or storage errors are retried (recoverable); anything else is permanent.
///
/// Safe to run twice on the same message: the engine's ingest is idempotent (the same content
/// changes nothing) and the event id is deterministic, so DOCUMENT_UPLOADED is stored once.
public struct UploaderHandler: MessageHandler {
    /// The `source` of the events this processor publishes.
    public static let eventSource = "exchanger-uploader"
    /// The program name of its queues.
    public static let program = "uploader"

    /// The case storage (destination PDFs, layer annotations).
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
        let task = try DocumentTask.decode(message.body)
        guard let rendition = task.files.first(where: { $0.kind == .rendition }) else {
            throw WorkerError.permanent("document \(task.sourceDocumentID) has no PDF rendition to upload")
        }
        let pdfKey = try CaseKeys.documentFile(caseID: task.caseID, documentID: task.documentID, fileName: rendition.name)
        let engineID: EngineDocumentID
        do {
            engineID = try EngineDocumentID(caseID: task.caseID, batchID: task.batchID, documentID: task.documentID, exhibitID: task.exhibitID)
        } catch {
            throw WorkerError.permanent("document \(task.sourceDocumentID): \(error)")
        }
        let logger = message.logger.with(["engineDocumentId": "\(engineID)"])
        let annotations = task.requiresAnnotations ? try await layerAnnotations(task) : .empty

        let result: IngestResult
        do {
            result = try await engine.ingest(engineID, pdf: .object(pdfKey), annotations: annotations)
        } catch let error as DocumentEngineError where error.code == .sourceNotFound {
            return try notFound(task, missing: [pdfKey.rawValue], logger: logger)
        } catch let error as DocumentEngineError {
            throw Self.workerError(error, context: "ingest \(engineID)")
        }
        if task.requiresAnnotations { try await commentThreads(task, engineID: engineID, logger: logger) }
        let detail = DocumentUploadedDetail(
            sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, engineDocumentID: engineID.rawValue, pdfKey: pdfKey.rawValue,
            bytes: result.document.bytes, sha256: result.document.sha256, annotations: result.document.annotationCount,
            attachments: result.document.attachments.count, outcome: result.outcome.rawValue,
            routes: task.routes.isEmpty ? nil : task.routes)
        logger.debug("document uploaded", metadata: [
            "bytes": "\(result.document.bytes)", "annotations": "\(result.document.annotationCount)", "outcome": "\(result.outcome.rawValue)",
        ])
        return .success(Effects(events: [try task.event(.documentUploaded, source: Self.eventSource, detail: detail)]))
    }

    /// With a ``CircuitBreakingEngine``, the worker stops receiving while its breaker is open.
    public var receiveGate: (any ReceiveGate)? {
        (engine as? CircuitBreakingEngine).map { EngineReceiveGate(breaker: $0.breaker) }
    }

    /// Shuts the engine and (when owned) the store down.
    public func shutdown() async {
        try? await engine.shutdown()
        if ownsStore { try? await store.shutdown() }
    }

    /// The engine error as the runtime's kind: transient → recoverable, everything else permanent.
    public static func workerError(_ error: DocumentEngineError, context: String) -> WorkerError {
        error.isTransient ? .recoverable("\(context): \(error)") : .permanent("\(context): \(error)")
    }

    /// Puts the comment threads the pre-uploader carried (``DocumentEngineKeys/commentThreads(caseID:batchID:documentID:)``)
    /// on the ingested document; no file means none. Comments already there are not added again.
    private func commentThreads(_ task: DocumentTask, engineID: EngineDocumentID, logger: Logger) async throws {
        let key = try DocumentEngineKeys.commentThreads(caseID: task.caseID, batchID: task.batchID, documentID: task.documentID)
        let data: Data
        do {
            data = try await store.get(key)
        } catch let error as ObjectStorageError where error.code == .notFound {
            return
        }
        let threads: [CommentThread]
        do {
            threads = try CommentThread.threads(document: data)
        } catch {
            throw WorkerError.permanent("comment threads \(key): \(error)")
        }
        do {
            try await engine.putCommentThreads(engineID, threads)
        } catch let error as DocumentEngineError {
            throw Self.workerError(error, context: "comments of \(engineID)")
        }
        logger.debug("comment threads added", metadata: ["threads": "\(threads.count)"])
    }

    private func layerAnnotations(_ task: DocumentTask) async throws -> InstantJSON {
        let key = try DocumentEngineKeys.layerAnnotations(caseID: task.caseID, batchID: task.batchID, documentID: task.documentID)
        let data: Data
        do {
            data = try await store.get(key)
        } catch let error as ObjectStorageError where error.code == .notFound {
            return .empty
        }
        do {
            return try InstantJSON(document: data)
        } catch {
            throw WorkerError.permanent("layer annotations \(key): \(error)")
        }
    }

    private func notFound(_ task: DocumentTask, missing: [String], logger: Logger) throws -> HandlerOutcome {
        logger.warning("destination PDF missing; not uploaded", metadata: ["missing": "\(missing)"])
        let detail = DocumentNotFoundDetail(
            sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, missingKeys: missing, stage: Self.program)
        return .success(Effects(events: [try task.event(.documentNotFound, source: Self.eventSource, detail: detail)]))
    }
}

extension Logger {
    fileprivate func with(_ metadata: Logger.Metadata) -> Logger {
        var copy = self
        for (key, value) in metadata { copy[metadataKey: key] = value }
        return copy
    }
}

/// Probed at start and while the store refuses access (``StorageAccessHold``).
extension UploaderHandler: StorageBackedHandler {}
