import Broker
import ExchangerEvents
import Logging
import ObjectStorage
import WorkerRuntime

/// The s3-copy processor: copies a document's files from the source case to the destination
/// case with server-side copies (nothing passes through this process).
///
/// - Without annotations it copies the PDF rendition (and the natives when asked), publishes
///   DOCUMENT_COPIED / NATIVE_DOCUMENT_COPIED and sends the task on to the uploader queue.
/// - With annotations the pre-uploader produces the destination PDF, so only natives are copied
///   here and nothing is sent on.
/// - When any source file is missing nothing is copied: DOCUMENT_NOT_FOUND is published, the
///   message is acknowledged and not retried.
///
/// Safe to run twice on the same message: copies overwrite with identical content, event ids are
/// deterministic, and the uploader message is sent in the transaction that deletes the input,
/// so it is sent once.
public struct S3CopyHandler: MessageHandler {
    /// The `source` of the events this processor publishes.
    public static let eventSource = "exchanger-s3-copy"
    /// The program name of its queues.
    public static let program = "s3-copy"

    public let store: any ObjectStore

    public init(store: any ObjectStore) { self.store = store }

    public func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let task = try DocumentTask.decode(message.body)
        let files = task.files.filter { file in
            switch file.kind {
            case .rendition: !task.requiresAnnotations
            case .native: task.includeNatives
            }
        }
        if !task.requiresAnnotations, !task.files.contains(where: { $0.kind == .rendition }) {
            throw WorkerError.permanent("document \(task.sourceDocumentID) has no PDF rendition to copy")
        }
        var uploaderQueue: String?
        if !task.requiresAnnotations {
            guard let queue = task.routes[DocumentTask.Route.uploader] else {
                throw WorkerError.permanent("task of document \(task.sourceDocumentID) names no uploader queue (routes.uploader)")
            }
            uploaderQueue = queue
        }

        let pairs = try files.map { file in
            (
                file: file,
                source: try CaseKeys.documentFile(caseID: task.sourceCaseID, documentID: task.sourceDocumentID, fileName: file.name),
                destination: try CaseKeys.documentFile(caseID: task.caseID, documentID: task.documentID, fileName: file.name)
            )
        }

        // Every source must exist before anything is copied: a document is copied whole or not at
        // all. (With one file the copy itself tells; nothing can be left half-copied.)
        if pairs.count > 1 {
            var missing: [String] = []
            for pair in pairs where !(try await store.exists(pair.source)) { missing.append(pair.source.rawValue) }
            if !missing.isEmpty { return try notFound(task, missing: missing, logger: message.logger) }
        }

        var events: [EventEnvelope] = []
        for pair in pairs {
            let bytes: Int64?
            do {
                bytes = try await store.quickCopy(from: pair.source, to: pair.destination)
            } catch let error as ObjectStorageError where error.code == .notFound {
                // Deleted between the check and the copy.
                return try notFound(task, missing: [pair.source.rawValue], logger: message.logger)
            }
            let detail = FileCopiedDetail(
                sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, fileName: pair.file.name,
                sourceKey: pair.source.rawValue, destinationKey: pair.destination.rawValue, bytes: bytes)
            switch pair.file.kind {
            case .rendition:
                events.append(try task.event(.documentCopied, source: Self.eventSource, detail: detail))
            case .native:
                events.append(try task.event(.nativeDocumentCopied, source: Self.eventSource, detail: detail, qualifier: pair.file.name))
            }
        }
        var messages: [QueuedMessage] = []
        if let uploaderQueue { messages.append(QueuedMessage(queue: uploaderQueue, try task.outgoing())) }
        message.logger.debug("document copied", metadata: ["files": "\(pairs.count)"])
        return .success(Effects(events: events, messages: messages))
    }

    /// Closes the store's connections.
    public func shutdown() async {
        try? await store.shutdown()
    }

    private func notFound(_ task: DocumentTask, missing: [String], logger: Logger) throws -> HandlerOutcome {
        logger.warning("source document missing; skipped", metadata: ["missing": "\(missing)"])
        let detail = DocumentNotFoundDetail(
            sourceDocumentID: task.sourceDocumentID, exhibitID: task.exhibitID, missingKeys: missing, stage: Self.program)
        return .success(Effects(events: [try task.event(.documentNotFound, source: Self.eventSource, detail: detail)]))
    }
}

/// Probed at start and while the store refuses access (``StorageAccessHold``).
extension S3CopyHandler: StorageBackedHandler {}
