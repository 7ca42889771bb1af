/// The circuit breaker's state machine as a plain value: no clock, no I/O, every transition a
/// function of the current state and the instant it is told.
///
/// - **closed**: calls pass; each transient failure counts, a success resets the count; at
///   ``Settings/failureThreshold`` consecutive failures it opens.
/// - **open**: calls are refused until ``Settings/openDuration`` has passed since it opened.
/// - **half-open**: after that, exactly one trial is let through; its success closes the
///   breaker, its failure opens it again for another ``Settings/openDuration``.
public struct CircuitBreakerState: Sendable, Hashable {
    /// The breaker's settings (each has an environment variable, see ``CircuitBreakerSettings``).
    public typealias Settings = CircuitBreakerSettings

    /// Where the machine is.
    public enum Phase: Sendable, Hashable {
        /// Calls pass; `failures` consecutive transient failures so far.
        case closed(failures: Int)
        /// Calls are refused until `until`.
        case open(until: ContinuousClock.Instant)
        /// One trial is running (`trialInFlight`) or may start.
        case halfOpen(trialInFlight: Bool)
    }

    public let settings: Settings
    public private(set) var phase: Phase = .closed(failures: 0)

    /// A closed breaker.
    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Whether a call may start at `now`; `true` in half-open means this call is the trial.
    public mutating func allow(at now: ContinuousClock.Instant) -> Bool {
        switch phase {
        case .closed:
            return true
        case .open(let until):
            guard now >= until else { return false }
            phase = .halfOpen(trialInFlight: true)
            return true
        case .halfOpen(let inFlight):
            guard !inFlight else { return false }
            phase = .halfOpen(trialInFlight: true)
            return true
        }
    }

    /// A call ended well (or failed in a way that says the engine answers, such as a 4xx).
    public mutating func recordSuccess() {
        phase = .closed(failures: 0)
    }

    /// A call failed transiently at `now`.
    public mutating func recordFailure(at now: ContinuousClock.Instant) {
        switch phase {
        case .closed(let failures):
            phase = failures + 1 >= settings.failureThreshold ? .open(until: now + settings.openDuration) : .closed(failures: failures + 1)
        case .halfOpen:
            phase = .open(until: now + settings.openDuration)
        case .open:
            break  // a call started before the breaker opened; the open period stands
        }
    }

    /// Whether calls pass without restriction.
    public var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    /// When an open breaker lets its trial through; nil unless open.
    public var reopensAt: ContinuousClock.Instant? {
        if case .open(let until) = phase { return until }
        return nil
    }
}

/// Settings of the document-engine circuit breaker.
public struct CircuitBreakerSettings: Sendable, Hashable {
    /// `EXCHANGER_ENGINE_BREAKER_FAILURES`: consecutive transient failures that open the breaker (default 5).
    public static let failuresVariable = "EXCHANGER_ENGINE_BREAKER_FAILURES"
    /// `EXCHANGER_ENGINE_BREAKER_OPEN_SECONDS`: how long it stays open before one trial (default 30).
    public static let openSecondsVariable = "EXCHANGER_ENGINE_BREAKER_OPEN_SECONDS"

    /// Consecutive transient failures that open the breaker (≥ 1, default 5).
    public var failureThreshold: Int
    /// How long an open breaker refuses calls before its one trial (default 30 s).
    public var openDuration: Duration

    public init(failureThreshold: Int = 5, openDuration: Duration = .seconds(30)) {
        self.failureThreshold = max(1, failureThreshold)
        self.openDuration = openDuration
    }

    /// The settings from the environment, defaults for what is unset; throws
    /// ``DocumentEngineError/Code/invalidURL`` for a value that is not a number in range.
    public init(environment: [String: String]) throws(DocumentEngineError) {
        self.init()
        if let text = environment[Self.failuresVariable], !text.isEmpty {
            guard let value = Int(text), (1...1_000_000).contains(value) else {
                throw DocumentEngineError(.invalidURL, "\(Self.failuresVariable)='\(text.prefix(40))' must be an integer ≥ 1")
            }
            failureThreshold = value
        }
        if let text = environment[Self.openSecondsVariable], !text.isEmpty {
            guard let value = Double(text), value.isFinite, value >= 0, value <= 86_400 else {
                throw DocumentEngineError(.invalidURL, "\(Self.openSecondsVariable)='\(text.prefix(40))' must be seconds in 0…86400")
            }
            openDuration = .milliseconds(Int64(value * 1000))
        }
    }
}
