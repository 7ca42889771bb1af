import ObjectStorage

/// A handler whose work reads and writes one object store: the worker probes that store at start
/// (a store that refuses this process stops it with one line, exit 78) and while its receiving is
/// held because the store refused access (``StorageAccessHold``).
public protocol StorageBackedHandler: MessageHandler {
    /// The store the handler works on.
    var store: any ObjectStore { get }
}

/// Holds a worker back from receiving while its object store refuses access (credentials revoked,
/// a bucket policy, a directory made read-only): otherwise every document would be received,
/// fail, and in the end be dead-lettered, for a fault of the setup, not of the documents.
///
/// A plain value the worker's loop owns. A batch whose handling met such a refusal and nothing
/// that went through closes the hold for ``pause``; when it ends the worker probes the store
/// (``StorageBackedHandler``; a handler without a store lets one message through instead) and
/// either resumes or waits twice as long, up to ``maximum``.
struct StorageAccessHold: Sendable, Equatable {
    /// The first pause.
    let initial: Duration
    /// The longest pause.
    let maximum: Duration
    /// The next pause.
    private(set) var pause: Duration
    /// Until when receiving waits; nil while the store lets the worker in.
    private(set) var until: ContinuousClock.Instant?

    init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = max(initial, maximum)
        pause = initial
    }

    /// What the worker does now.
    enum Decision: Equatable {
        /// Receive a full batch.
        case receive
        /// Wait; the hold is on.
        case wait
        /// The pause is over: probe the store (or receive a single message) before going on.
        case probe
    }

    func decide(now: ContinuousClock.Instant) -> Decision {
        guard let until else { return .receive }
        return now < until ? .wait : .probe
    }

    /// The store refused access (and nothing went through): hold for the current pause, doubling
    /// the next one.
    mutating func refused(now: ContinuousClock.Instant) {
        until = now + pause
        pause = min(pause * 2, maximum)
    }

    /// The store let the worker in again.
    mutating func cleared() {
        until = nil
        pause = initial
    }

    /// Whether `error` is the store refusing this process (not a document's fault).
    static func isAccessRefusal(_ error: any Error) -> Bool {
        guard let error = error as? ObjectStorageError else { return false }
        return error.code == .accessDenied || error.code == .configuration
    }
}
