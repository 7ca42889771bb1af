import ExchangerEvents
import Foundation
import Orchestrator

/// An exchange as the API shows it (`GET /exchanges/{jobId}` and the list).
public struct ExchangeView: Sendable, Hashable, Encodable {
    /// Where the exchange is on its way: the position on the happy path (1…7, nil while tearing
    /// down or after failure or cancellation) and what happens in it.
    public struct Step: Sendable, Hashable, Encodable {
        /// Position on `ACCEPTED → … → FINISHED`, nil off that path.
        public var number: Int?
        /// Steps on the happy path (7).
        public var of: Int
        /// What the state means.
        public var description: String
    }

    /// Documents of the exchange: total (known once the payload is built), copied, not found, failed.
    public struct Documents: Sendable, Hashable, Encodable {
        /// Documents the payload covers; nil until payload construction counted them.
        public var total: Int?
        /// Documents copied.
        public var copied: Int
        /// Documents missing in the source.
        public var notFound: Int
        /// Documents a stage gave up on.
        public var failed: Int
        /// Selected documents left out because an earlier exchange delivered them (`skipExchanged`).
        public var skipped: Int
    }

    /// One stage's documents done and failed, and the exchange's total.
    public struct Stage: Sendable, Hashable, Encodable {
        /// Documents the stage finished.
        public var done: Int
        /// Documents the stage gave up on.
        public var failed: Int
        /// The exchange's document count (nil until known).
        public var total: Int?
    }

    /// The exchange's id.
    public var jobId: String
    /// The state's name (`TEARING_DOWN` for both teardown targets).
    public var state: String
    /// `FAILED` or `CANCELLED` while the state is `TEARING_DOWN`.
    public var teardownTarget: String?
    /// Where the exchange is on its way.
    public var step: Step
    /// Bumped by every transition.
    public var version: Int64
    /// The accepted request (for a retry: the retried exchange's request, its left-behind
    /// documents as `documentIds`).
    public var request: ExchangeRequest
    /// The exchange this one retries (`POST /exchanges/{jobId}/retry`).
    public var retryOf: String?
    /// Document counts (live while it runs, stored once it ended).
    public var documents: Documents
    /// Per stage program (`s3-copy`, `pre-uploader`, `uploader`, `re-ocr`, `search-text`).
    public var stages: [String: Stage]
    /// Once it ended: the documents that did not arrive, by destination id.
    public var leftBehind: LeftBehindDocuments?
    /// Payload messages sent so far.
    public var payloadSent: Int
    /// Why it failed or was cancelled.
    public var error: String?
    /// When it was accepted.
    public var createdAt: Date
    /// Its last change.
    public var updatedAt: Date
    /// When it reached a final state.
    public var finishedAt: Date?

    /// The view of a stored exchange with its stored counts.
    public init(_ record: ExchangeRecord) {
        self.init(record, summary: record.summary, stages: record.stageCounts)
    }

    /// The view of a stored exchange with counts computed elsewhere (live from the event log).
    public init(_ record: ExchangeRecord, summary: ExchangeSummary?, stages: [String: StageCount]) {
        jobId = record.jobID
        state = record.state.name
        teardownTarget = record.state.teardownTarget?.rawValue
        let number = ExchangeState.happyPath.firstIndex(of: record.state).map { $0 + 1 }
        step = Step(number: number, of: ExchangeState.happyPath.count, description: Self.describe(record.state))
        version = record.version
        request = record.request
        request.retryOf = nil
        retryOf = record.request.retryOf
        let total = record.totalDocuments
        documents = Documents(
            total: total, copied: summary?.copied ?? 0, notFound: summary?.notFound ?? 0, failed: summary?.failed ?? 0,
            skipped: record.skippedDocuments ?? 0)
        leftBehind = record.leftBehind
        self.stages = stages.mapValues { Stage(done: $0.done, failed: $0.failed, total: total) }
        payloadSent = record.payloadSent
        error = record.error
        createdAt = record.createdAt
        updatedAt = record.updatedAt
        finishedAt = record.finishedAt
    }

    static func describe(_ state: ExchangeState) -> String {
        switch state {
        case .accepted: "accepted; waiting for an orchestrator replica"
        case .provisioning: "creating queues, subscriptions and worker deployments"
        case .copyingDatabase: "copying the case data"
        case .constructingPayload: "sending one message per document"
        case .processing: "workers are processing the documents"
        case .draining: "done; tearing down queues and workers"
        case .tearingDown(.failed): "failed; tearing down queues and workers"
        case .tearingDown(.cancelled): "cancelled; tearing down queues and workers"
        case .finished: "finished"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
    }
}
