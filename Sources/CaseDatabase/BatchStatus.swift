/// The status of an exchange batch as the destination case sees it.
///
/// Transitions only go up in ``rank``: `INITIATED` (1) → `FINISHED` or `FAILED` (2, final). The
/// first final status wins; a late `INITIATED` never overwrites a final one.
public enum BatchStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case initiated = "INITIATED"
    case finished = "FINISHED"
    case failed = "FAILED"

    /// 1 for `INITIATED`, 2 for the final statuses.
    public var rank: Int {
        switch self {
        case .initiated: 1
        case .finished, .failed: 2
        }
    }

    /// Whether no later event can change this status.
    public var isFinal: Bool { rank == 2 }
}

/// One status change to record, from one event.
public struct BatchStatusUpdate: Sendable, Hashable {
    public var batchID: Int64
    public var jobID: String?
    public var sourceCaseID: Int64?
    public var status: BatchStatus
    /// The event that carries the change.
    public var eventID: String
    /// Why the exchange failed (`FAILED`).
    public var reason: String?
    /// The exchange summary as JSON text (`FINISHED`).
    public var summary: String?

    public init(
        batchID: Int64, jobID: String?, sourceCaseID: Int64?, status: BatchStatus, eventID: String, reason: String? = nil,
        summary: String? = nil
    ) {
        self.batchID = batchID
        self.jobID = jobID
        self.sourceCaseID = sourceCaseID
        self.status = status
        self.eventID = eventID
        self.reason = reason
        self.summary = summary
    }
}

/// A row of `document_exchange_batches`.
public struct BatchStatusRecord: Sendable, Hashable {
    public var batchID: Int64
    public var jobID: String?
    public var sourceCaseID: Int64?
    public var status: BatchStatus
    public var statusRank: Int
    public var lastEventID: String
    public var reason: String?
    public var summary: String?
    /// Milliseconds since 1970.
    public var updatedAtMilliseconds: Int64
}
