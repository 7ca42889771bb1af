import Foundation

/// A fixed set of threads for short blocking calls (file I/O: open, stat, copy, fsync), so that
/// they never block Swift's cooperative pool and do not pay for a new thread each time.
///
/// Threads start on demand up to ``threadLimit`` and then stay; jobs beyond that wait in FIFO
/// order. Long or unbounded waits (`waitpid`, reading a child's pipe) belong to
/// ``runBlocking(name:_:)`` instead: they would hold a pool thread for their whole duration.
public final class BlockingPool: @unchecked Sendable {
    /// The most threads this pool runs.
    public let threadLimit: Int
    private let name: String
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var threads = 0
    private var idle = 0

    /// - Parameters:
    ///   - name: thread name prefix (at most 15 bytes are kept by the OS).
    ///   - threads: the most threads (at least 1).
    public init(name: String, threads: Int) {
        self.name = name
        self.threadLimit = max(1, threads)
    }

    /// Runs `body` on a pool thread and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            enqueue {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        var start = false
        if idle == 0 && threads < threadLimit {
            threads += 1
            start = true
        }
        condition.signal()
        let number = threads
        condition.unlock()
        if start {
            let thread = Thread { [self] in
                nameCurrentThread("\(name)-\(number)")
                work()
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
    }

    private func work() {
        while true {
            condition.lock()
            while head == jobs.count {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
