/// Where an exchange ends when it does not finish: failed or cancelled.
public enum TeardownTarget: String, Sendable, Hashable, Codable, CaseIterable {
    case failed = "FAILED"
    case cancelled = "CANCELLED"

    /// The final state the teardown ends in.
    public var finalState: ExchangeState { self == .failed ? .failed : .cancelled }
}

/// The state of an exchange:
///
/// `ACCEPTED → PROVISIONING → COPYING_DATABASE → CONSTRUCTING_PAYLOAD → PROCESSING → DRAINING → FINISHED`
///
/// and from any non-final state `→ TEARING_DOWN(FAILED | CANCELLED) → FAILED | CANCELLED`: failure
/// and cancellation run the same teardown as a finished exchange before the final state is written.
/// `DRAINING` means the exchange's queues are sealed and were empty at the seal (nothing can arrive
/// any more); its teardown then stops the workers, deletes the queues and publishes the result.
public enum ExchangeState: Sendable, Hashable, CustomStringConvertible {
    case accepted
    case provisioning
    case copyingDatabase
    case constructingPayload
    case processing
    case draining
    case tearingDown(TeardownTarget)
    case finished
    case failed
    case cancelled

    /// Every state (both teardown targets included), for exhaustive checks.
    public static let all: [ExchangeState] = [
        .accepted, .provisioning, .copyingDatabase, .constructingPayload, .processing, .draining,
        .tearingDown(.failed), .tearingDown(.cancelled), .finished, .failed, .cancelled,
    ]

    /// The forward path of a successful exchange, in order.
    public static let happyPath: [ExchangeState] = [
        .accepted, .provisioning, .copyingDatabase, .constructingPayload, .processing, .draining, .finished,
    ]

    /// The name stored in `exchanges.state` (`TEARING_DOWN` keeps its target in `teardown_target`).
    public var name: String {
        switch self {
        case .accepted: "ACCEPTED"
        case .provisioning: "PROVISIONING"
        case .copyingDatabase: "COPYING_DATABASE"
        case .constructingPayload: "CONSTRUCTING_PAYLOAD"
        case .processing: "PROCESSING"
        case .draining: "DRAINING"
        case .tearingDown: "TEARING_DOWN"
        case .finished: "FINISHED"
        case .failed: "FAILED"
        case .cancelled: "CANCELLED"
        }
    }

    /// The teardown target of `TEARING_DOWN`, nil for every other state.
    public var teardownTarget: TeardownTarget? {
        if case .tearingDown(let target) = self { return target }
        return nil
    }

    /// The state of a stored name and teardown target; nil for an unknown or inconsistent pair.
    public init?(name: String, teardownTarget: String?) {
        if name == "TEARING_DOWN" {
            guard let target = teardownTarget.flatMap(TeardownTarget.init(rawValue:)) else { return nil }
            self = .tearingDown(target)
            return
        }
        guard teardownTarget == nil,
            let state = Self.all.first(where: { $0.name == name && $0.teardownTarget == nil })
        else { return nil }
        self = state
    }

    public var description: String {
        if case .tearingDown(let target) = self { return "TEARING_DOWN(\(target.rawValue))" }
        return name
    }

    /// FINISHED, FAILED and CANCELLED: nothing moves an exchange out of them.
    public var isFinal: Bool {
        switch self {
        case .finished, .failed, .cancelled: true
        default: false
        }
    }

    /// Whether `self → next` is a transition of the state machine.
    public func canTransition(to next: ExchangeState) -> Bool {
        switch (self, next) {
        case (.accepted, .provisioning), (.provisioning, .copyingDatabase), (.copyingDatabase, .constructingPayload),
            (.constructingPayload, .processing), (.processing, .draining), (.draining, .finished):
            return true
        case (.tearingDown(let target), let next):
            return next == target.finalState
        case (_, .tearingDown):
            return !isFinal
        default:
            return false
        }
    }

    /// The states reachable in one transition.
    public var successors: [ExchangeState] { Self.all.filter { canTransition(to: $0) } }

    /// `next` when `self → next` is allowed.
    /// - Throws: ``OrchestratorError/Code/invalidTransition``.
    public func transition(to next: ExchangeState) throws(OrchestratorError) -> ExchangeState {
        guard canTransition(to: next) else {
            throw OrchestratorError(.invalidTransition, "an exchange cannot move from \(self) to \(next)")
        }
        return next
    }

    /// The state after the step that normally follows this one, nil for final states.
    public var next: ExchangeState? {
        switch self {
        case .accepted: .provisioning
        case .provisioning: .copyingDatabase
        case .copyingDatabase: .constructingPayload
        case .constructingPayload: .processing
        case .processing: .draining
        case .draining: .finished
        case .tearingDown(let target): target.finalState
        case .finished, .failed, .cancelled: nil
        }
    }
}
