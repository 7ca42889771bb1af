import Broker
import ExchangerEvents
import Foundation
import Logging

/// One document the case-data copy selected and copied: its id in the source case, its new id in
/// the destination case, and its files.
public struct CopiedDocument: Sendable, Hashable, Codable {
    /// The document's id in the source case.
    public var sourceDocumentID: Int64
    /// Its new id in the destination case.
    public var documentID: Int64
    /// Its exhibit in the destination case, when it has one.
    public var exhibitID: Int64?
    /// Its files (rendition, natives).
    public var files: [DocumentFile]
    /// Its batch in the source case, when known (for its source engine id).
    public var sourceBatchID: Int64?
    /// Its exhibit in the source case, when it has one.
    public var sourceExhibitID: Int64?

    /// A value with the given fields.
    public init(
        sourceDocumentID: Int64, documentID: Int64, exhibitID: Int64? = nil, files: [DocumentFile], sourceBatchID: Int64? = nil,
        sourceExhibitID: Int64? = nil
    ) {
        self.sourceDocumentID = sourceDocumentID
        self.documentID = documentID
        self.exhibitID = exhibitID
        self.files = files
        self.sourceBatchID = sourceBatchID
        self.sourceExhibitID = sourceExhibitID
    }
}

/// What the case-data copy did: the selected documents with their old → new ids.
public struct CopyOutcome: Sendable, Hashable, Codable {
    /// The copied documents.
    public var documents: [CopiedDocument]
    /// What the copy could not carry over exactly or left out, one sentence each (published with
    /// DB_COPY_FINISHED).
    public var warnings: [String]?
    /// Selected documents left out because an earlier exchange delivered them
    /// (``ExchangeRequest/skipExchanged``), by source id.
    public var skipped: [SkippedDocument]

    /// A value with the given fields.
    public init(documents: [CopiedDocument], warnings: [String]? = nil, skipped: [SkippedDocument] = []) {
        self.documents = documents
        self.warnings = warnings
        self.skipped = skipped
    }
}

/// A selected document an earlier exchange from the same source case delivered, left out.
public struct SkippedDocument: Sendable, Hashable, Codable {
    /// The document's id in the source case.
    public var sourceDocumentID: Int64
    /// The destination document the earlier exchange made of it.
    public var documentID: Int64
    /// The earlier exchange.
    public var earlierJobID: String

    /// A value with the given fields.
    public init(sourceDocumentID: Int64, documentID: Int64, earlierJobID: String) {
        self.sourceDocumentID = sourceDocumentID
        self.documentID = documentID
        self.earlierJobID = earlierJobID
    }
}

/// How the documents of an ended exchange came out, by destination document id (the payload's
/// `documentId`), as the event log counts them.
public struct DocumentOutcomes: Sendable, Hashable {
    /// Documents that went through every stage; empty unless the exchange FINISHED (a failed or
    /// cancelled exchange may have stopped a document between stages).
    public var delivered: Set<Int64>
    /// Documents whose files were not found.
    public var notFound: Set<Int64>
    /// Documents a stage gave up on.
    public var failed: Set<Int64>

    /// A value with the given fields.
    public init(delivered: Set<Int64>, notFound: Set<Int64>, failed: Set<Int64>) {
        self.delivered = delivered
        self.notFound = notFound
        self.failed = failed
    }
}

/// The case-data copy step, as the orchestrator sees it. The copy engine (module `CaseData`)
/// conforms through an adapter.
///
/// Contract: idempotent — running it again for the same exchange (after a crash, or to resume
/// payload construction) copies nothing twice and returns the same documents with the same new ids.
/// Throwing means the copy failed this time; the orchestrator retries with backoff.
public protocol CaseDataCopying: Sendable {
    /// Copies the case data the exchange selects and returns the documents copied.
    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome

    /// Records how each copied document ended where a repeat exchange looks for it (the
    /// destination case's ledger), when the exchange ends; idempotent. Every copied document not
    /// delivered or not found counts as failed.
    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws

    /// The source documents an ended exchange left behind (failed or not found, and not delivered
    /// by another exchange since), ascending: what a retry of it selects.
    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64]
}

/// Settings of payload construction.
public struct PayloadSettings: Sendable, Hashable {
    /// Messages per transaction (500).
    public var batchSize: Int = 500

    /// A value with the given fields.
    public init(batchSize: Int = 500) {
        self.batchSize = batchSize
    }
}

