/// Exponential backoff with full jitter: attempt *n* (1-based) that failed waits a random
/// duration in `0 ... min(maxDelay, baseDelay * 2^(n-1))` before the next attempt.
public struct RetryPolicy: Sendable, Hashable {
    /// How many times an operation is tried in all (first try included). Default 5.
    public var maxAttempts: Int
    /// The first backoff ceiling. Default 100 ms.
    public var baseDelay: Duration
    /// The largest backoff ceiling. Default 5 s.
    public var maxDelay: Duration

    public init(maxAttempts: Int = 5, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5)) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The ceiling of the wait after failed attempt `attempt` (1-based): `min(maxDelay, baseDelay * 2^(attempt-1))`.
    public func ceiling(afterAttempt attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = baseDelay * (1 << exponent)
        return min(ceiling, maxDelay)
    }

    /// A random wait in `0 ... ceiling(afterAttempt:)` (full jitter).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let ceiling = ceiling(afterAttempt: attempt)
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        guard nanoseconds > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...nanoseconds))
    }
}
