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

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        state.withLock { $0.entered += 1 }
        while !state.withLock({ $0.open }) { try await Task.sleep(for: .milliseconds(10)) }
        return try await InMemoryCopier(count: 2).copy(exchange)
    }
}

@Suite("The orchestrator's work loop")
struct WorkLoopTests {
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