/// Builds one ``DocumentTask`` per document (and entry queue) and sends them in batches.
///
/// Re-runs never double-send: the messages are put in a deterministic order (documents by source
/// id, then entry queues in plan order), and each batch is sent in the same broker transaction that
/// advances the exchange's `payload_sent` cursor by compare-and-set. A crash loses either the
/// batch and its cursor step together or neither; a second replica running concurrently fails its
/// compare-and-set, rolls its sends back, and continues from the stored cursor. (The broker has no
/// send-side dedupe by message id, so this is done with the cursor, not with ids.)
public struct PayloadConstructor: Sendable {
    /// The broker whose database holds the state.
    public let broker: Broker
    /// The exchanges' state.
    public let store: ExchangeStore
    /// Batch size.
    public let settings: PayloadSettings
    /// Where it logs.
    public let logger: Logger

    /// A value with the given fields.
    public init(broker: Broker, store: ExchangeStore, settings: PayloadSettings = .init(), logger: Logger = Logger(label: "exchanger.orchestrator")) {
        self.broker = broker
        self.store = store
        self.settings = settings
        self.logger = logger
    }

    /// The messages of the payload in their fixed order: (queue, task).
    public static func messages(for exchange: ExchangeRecord, plan: ProvisioningPlan, outcome: CopyOutcome) -> [(queue: String, task: DocumentTask)] {
        var result: [(String, DocumentTask)] = []
        for document in outcome.documents.sorted(by: { $0.sourceDocumentID < $1.sourceDocumentID }) {
            let hasNatives = document.files.contains { $0.kind == .native }
            for entry in plan.entryQueues where !entry.nativesOnly || hasNatives {
                var task = DocumentTask(
                    jobID: exchange.jobID, sourceCaseID: exchange.sourceCaseID, caseID: exchange.destinationCaseID,
                    batchID: exchange.batchID, sourceDocumentID: document.sourceDocumentID, documentID: document.documentID,
                    exhibitID: document.exhibitID, files: document.files, requiresAnnotations: exchange.request.requiresAnnotations,
                    includeNatives: exchange.request.includeNatives, routes: plan.routes, correlationID: exchange.jobID)
                if exchange.request.requiresAnnotations {
                    task.annotationRouting = Self.annotationRouting(exchange.request)
                    task.sourceBatchID = document.sourceBatchID
                    task.sourceExhibitID = document.sourceExhibitID
                }
                result.append((entry.name, task))
            }
        }
        return result
    }

    /// The request's routing of each annotation kind, as ``DocumentTask/annotationRouting`` carries it.
    static func annotationRouting(_ request: ExchangeRequest) -> [String: String] {
        [
            DocumentTask.AnnotationKind.redactions.rawValue: request.redactionsAs.rawValue,
            DocumentTask.AnnotationKind.highlights.rawValue: request.highlightsAs.rawValue,
            DocumentTask.AnnotationKind.notes.rawValue: request.notesAs.rawValue,
            DocumentTask.AnnotationKind.stickers.rawValue: request.stickersAs.rawValue,
            DocumentTask.AnnotationKind.bates.rawValue: request.batesAs.rawValue,
            DocumentTask.AnnotationKind.confidentialityCodes.rawValue: request.confidentialityCodesAs.rawValue,
        ]
    }

    /// Records the total and sends every message not sent yet; returns how many messages the
    /// payload has in all (sent by this run or an earlier one).
    @discardableResult
    public func construct(_ exchange: ExchangeRecord, plan: ProvisioningPlan, outcome: CopyOutcome) async throws -> Int {
        let all = Self.messages(for: exchange, plan: plan, outcome: outcome)
        try await store.setTotalDocuments(exchange.jobID, outcome.documents.count, skipped: outcome.skipped.count)
        let batchSize = max(1, settings.batchSize)
        while true {
            guard let current = try await store.get(exchange.jobID) else {
                throw OrchestratorError(.notFound, "no exchange has job id '\(exchange.jobID)'")
            }
            let cursor = current.payloadSent
            guard cursor < all.count else { return all.count }
            let batch = Array(all[cursor..<min(all.count, cursor + batchSize)])
            var grouped: [(queue: String, messages: [OutgoingMessage])] = []
            for (queue, task) in batch {
                let message = try task.outgoing()
                if let last = grouped.indices.last, grouped[last].queue == queue {
                    grouped[last].messages.append(message)
                } else {
                    grouped.append((queue, [message]))
                }
            }
            let jobID = exchange.jobID
            let next = cursor + batch.count
            let sendGroups = grouped
            do {
                try await broker.transaction { tx in
                    guard try await ExchangeStore.advancePayloadCursor(tx, jobID, from: cursor, to: next) else {
                        throw OrchestratorError(.stateConflict, "the payload cursor of \(jobID) moved past \(cursor)")
                    }
                    for group in sendGroups { try await tx.sendBatch(group.queue, group.messages) }
                }
            } catch let error as OrchestratorError where error.code == .stateConflict {
                logger.notice("payload batch sent by another run; continuing from the stored cursor", metadata: ["jobId": "\(jobID)"])
            }
        }
    }
}
