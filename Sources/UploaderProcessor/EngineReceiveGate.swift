import DocumentEngine
import WorkerRuntime

/// The worker's receive gate for a document-engine circuit breaker: while the breaker is open the
/// worker receives nothing, so documents wait in the queue instead of burning receive counts.
public struct EngineReceiveGate: ReceiveGate {
    public let breaker: EngineCircuitBreaker

    public init(breaker: EngineCircuitBreaker) { self.breaker = breaker }

    public func permitsReceiving() async -> Bool { await breaker.permitsReceiving() }
}
