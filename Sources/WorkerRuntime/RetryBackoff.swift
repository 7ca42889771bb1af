/// Capped exponential backoff with full jitter: attempt *n* waits a random time in
/// `[minimum, min(cap, base · 2^(n-1))]`.
///
/// A plain value: the random source is passed in, so tests check the bounds without timing.
public struct RetryBackoff: Sendable, Hashable {
    /// The first retry's upper bound.
    public var base: Duration
    /// No wait is longer than this.
    public var cap: Duration
    /// No wait is shorter than this.
    public var minimum: Duration

    public init(base: Duration = .seconds(2), cap: Duration = .seconds(300), minimum: Duration = .seconds(1)) {
        self.base = base
        self.cap = cap
        self.minimum = minimum
    }

    /// The upper bound for attempt `attempt` (1-based).
    public func ceiling(attempt: Int) -> Duration {
        let exponent = max(0, min(attempt - 1, 40))
        let scaled = base * Double(1 << min(exponent, 30)) * (exponent > 30 ? Double(1 << (exponent - 30)) : 1)
        return max(minimum, min(cap, scaled))
    }

    /// The wait before attempt `attempt + 1`, drawn with `random`.
    public func delay(attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let upper = ceiling(attempt: attempt)
        let low = min(minimum, upper)
        let span = (upper - low) / .milliseconds(1)
        guard span > 0 else { return upper }
        // A uniform fraction in [0, 1) from the top 53 bits: one draw, no rejection loop.
        let fraction = Double(random.next() >> 11) / Double(UInt64(1) << 53)
        return low + .milliseconds(Int64((fraction * span).rounded()))
    }

    /// The wait before attempt `attempt + 1`, drawn with the system's generator.
    public func delay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }
}
