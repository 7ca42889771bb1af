import ExchangerEvents
import Foundation

/// One exchange as stored in `exchanges`.
public struct ExchangeRecord: Sendable, Hashable {
    /// The exchange's id (`jobId` in events, `exchangeID` of its queues and deployments).
    public var jobID: String
    /// `client:…` (the client's key) or `sha256:…` (derived).
    public var idempotencyKey: String
    /// The accepted request.
    public var request: ExchangeRequest
    /// The current state.
    public var state: ExchangeState
    /// Bumped by every state transition; a compare-and-set may name the version it read.
    public var version: Int64
    /// Documents the payload covers, once known (set by payload construction).
    public var totalDocuments: Int?
    /// Payload messages sent so far (the resumable cursor of payload construction).
    public var payloadSent: Int
    /// Documents copied / not found / failed, written when the exchange ends.
    public var summary: ExchangeSummary?
    /// Selected documents the copy left out because an earlier exchange delivered them
    /// (`skipExchanged`); nil until the copy ran.
    public var skippedDocuments: Int?
    /// The documents that did not arrive, written when the exchange ends.
    public var leftBehind: LeftBehindDocuments?
    /// Per stage (`s3-copy`, `pre-uploader`, `uploader`, `re-ocr`, `search-text`): documents done and failed.
    public var stageCounts: [String: StageCount]
    /// Why the exchange failed or was cancelled.
    public var error: String?
    /// The orchestrator replica working on it, while its lease lasts.
    public var owner: String?
    /// When the owner's lease ends unless renewed.
    public var leaseExpiresAt: Date?
    /// When it was created.
    public var createdAt: Date
    /// Last change.
    public var updatedAt: Date
    /// When it reached a final state.
    public var finishedAt: Date?

    /// Source case, destination case and batch, as the events carry them.
    public var sourceCaseID: Int64 { request.sourceCaseID }
    /// The destination case.
    public var destinationCaseID: Int64 { request.destinationCaseID }
    /// The batch.
    public var batchID: Int64 { request.batchID }
}

/// The documents of an ended exchange that did not arrive, by destination document id. Their
/// copied rows stay in the destination case (docs/case-data.md); the case's `exchange_documents`
/// ledger holds the same outcomes.
public struct LeftBehindDocuments: Sendable, Hashable, Codable {
    /// Documents a stage gave up on (or never finished, when the exchange failed or was cancelled).
    public var failed: [Int64]
    /// Documents whose files were not found in the source store.
    public var notFound: [Int64]
    /// True when a list was cut at ``DrainSettings/listedDocuments`` (the summary has the counts).
    public var truncated: Bool

    /// A value with the given fields.
    public init(failed: [Int64], notFound: [Int64], truncated: Bool) {
        self.failed = failed
        self.notFound = notFound
        self.truncated = truncated
    }
}

/// Documents one stage finished and gave up on.
public struct StageCount: Sendable, Hashable, Codable {
    /// Documents the stage finished.
    public var done: Int
    /// Documents the stage gave up on.
    public var failed: Int

    /// A value with the given fields.
    public init(done: Int, failed: Int) {
        self.done = done
        self.failed = failed
    }
}

/// A resource created for an exchange, recorded before it is created so teardown finds it.
public struct ExchangeResource: Sendable, Hashable {
    /// What kind of resource.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A broker queue; `name` is the queue name.
        case queue
        /// A topic subscription; `name` is the subscribed queue, `detail` the topic.
        case subscription
        /// A supervisor deployment; `name` is the deployment id, `detail` the program.
        case deployment
    }

    /// Queue, subscription or deployment.
    public var kind: Kind
    /// The name (queue name, subscribed queue, deployment id).
    public var name: String
    /// The program (queue, deployment) or the topic (subscription).
    public var detail: String?
    /// When it was created.
    public var createdAt: Date
    /// When teardown removed it; nil while it (may) exist.
    public var removedAt: Date?

    /// A value with the given fields.
    public init(kind: Kind, name: String, detail: String? = nil, createdAt: Date = Date(), removedAt: Date? = nil) {
        self.kind = kind
        self.name = name
        self.detail = detail
        self.createdAt = createdAt
        self.removedAt = removedAt
    }
}
