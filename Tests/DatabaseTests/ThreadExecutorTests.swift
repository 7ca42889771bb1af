import ConcurrencySupport
import DatabaseSupport
import Foundation
import Testing

/// An actor whose jobs run on a ThreadExecutor, like the database connections.
actor ThreadBound {
    let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var counter = 0

    init(name: String) { executor = ThreadExecutor(name: name) }

    struct Sample: Sendable {
        var thread: pthread_t
        var name: String?
    }

    func sample() -> Sample { Sample(thread: pthread_self(), name: currentThreadName()) }

    /// Not atomic on purpose: a read, a pause, a write. Two jobs running at once lose updates,
    /// and `overlap` records every time a job starts while another is running.
    func increment(overlap: LockedBox<(running: Int, overlaps: Int)>) -> pthread_t {
        overlap.withLock { state in
            if state.running > 0 { state.overlaps += 1 }
            state.running += 1
        }
        let value = counter
        usleep(200)
        counter = value + 1
        overlap.withLock { $0.running -= 1 }
        return pthread_self()
    }

    var count: Int { counter }

    /// Blocks this actor's thread, as a libpq or SQLite call does.
    func block(milliseconds: UInt32) { usleep(milliseconds * 1000) }
}

/// The calling thread's name as the OS (debuggers, `top -H`) sees it.
func currentThreadName() -> String? {
    (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
}

@Suite("ThreadExecutor and runBlocking")
struct ThreadExecutorTests {
    @Test func jobsRunOnTheExecutorsOwnThread() async throws {
        let actor = ThreadBound(name: "dbtest-own")
        var callerThreads: Set<pthread_t> = []
        var samples: [ThreadBound.Sample] = []
        for _ in 0..<20 {
            callerThreads.insert(pthread_self())
            samples.append(await actor.sample())
            callerThreads.insert(pthread_self())
        }
        let actorThreads = Set(samples.map(\.thread))
        #expect(actorThreads.count == 1, "the actor's jobs ran on \(actorThreads.count) threads")
        #expect(actorThreads.isDisjoint(with: callerThreads), "a job ran on the caller's thread")
        #expect(actor.executor.name == "dbtest-own")
        actor.executor.shutdown()
    }

    /// The name is documented as "shown by debuggers and `top -H`": the OS-level thread name.
    @Test func theExecutorsThreadCarriesItsName() async throws {
        let actor = ThreadBound(name: "dbtest-named")
        // Regression: on Linux, Foundation ignores a name set before the thread starts, so the
        // thread must name itself (and the OS keeps at most 15 bytes).
        #expect(await actor.sample().name == "dbtest-named")
        actor.executor.shutdown()
    }

    @Test func jobsOfOneActorRunSerially() async throws {
        let actor = ThreadBound(name: "test-serial")
        let overlap = LockedBox((running: 0, overlaps: 0))
        let tasks = 8
        let callsPerTask = 25
        let threads = await withTaskGroup(of: [pthread_t].self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    var threads: [pthread_t] = []
                    for _ in 0..<callsPerTask { threads.append(await actor.increment(overlap: overlap)) }
                    return threads
                }
            }
            return await group.reduce(into: Set<pthread_t>()) { $0.formUnion($1) }
        }
        #expect(await actor.count == tasks * callsPerTask, "updates were lost: jobs ran concurrently")
        #expect(overlap.withLock { $0.overlaps } == 0)
        #expect(threads.count == 1)
        actor.executor.shutdown()
    }

    @Test func differentActorsHaveDifferentThreadsAndRunInParallel() async throws {
        let count = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)
        let actors = (0..<count).map { ThreadBound(name: "test-parallel-\($0)") }
        let threads = Set(await withTaskGroup(of: pthread_t.self) { group in
            for actor in actors { group.addTask { await actor.sample().thread } }
            return await group.reduce(into: []) { $0.append($1) }
        })
        #expect(threads.count == count)

        // More blocked threads than cores: the pool's threads stay free for the ticker.
        let ticker = Ticker()
        defer { ticker.stop() }
        let (_, measured) = await ticker.measure {
            await withTaskGroup(of: Void.self) { group in
                for actor in actors { group.addTask { await actor.block(milliseconds: 500) } }
            }
        }
        #expect(measured.elapsed >= .milliseconds(480))
        #expect(measured.elapsed < .milliseconds(950), "\(count) actors blocking 500 ms each took \(measured.elapsed)")
        #expect(measured.ticks >= 10, "the ticker ticked only \(measured.ticks) times")
        #expect(measured.longestGap < .milliseconds(300), "the ticker stalled for \(measured.longestGap)")
        for actor in actors { actor.executor.shutdown() }
    }

    /// `shutdown()` promises that jobs enqueued later still run. A connection's methods stay
    /// callable after `close()` (they throw `.connectionClosed`), so this matters.
    @Test func jobsEnqueuedAfterShutdownStillRun() async throws {
        let actor = ThreadBound(name: "test-shutdown")
        #expect(await actor.count == 0)
        actor.executor.shutdown()
        // Give the thread time to drain its queue and exit.
        try await Task.sleep(for: .milliseconds(100))
        // Regression: after shutdown the thread exits once its queue is empty; a job enqueued
        // later used to wait forever. The executor must start a thread to run it.
        let result = await outcome(within: .seconds(3)) { await actor.count }
        #expect(result != nil, "a job enqueued after shutdown() never ran")
    }

    @Test func runBlockingReturnsTheValueFromAnotherThread() async throws {
        let caller = pthread_self()
        let (value, thread) = try await runBlocking { () -> (Int, pthread_t) in (6 * 7, pthread_self()) }
        #expect(value == 42)
        #expect(thread != caller)
        #expect(thread != pthread_self())
    }

    @Test func runBlockingThreadCarriesItsName() async throws {
        // Regression: same as theExecutorsThreadCarriesItsName.
        let name = try await runBlocking(name: "dbtest-blocking") { currentThreadName() }
        #expect(name == "dbtest-blocking")
    }

    @Test func runBlockingRethrows() async throws {
        await #expect(throws: ExpectedFailure(tag: "from the blocking thread")) {
            try await runBlocking { () throws -> Int in throw ExpectedFailure(tag: "from the blocking thread") }
        }
        await #expect(throws: DatabaseError(.busy, message: "typed")) {
            try await runBlocking { () throws -> Void in throw DatabaseError(.busy, message: "typed") }
        }
    }

    @Test func concurrentRunBlockingCallsOverlapWithoutStallingThePool() async throws {
        let count = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)
        let ticker = Ticker()
        defer { ticker.stop() }
        let (results, measured) = try await ticker.measure {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await runBlocking {
                            usleep(500_000)
                            return index
                        }
                    }
                }
                return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
        }
        #expect(results == Set(0..<count))
        #expect(measured.elapsed >= .milliseconds(480))
        #expect(measured.elapsed < .milliseconds(950), "\(count) blocking calls of 500 ms took \(measured.elapsed)")
        #expect(measured.ticks >= 10)
        #expect(measured.longestGap < .milliseconds(300), "the ticker stalled for \(measured.longestGap)")
    }
}
