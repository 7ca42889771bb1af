/// Which dead letters a listing or a bulk redrive looks at.
public struct DeadLetterFilter: Sendable, Hashable {
    /// Only dead letters of this queue.
    public var queue: String?
    /// Only dead letters of this job (exchange).
    public var jobID: String?
    /// Only those never redriven.
    public var onlyPending: Bool

    public init(queue: String? = nil, jobID: String? = nil, onlyPending: Bool = false) {
        self.queue = queue
        self.jobID = jobID
        self.onlyPending = onlyPending
    }
}
