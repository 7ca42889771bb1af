import Synchronization

/// A one-way stop request shared by a long-running loop and whoever handles SIGTERM.
///
/// Bind it to a task with `StopRequest.$signal.withValue(signal) { … }` so that the waits below
/// (``StopRequest/sleep(for:slice:)``, ``StopRequest/check()``) end once it is requested.
public final class StopSignal: Sendable {
    private let requested = Mutex(false)

    /// A signal not yet requested.
    public init() {}

    /// Asks the loop to stop after the step in hand.
    public func request() { requested.withLock { $0 = true } }

    /// Whether a stop was requested.
    public var isRequested: Bool { requested.withLock { $0 } }
}
