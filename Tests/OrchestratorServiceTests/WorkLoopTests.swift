import ConcurrencySupport
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import OrchestratorService
import Synchronization
import Testing

/// A copy step that waits until the test opens the gate (or forever), counting its calls.
final class GatedCopier: CaseDataCopying {
    private let state = Mutex((entered: 0, open: false))

    var entered: Int { state.withLock { $0.entered } }
    func open() { state.withLock { $0.open = true } }

    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {}

    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { [] }

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        state.withLock { $0.entered += 1 }
        while !state.withLock({ $0.open }) { try await Task.sleep(for: .milliseconds(10)) }
        return try await InMemoryCopier(count: 2).copy(exchange)
    }
}

/// A copy step that holds the exchanges of one batch until opened, and copies the others at once.
final class BatchGatedCopier: CaseDataCopying {
    let gatedBatch: Int64
    private let gate = GatedCopier()

    init(gatedBatch: Int64) { self.gatedBatch = gatedBatch }

    var entered: Int { gate.entered }
    func open() { gate.open() }

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        if exchange.batchID == gatedBatch { return try await gate.copy(exchange) }
        return try await InMemoryCopier(count: 2).copy(exchange)
    }

    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {}

    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { [] }
}

@Suite("The orchestrator's work loop")
struct WorkLoopTests {
    @Test("a copy that hangs on one exchange holds up neither another exchange nor a cancel (lanes)")
    func lanesKeepExchangesApart() async throws {
        let copier = BatchGatedCopier(gatedBatch: 7)
        try await withAPI(copier: copier) { api in
            #expect(api.service.settings.concurrentExchanges == 4, "the default")
            let stuck = try #require(try await api.call(.POST, "/exchanges", body: requestBody(batch: 7)).json["jobId"] as? String)
            let stop = StopSignal()
            let work = Task { await api.workLoop(owner: "replica").run(stop: stop) }
            #expect(await eventually(timeout: .seconds(20)) { copier.entered > 0 }, "one lane is inside the stuck copy")

            // Another exchange is claimed and advanced by another lane, and a third is cancelled.
            let other = try #require(try await api.call(.POST, "/exchanges", body: requestBody(batch: 8)).json["jobId"] as? String)
            let advanced = try await eventually(timeout: .seconds(20)) { try await api.service.store.get(other)?.state == .processing }
            #expect(advanced, "the second exchange reached PROCESSING while the first copy hangs")
            let third = try #require(try await api.call(.POST, "/exchanges", body: requestBody(batch: 9)).json["jobId"] as? String)
            #expect(try await api.call(.POST, "/exchanges/\(third)/cancel").status == 202)
            let cancelled = try await eventually(timeout: .seconds(20)) { try await api.service.store.get(third)?.state == .cancelled }
            #expect(cancelled, "the cancel took effect while the first copy hangs")
            let owner = try await api.service.store.get(stuck)?.owner
            #expect(try await api.service.store.get(stuck)?.state == .copyingDatabase)
            #expect(owner?.hasPrefix("replica/") == true, "each lane holds its leases under its own owner name")

            copier.open()
            #expect(try await eventually(timeout: .seconds(20)) { try await api.service.store.get(stuck)?.state == .processing })
            stop.request()
            await work.value
        }
    }

    @Test("a cancel that lands while a step runs is no failure: the step gives the lease back and the teardown follows at once")
    func cancelDuringAStepIsNoFailure() async throws {
        let copier = GatedCopier()
        try await withAPI(copier: copier) { api in
            let jobID = try #require(try await api.call(.POST, "/exchanges", body: requestBody()).json["jobId"] as? String)
            let loop = api.workLoop(owner: "replica-c")
            let work = Task { try await loop.workOnce(stop: StopSignal()) }
            #expect(await eventually(timeout: .seconds(20)) { copier.entered > 0 })
            #expect(try await api.call(.POST, "/exchanges/\(jobID)/cancel").status == 202)
            copier.open()
            // The copy's transition finds the exchange cancelled: workOnce returns, it does not throw.
            _ = try await work.value
            let record = try #require(try await api.service.store.get(jobID))
            #expect(record.state == .tearingDown(.cancelled))
            #expect(record.owner == nil, "the lease was given back, not left to expire")
            _ = try await loop.workOnce(stop: StopSignal())
            #expect(try await api.service.store.get(jobID)?.state == .cancelled)
        }
    }

    /// A copy step whose ledger write fails the first time (a teardown step that fails once).
    final class FlakyLedgerCopier: CaseDataCopying {
        let calls = LockedBox(0)
        func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome { try await InMemoryCopier(count: 2).copy(exchange) }
        func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { [] }
        func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {
            let call = calls.withLock { count -> Int in
                count += 1
                return count
            }
            if call == 1 { throw OrchestratorError(.copyFailed, "the destination case's ledger cannot be written (simulated)") }
        }
    }

