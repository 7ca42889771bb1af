import Broker
import DocumentEngine
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import UploaderProcessor
import WorkerRuntime

/// The pre-uploader processor: for each document of an exchange with annotations, produces the
/// destination PDF and the layer the uploader ingests.
///
/// 1. The source PDF `case_{sourceCaseId}/documents/{sourceDocumentId}/{rendition}` must exist;
///    otherwise DOCUMENT_NOT_FOUND (stage `pre-uploader`) is published and nothing is retried.
/// 2. The source document's annotations (with their attachments) and comment threads come from the
///    source document engine, id `document_{sourceCaseId}_{sourceBatchId}_{sourceDocumentId}_{sourceExhibitId}`.
///    A task without a source batch (the id cannot be formed), a document the engine does not know,
///    and annotations that cannot be read are permanent failures of the document: it is
///    dead-lettered and counted as failed, never shipped as if it had no annotations.
/// 3. ``AnnotationSorter`` routes each kind by the task's ``DocumentTask/annotationRouting``;
///    brand_in kinds are flattened into the destination PDF by the engine (redactions first), the
///    result written at `case_{caseId}/documents/{documentId}/{rendition}`; layer kinds (and every
///    comment root) are written as an Instant JSON document at
///    ``DocumentEngineKeys/layerAnnotations(caseID:batchID:documentID:)``, stickers with their
///    images; comment threads at ``DocumentEngineKeys/commentThreads(caseID:batchID:documentID:)``.
/// 4. DOCUMENT_PRE_PROCESSED is published and the task sent to the uploader queue (route
///    `uploader`) in the transaction that acknowledges the message.
///
/// Safe to run twice: every object written is a function of the source (the flattening is
/// deterministic), a stale layer or thread file is removed when there is none, event ids are
/// deterministic, and the hand-off is sent with the acknowledgement, so once.
///
/// Errors: transient engine or storage failures are recoverable; 4xx, bad annotations, an engine
/// lacking what brand_in needs, and a malformed task are permanent.
public struct PreUploaderHandler: MessageHandler {
    /// The `source` of the events this processor publishes.
    public static let eventSource = "exchanger-pre-uploader"
    /// The program name of its queues.
    public static let program = "pre-uploader"

    /// The case storage (source and destination PDFs, layer and thread files).
    public let store: any ObjectStore
    /// The source document engine (it also builds the flattened PDFs).
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
        guard task.requiresAnnotations else {
            throw WorkerError.permanent("document \(task.sourceDocumentID): the pre-uploader only handles tasks with requiresAnnotations")
        }
        guard let rendition = task.files.first(where: { $0.kind == .rendition }) else {
            throw WorkerError.permanent("document \(task.sourceDocumentID) has no PDF rendition")
        }
        guard let uploaderQueue = task.routes[DocumentTask.Route.uploader] else {
            throw WorkerError.permanent("task of document \(task.sourceDocumentID) names no uploader queue (routes.uploader)")
        }
        for (kind, routing) in task.annotationRouting ?? [:] where DocumentTask.AnnotationKind(rawValue: kind) == nil || !["brand_in", "layer"].contains(routing) {
            throw WorkerError.permanent("task of document \(task.sourceDocumentID): annotationRouting '\(kind)': '\(routing)' is not a kind with brand_in or layer")
        }
        let sourceKey = try CaseKeys.documentFile(caseID: task.sourceCaseID, documentID: task.sourceDocumentID, fileName: rendition.name)
        let destinationKey = try CaseKeys.documentFile(caseID: task.caseID, documentID: task.documentID, fileName: rendition.name)
        // The source engine id is formed from the source's own batch, never from the destination's:
        // a wrong id would read another document's annotations, or none.
        guard let sourceBatchID = task.sourceBatchID else {
            throw WorkerError.permanent(
                "document \(task.sourceDocumentID): the source case gives it no batch, so its engine document id cannot be formed and its annotations cannot be read; it is not shipped without them")
        }
        let sourceID: EngineDocumentID
        do {
            sourceID = try EngineDocumentID(
                caseID: task.sourceCaseID, batchID: sourceBatchID, documentID: task.sourceDocumentID, exhibitID: task.sourceExhibitID)
        } catch {
            throw WorkerError.permanent("document \(task.sourceDocumentID): its engine document id cannot be formed: \(error)")
        }
        var logger = message.logger
        logger[metadataKey: "sourceEngineDocumentId"] = .string(sourceID.rawValue)

