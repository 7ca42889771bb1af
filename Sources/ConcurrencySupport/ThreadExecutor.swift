import Foundation

/// A serial executor that runs every job on one dedicated OS thread.
///
/// libpq and SQLite calls block. Swift's cooperative pool has one thread per core, so a blocking
/// call made there stalls every task in the process. An actor whose `unownedExecutor` is a
/// `ThreadExecutor` runs its isolated methods on its own thread instead: a blocking call only blocks
/// that actor, and callers simply `await` it.
public final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    // `condition` guards `jobs` and `state`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var state: State = .running
    public let name: String

    private enum State { case running, stopping, stopped }

    private let stackSize: Int

    /// Starts the thread.
    /// - Parameters:
    ///   - name: the thread's name, shown by debuggers and `top -H` (Linux keeps 15 bytes of it).
    ///   - stackSize: the thread's stack size in bytes.
    public init(name: String, stackSize: Int = 1 << 20) {
        self.name = name
        self.stackSize = stackSize
        startThread()
    }

    private func startThread() {
        let name = self.name
        let thread = Thread { [self] in
            nameCurrentThread(name)
            self.runLoop()
        }
        thread.stackSize = stackSize
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        // After shutdown the thread may have exited; a late job (an actor's last call, a call on a
        // closed connection that must fail rather than hang) gets a thread that drains and exits.
        let restart = state == .stopped
        if restart { state = .stopping }
        condition.signal()
        condition.unlock()
        if restart { startThread() }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Lets the thread exit once every job enqueued so far has run. Jobs enqueued later still run
    /// (an actor's last calls must complete), then the thread exits when the queue is empty.
    public func shutdown() {
        condition.lock()
        if state == .running { state = .stopping }
        condition.signal()
        condition.unlock()
    }

    private func runLoop() {
        while true {
            condition.lock()
            while jobs.isEmpty && state == .running {
                condition.wait()
            }
            if jobs.isEmpty {
                state = .stopped
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch {
                job.runSynchronously(on: asUnownedSerialExecutor())
            }
        }
    }
}

/// Runs a blocking closure on a fresh thread and returns its result, so that `waitpid`, `read` on a
/// pipe and similar calls never block Swift's cooperative pool. Meant for occasional calls; hot
/// paths use an actor on a ``ThreadExecutor``.
public func runBlocking<T: Sendable>(
    name: String = "blocking",
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread {
            nameCurrentThread(name)
            do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

/// Names the calling thread. Foundation on Linux applies a name only when the thread sets its own,
/// and the OS keeps at most 15 bytes (a longer name is refused), so threads name themselves with a
/// name cut to fit.
public func nameCurrentThread(_ name: String) {
    var fitted = ""
    for scalar in name.unicodeScalars {
        guard fitted.utf8.count + String(scalar).utf8.count <= 15 else { break }
        fitted.unicodeScalars.append(scalar)
    }
    Thread.current.name = fitted
    #if os(Linux)
    // The OS's own record, written directly: what debuggers and `top -H` show.
    if let handle = FileHandle(forWritingAtPath: "/proc/thread-self/comm") {
        handle.write(Data(fitted.utf8))
        try? handle.close()
    }
    #endif
}