    @Test("a step that fails keeps its lease only for the step retry delay, not the 30 s lease: another lane retries it at once")
    func aFailedStepIsRetriedAfterTheRetryDelay() async throws {
        var settings = serviceTestSettings
        settings.lease = .seconds(30)
        settings.stepRetryDelay = .milliseconds(200)
        let copier = FlakyLedgerCopier()
        try await withAPI(settings: settings, copier: copier) { api in
            let jobID = try #require(try await api.call(.POST, "/exchanges", body: requestBody()).json["jobId"] as? String)
            let first = api.workLoop(owner: "replica-1")
            let stop = StopSignal()
            #expect(try await eventually(timeout: .seconds(20)) {
                _ = try await first.workOnce(stop: stop)
                return try await api.service.store.get(jobID)?.state == .processing
            })
            #expect(try await api.call(.POST, "/exchanges/\(jobID)/cancel").status == 202)
            // The teardown's ledger write fails: the step throws, and the lease ends in 200 ms, not 30 s.
            // (The PROCESSING check's short lease may still run for a moment: claim until the step runs.)
            var failed = false
            for _ in 0..<100 where !failed {
                do {
                    if try await first.workOnce(stop: stop) == nil { try await Task.sleep(for: .milliseconds(20)) }
                } catch let error as OrchestratorError {
                    #expect(error.message.contains("simulated"))
                    failed = true
                }
            }
            #expect(failed, "the teardown step failed once")
            let held = try #require(try await api.service.store.get(jobID))
            let left = (held.leaseExpiresAt ?? .distantFuture).timeIntervalSinceNow
            #expect(left < 1, "the lease left after a failed step: \(left) s")
            try await Task.sleep(for: .milliseconds(400))
            let other = api.workLoop(owner: "replica-2")
            _ = try await other.workOnce(stop: stop)
            #expect(try await api.service.store.get(jobID)?.state == .cancelled, "another owner retried the teardown at once")
            #expect(copier.calls.withLock { $0 } == 2)
        }
    }

    @Test("a stop requested before a claim claims nothing")
    func stopBeforeClaim() async throws {
        try await withAPI { api in
            let posted = try await api.call(.POST, "/exchanges", body: requestBody())
            let jobID = try #require(posted.json["jobId"] as? String)
            let stop = StopSignal()
            stop.request()
            #expect(try await api.workLoop().workOnce(stop: stop) == nil)
            let record = try #require(try await api.service.store.get(jobID))
            #expect(record.state == .accepted)
            #expect(record.owner == nil)
        }
    }

    @Test("a stop during a step lets the step finish, then gives the lease back")
    func stopFinishesStepInHand() async throws {
        let copier = GatedCopier()
        try await withAPI(copier: copier) { api in
            let posted = try await api.call(.POST, "/exchanges", body: requestBody())
            let jobID = try #require(posted.json["jobId"] as? String)
            let stop = StopSignal()
            let loop = api.workLoop()
            let work = Task { try await loop.workOnce(stop: stop) }
            #expect(await eventually(timeout: .seconds(20)) { copier.entered > 0 })
            stop.request()
            copier.open()
            _ = try await work.value
            let record = try #require(try await api.service.store.get(jobID))
            // The copy step ran to its end (copy, payload, PROCESSING); nothing after it.
            #expect(record.state == .processing)
            #expect(record.totalDocuments == 2)
            #expect(record.owner == nil)
            #expect(copier.entered == 1)
        }
    }

    @Test("cancelling the loop interrupts the step and gives the lease back; the next owner repeats the step")
    func cancelInterruptsStep() async throws {
        let copier = GatedCopier()
        try await withAPI(copier: copier) { api in
            let posted = try await api.call(.POST, "/exchanges", body: requestBody())
            let jobID = try #require(posted.json["jobId"] as? String)
            let stop = StopSignal()
            let loop = api.workLoop(owner: "replica-a")
            let work = Task { await loop.run(stop: stop) }
            #expect(await eventually(timeout: .seconds(20)) { copier.entered > 0 })
            work.cancel()
            await work.value
            let record = try #require(try await api.service.store.get(jobID))
            #expect(record.state == .copyingDatabase)
            #expect(record.owner == nil)

            copier.open()
            let other = api.workLoop(owner: "replica-b")
            let done = try await eventually(timeout: .seconds(20)) {
                _ = try await other.workOnce(stop: StopSignal())
                return try await api.service.store.get(jobID)?.state == .processing
            }
            #expect(done)
        }
    }
}