        let pdf: Data
        do {
            pdf = try await store.get(sourceKey)
        } catch let error as ObjectStorageError where error.code == .notFound {
            logger.warning("source PDF missing; skipped", metadata: ["missing": "\(sourceKey)"])
            let detail = DocumentNotFoundDetail(
                sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, missingKeys: [sourceKey.rawValue], stage: Self.program)
            return .success(Effects(events: [try task.event(.documentNotFound, source: Self.eventSource, detail: detail)]))
        }

        let annotations: InstantJSON
        let threads: [CommentThread]
        do {
            (annotations, threads) = try await (engine.annotations(sourceID), engine.commentThreads(sourceID))
        } catch let error as DocumentEngineError where error.code == .notFound {
            // Not "no annotations": a redaction the engine cannot be asked about must not be dropped.
            throw WorkerError.permanent(
                "source document \(sourceID) is not in the document engine: its annotations cannot be read, and the document is not shipped without them")
        } catch let error as DocumentEngineError {
            throw UploaderHandler.workerError(error, context: "annotations of \(sourceID)")
        }
        let sorted: AnnotationSorter.Sorted
        do {
            sorted = try AnnotationSorter.sort(annotations, task: task)
        } catch {
            throw WorkerError.permanent("annotations of \(sourceID): \(error)")
        }

        let destinationPDF: Data
        if sorted.brandIn.annotations.isEmpty {
            destinationPDF = pdf
        } else {
            do {
                destinationPDF = try await engine.buildFlattened(pdf: pdf, annotations: sorted.brandIn)
            } catch let error as DocumentEngineError {
                throw UploaderHandler.workerError(error, context: "brand_in of \(sourceID)")
            }
        }
        try await store.put(destinationKey, destinationPDF, contentType: "application/pdf")

        let layerKey = try DocumentEngineKeys.layerAnnotations(caseID: task.caseID, batchID: task.batchID, documentID: task.documentID)
        if sorted.layer.isEmpty {
            try await store.delete(layerKey)
        } else {
            try await store.put(layerKey, try sorted.layer.documentData(), contentType: "application/json")
        }
        let carried = threads.filter { sorted.commentRoots.contains($0.rootID) }
        let threadsKey = try DocumentEngineKeys.commentThreads(caseID: task.caseID, batchID: task.batchID, documentID: task.documentID)
        if carried.isEmpty {
            try await store.delete(threadsKey)
        } else {
            try await store.put(threadsKey, CommentThread.documentData(carried), contentType: "application/json")
        }

        let detail = DocumentPreProcessedDetail(
            sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, sourceEngineDocumentID: sourceID.rawValue,
            pdfKey: destinationKey.rawValue, brandedIn: sorted.brandedIn, layered: sorted.layered,
            layerAttachments: sorted.layer.attachments.count, commentThreads: carried.count, comments: carried.reduce(0) { $0 + $1.comments.count })
        logger.debug("document pre-processed", metadata: [
            "brandedIn": "\(sorted.brandIn.annotations.count)", "layered": "\(sorted.layer.annotations.count)", "threads": "\(carried.count)",
        ])
        return .success(Effects(
            events: [try task.event(.documentPreProcessed, source: Self.eventSource, detail: detail)],
            messages: [QueuedMessage(queue: uploaderQueue, try task.outgoing())]))
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
}

/// Probed at start and while the store refuses access (``StorageAccessHold``).
extension PreUploaderHandler: StorageBackedHandler {}
