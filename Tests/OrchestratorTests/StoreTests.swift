import Broker
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

@Suite("exchange store")
struct StoreTests {
    @Test("the same idempotency key twice gives one exchange; another request under it is a conflict", arguments: Backend.allCases)
    func idempotentAccept(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let r = request(selection: .documents([1, 2]))
            let first = try await h.store.accept(r, idempotencyKey: try r.idempotencyKey())
            let second = try await h.store.accept(request(selection: .documents([2, 1])), idempotencyKey: try r.idempotencyKey())
            #expect(first.created && !second.created)
            #expect(first.record.jobID == second.record.jobID)
            #expect(first.record.state == .accepted && first.record.version == 1)
            do {
                _ = try await h.store.accept(request(selection: .documents([1, 2]), annotations: true), idempotencyKey: try r.idempotencyKey())
                Issue.record("a different request under the same key was accepted")
            } catch let error as OrchestratorError {
                #expect(error.code == .idempotencyConflict)
            }
            let client = try await h.store.accept(r, idempotencyKey: try r.idempotencyKey(client: "k-1"))
            #expect(client.created && client.record.jobID != first.record.jobID)
            #expect(try await h.store.list().count == 2)
        }
    }

    @Test("a request accepted under a larger document limit stays readable", arguments: Backend.allCases)
    func largeSelection(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let r = request(selection: .documents((1...12_000).map { Int64($0) }))
            await #expect(throws: OrchestratorError.self) { try await h.store.accept(r, idempotencyKey: "k") }
            let accepted = try await h.store.accept(r, idempotencyKey: "k", limits: RequestLimits(maxDocumentIDs: 20_000))
            #expect(try await h.store.get(accepted.record.jobID)?.request == r)
        }
    }

    @Test("concurrent accepts with one key make one exchange", arguments: Backend.allCases)
    func concurrentAccepts(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let r = request()
            let key = try r.idempotencyKey()
            let results = try await withThrowingTaskGroup(of: (String, Bool).self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        let result = try await h.store.accept(r, idempotencyKey: key)
                        return (result.record.jobID, result.created)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(results.map(\.0)).count == 1)
            #expect(results.filter(\.1).count == 1)
            #expect(try await h.store.list().count == 1)
        }
    }

    @Test("compare-and-set transitions: of two racing tasks exactly one wins", arguments: Backend.allCases)
    func casRace(backend: Backend) async throws {
        try await withHarness(backend) { h in
            for round in 0..<5 {
                let record = try await h.accept(request(batch: Int64(round + 1)))
                let outcomes = await withTaskGroup(of: String.self) { group in
                    for target in [ExchangeState.provisioning, .tearingDown(.cancelled)] {
                        group.addTask {
                            do {
                                _ = try await h.store.transition(record.jobID, from: .accepted, to: target)
                                return "won"
                            } catch let error as OrchestratorError {
                                return error.code == .stateConflict ? "lost" : "\(error)"
                            } catch {
                                return "\(error)"
                            }
                        }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                #expect(outcomes.sorted() == ["lost", "won"])
                let stored = try await h.store.get(record.jobID)
                #expect(stored?.version == 2)
            }
            // A stale version loses even when the state matches.
            let record = try await h.accept(request(batch: 99))
            let moved = try await h.store.transition(record.jobID, from: .accepted, to: .provisioning, expectedVersion: 1)
            #expect(moved.state == .provisioning && moved.version == 2)
            await #expect(throws: OrchestratorError.self) {
                try await h.store.transition(record.jobID, from: .provisioning, to: .copyingDatabase, expectedVersion: 1)
            }
            await #expect(throws: OrchestratorError.self) {
                try await h.store.transition(record.jobID, from: .provisioning, to: .finished)
            }
            await #expect(throws: OrchestratorError.self) {
                try await h.store.transition("missing", from: .accepted, to: .provisioning)
            }
            let failed = try await h.store.transition(record.jobID, from: .provisioning, to: .tearingDown(.failed), error: "boom")
            #expect(failed.state == .tearingDown(.failed) && failed.error == "boom" && failed.finishedAt == nil)
            let final = try await h.store.transition(record.jobID, from: .tearingDown(.failed), to: .failed)
            #expect(final.state == .failed && final.error == "boom" && final.finishedAt != nil)
            #expect(try await h.store.list(state: .failed).map(\.jobID) == [record.jobID])
            #expect(try await h.store.list(caseID: 41).count == 6)
            #expect(try await h.store.list(caseID: 42).count == 6)
            #expect(try await h.store.list(caseID: 1).isEmpty)
        }
    }

    @Test("leases: claim takes free or expired non-final exchanges, renew and release", arguments: Backend.allCases)
    func leases(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let a = try await h.accept(request(batch: 1))
            let b = try await h.accept(request(batch: 2))
            let done = try await h.accept(request(batch: 3))
            try await h.move(done, to: .finished)
            let first = try await h.store.claimNextWork(owner: "r1", lease: .seconds(30))
            // r2's lease is short, but long enough that the checks below run before it ends even on
            // a loaded machine (300 ms was not).
            let second = try await h.store.claimNextWork(owner: "r2", lease: .seconds(3))
            #expect(Set([first?.jobID, second?.jobID]) == Set([a.jobID, b.jobID]))
            #expect(first?.owner == "r1")
            #expect(try await h.store.claimNextWork(owner: "r3", lease: .seconds(30)) == nil)
            #expect(try await h.store.renewLease(try #require(first).jobID, owner: "r1", lease: .seconds(30)))
            #expect(try await !h.store.renewLease(try #require(first).jobID, owner: "r2", lease: .seconds(30)))
            try await Task.sleep(for: .milliseconds(3200))
            // r2's lease expired: another replica resumes its exchange.
            let resumed = try await h.store.claimNextWork(owner: "r3", lease: .seconds(30))
            #expect(resumed?.jobID == second?.jobID && resumed?.owner == "r3")
            #expect(try await !h.store.renewLease(try #require(second).jobID, owner: "r2", lease: .seconds(30)))
            #expect(try await h.store.releaseLease(try #require(first).jobID, owner: "r1"))
            #expect(try await h.store.claimNextWork(owner: "r4", lease: .seconds(30))?.jobID == first?.jobID)
        }
    }

    @Test("resources are recorded once, listed in order and marked removed", arguments: Backend.allCases)
    func resources(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            try await h.store.record(jobID: record.jobID, kind: .queue, name: "q1", detail: "s3-copy")
            try await h.store.record(jobID: record.jobID, kind: .queue, name: "q1", detail: "s3-copy")
            try await h.store.record(jobID: record.jobID, kind: .deployment, name: "\(record.jobID)/s3-copy", detail: "s3-copy")
            #expect(try await h.store.resources(record.jobID).map(\.name) == ["q1", "\(record.jobID)/s3-copy"])
            try await h.store.markRemoved(jobID: record.jobID, kind: .queue, name: "q1")
            #expect(try await h.store.resources(record.jobID).map(\.kind) == [.deployment])
            let all = try await h.store.resources(record.jobID, includeRemoved: true)
            #expect(all.count == 2 && all.first?.removedAt != nil)
        }
    }
}
