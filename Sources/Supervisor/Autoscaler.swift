/// Decides how many processes a deployment (or a global program with a queue) should run from
/// its queue depth: `ceil(visible / messagesPerProc)` clamped to `[min, max]`. Up at once; down
/// only after every wish for a whole stabilisation window was lower, and then to the largest of
/// those wishes. A plain value: the caller passes the depth and the time.
public struct Autoscaler: Sendable {
    /// How long a lower count must hold before the deployment shrinks.
    public var window: Duration
    /// The current decision (nil before the first).
    public private(set) var target: Int?
    /// Since when every wish has been below ``target``, and the largest of them.
    private var low: (since: ContinuousClock.Instant, peak: Int)?

    public init(window: Duration) {
        self.window = window
    }

    /// The raw wish for a depth, before the stabilisation window.
    public static func wanted(visible: Int, messagesPerProc: Int, min: Int, max: Int) -> Int {
        let perProcess = Swift.max(1, messagesPerProc)
        let needed = visible <= 0 ? 0 : (visible + perProcess - 1) / perProcess
        return Swift.min(Swift.max(needed, min), Swift.max(min, max))
    }

    /// Records a depth observation and returns the new target.
    public mutating func decide(visible: Int, messagesPerProc: Int, min: Int, max: Int, now: ContinuousClock.Instant) -> Int {
        let wanted = Self.wanted(visible: visible, messagesPerProc: messagesPerProc, min: min, max: max)
        guard let current = target.map({ Swift.min(Swift.max($0, min), Swift.max(min, max)) }), wanted < current else {
            target = wanted
            low = nil
            return wanted
        }
        guard let period = low else {
            low = (now, wanted)
            target = current
            return current
        }
        let peak = Swift.max(period.peak, wanted)
        if now - period.since >= window {
            target = peak
            low = wanted < peak ? (now, wanted) : nil
            return peak
        }
        low = (period.since, peak)
        target = current
        return current
    }
}
