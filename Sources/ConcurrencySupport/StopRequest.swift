/// A cooperative stop that interrupts waits without cancelling the work around them.
///
/// A process stopping on SIGTERM lets the step in hand finish its database work, but a step that
/// is only waiting (a retry backoff, a poll interval, a wait for workers to exit) should end at
/// once. The caller binds its ``StopSignal`` for the task (`StopRequest.$signal.withValue(stop)`)
/// and the waits below it use ``sleep(for:slice:)`` or ``check()``, which throw
/// `CancellationError` once the stop is requested.
///
/// The task-local holds the signal object, not a closure over it: Swift 6.3.1 release builds
/// crash in `swift_task_localValuePush` when a closure-typed task-local is bound in a
/// specialised async method (`ProcessTests` exercises this path with release binaries).
public enum StopRequest {
    /// The stop signal bound to this task; none unless a caller binds one.
    @TaskLocal public static var signal: StopSignal?

    /// Whether the work of this task was asked to stop.
    public static var isRequested: Bool { signal?.isRequested ?? false }

    /// Throws `CancellationError` when the task is cancelled or a stop is requested.
    public static func check() throws {
        try Task.checkCancellation()
        if isRequested { throw CancellationError() }
    }

    /// Sleeps `duration`, looking every `slice` (default 50 ms) whether a stop was requested.
    /// - Throws: `CancellationError` when the task is cancelled or a stop is requested.
    public static func sleep(for duration: Duration, slice: Duration = .milliseconds(50)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + duration
        while true {
            try check()
            let left = deadline - clock.now
            if left <= .zero { return }
            try await Task.sleep(for: min(left, slice))
        }
    }
}
