import Broker
import CaseData
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

@Suite("exchange runner")
struct RunnerTests {
    @Test("an exchange runs from ACCEPTED to FINISHED with workers consuming its queues", arguments: Backend.allCases)
    func endToEnd(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let copier = InMemoryCopier(count: 12, failures: 1)
            let runner = h.runner(copier)
            let worker = Task {
                // Plays s3-copy and the uploader: copy facts, forward, acknowledge.
                while !Task.isCancelled {
                    let queues = try await h.queues(of: record.jobID)
                    for queue in queues {
                        for message in try await h.broker.receive(queue, maxMessages: 10) {
                            let task = try DocumentTask.decode(message.body)
                            do {
                                try await h.broker.transaction { tx in
                                    if queue.contains("s3_copy") {
                                        let event = try task.event(.documentCopied, source: "test", detail: ExchangeStatusDetail())
                                        try await tx.publish(try event.topicMessage())
                                        if let next = task.routes[DocumentTask.Route.uploader] { try await tx.send(next, try task.outgoing()) }
                                    }
                                    try await tx.delete(queue, message.receipt)
                                }
                            } catch is BrokerError {
                                // The forward hit the seal of a completion check that found messages: retry, as a worker does.
                                try await h.broker.changeVisibility(queue, message.receipt, timeout: .zero)
                            }
                        }
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            defer { worker.cancel() }
            let final = try await runner.run(record.jobID)
            #expect(final.state == .finished)
            #expect(final.summary == ExchangeSummary(documents: 12, copied: 12, notFound: 0, failed: 0))
            #expect(await copier.attempts.value == 2, "one failure, one retry")
            for type in [EventType.exchangerInitiated, .dbCopyFinished, .payloadConstructionFinished, .exchangerDeleteInitiated, .exchangerFinished] {
                #expect(try await loggedEvents(h.broker, jobID: record.jobID, type).count == 1, "\(type)")
            }
            #expect(try await h.queues(of: record.jobID).isEmpty)
        }
    }

    @Test("a copy that keeps failing publishes DB_COPY_FAILED and ends FAILED after teardown", arguments: Backend.allCases)
    func copyFails(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request(annotations: true))
            let copier = InMemoryCopier(count: 3, failures: 10)
            let final = try await h.runner(copier).run(record.jobID)
            #expect(final.state == .failed)
            #expect(await copier.attempts.value == 3, "first attempt and two retries")
            #expect(try await loggedEvents(h.broker, jobID: record.jobID, .dbCopyFailed).count == 1)
            #expect(try await loggedEvents(h.broker, jobID: record.jobID, .exchangerFailed).count == 1)
            #expect(try await h.queues(of: record.jobID).isEmpty)
            #expect(try await h.broker.subscriptions().isEmpty)
        }
    }

    @Test("while the copy waits to retry, the exchange's error says why; a successful retry clears it", arguments: Backend.allCases)
    func copyErrorShownWhileRetrying(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let copier = ErrorObservingCopier(store: h.store, failures: 1)
            let runner = h.runner(copier)
            var final = record
            for _ in 0..<6 where final.state != .processing { final = try await runner.step(record.jobID) }
            #expect(final.state == .processing, "copied and the payload sent")
            let seen = await copier.seen.value
            #expect(seen.count == 2)
            #expect(seen.first == .some(nil), "no error before the first attempt")
            let shown = try #require(seen.last ?? nil, "the second attempt sees the first one's error on the exchange")
            #expect(shown.contains("simulated copy failure 1") && shown.contains("attempt 1 of 3"), "\(shown)")
            #expect(final.error == nil, "cleared once the copy succeeded")
        }
    }

    @Test("cancelling a running exchange tears it down to CANCELLED", arguments: Backend.allCases)
    func cancel(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let runner = h.runner(InMemoryCopier(count: 5))
            var current = record
            while current.state != .processing { current = try await runner.step(record.jobID) }
            #expect(try await runner.step(record.jobID).state == .processing, "messages wait for workers")
            try await runner.cancel(record.jobID)
            #expect(try await runner.run(record.jobID).state == .cancelled)
            #expect(try await h.queues(of: record.jobID).isEmpty)
        }
    }
}

@Suite("replicas")
struct ReplicaTests {
    @Test("two replicas share the exchanges; one that crashed is resumed after its lease expires", arguments: Backend.allCases)
    func replicas(backend: Backend) async throws {
        try await withHarness(backend) { h in
            var jobs: [String] = []
            for batch in Int64(1)...3 { jobs.append(try await h.accept(request(batch: batch)).jobID) }
            // Replica "crashed" claims one exchange and never works on it.
            let abandoned = try #require(try await h.store.claimNextWork(owner: "crashed", lease: .milliseconds(500)))
            let worker = Task {
                while !Task.isCancelled {
                    for queue in try await h.broker.listQueues() where queue.attributes.exchangeID != nil {
                        // The queue may be torn down meanwhile.
                        guard let messages = try? await h.broker.receive(queue.name, maxMessages: 10) else { continue }
                        for message in messages {
                            let task = try DocumentTask.decode(message.body)
                            do {
                                try await h.broker.transaction { tx in
                                    if queue.name.contains("s3_copy") {
                                        try await tx.publish(try task.event(.documentCopied, source: "test", detail: ExchangeStatusDetail()).topicMessage())
                                        if let next = task.routes[DocumentTask.Route.uploader] { try await tx.send(next, try task.outgoing()) }
                                    }
                                    try await tx.delete(queue.name, message.receipt)
                                }
                            } catch is BrokerError {
                                // Refused by a transient seal, or the queue was torn down: retry or move on.
                                try? await h.broker.changeVisibility(queue.name, message.receipt, timeout: .zero)
                            }
                        }
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            defer { worker.cancel() }
            let runner = h.runner(InMemoryCopier(count: 4))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for replica in ["r1", "r2"] {
                    group.addTask {
                        let deadline = ContinuousClock.now + .seconds(20)
                        while ContinuousClock.now < deadline {
                            let open = try await h.store.list().filter { !$0.state.isFinal }
                            if open.isEmpty { return }
                            if try await runner.workOnce(owner: replica, lease: .seconds(5)) == nil {
                                try await Task.sleep(for: .milliseconds(20))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            for job in jobs {
                let record = try await h.store.get(job)
                #expect(record?.state == .finished, "\(job)")
                #expect(record?.summary?.copied == 4)
                #expect(record?.owner == nil)
                #expect(try await loggedEvents(h.broker, jobID: job, .exchangerFinished).count == 1)
            }
            #expect(jobs.contains(abandoned.jobID))
        }
    }
}

/// A copy step failing with a case-data conflict every time.
struct ConflictingCopier: CaseDataCopying {
    let attempts = Counter()

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        _ = await attempts.increment()
        throw CaseDataError(.conflict, "nothing was copied: custom_fields 'Amount' has field_type 'number' in the source and 'text' in the destination")
    }

    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {}

    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { [] }
}

@Suite("a copy conflict is not retried")
struct CopyConflictTests {
    @Test("a conflict fails the exchange after one attempt, with the reason in DB_COPY_FAILED", arguments: Backend.allCases)
    func conflictIsFinal(backend: Backend) async throws {
        try await withHarness(backend) { h in
            let record = try await h.accept(request())
            let copier = ConflictingCopier()
            let final = try await h.runner(copier).run(record.jobID)
            #expect(final.state == .failed)
            #expect(await copier.attempts.value == 1, "no retry")
            let failed = try await loggedEvents(h.broker, jobID: record.jobID, .dbCopyFailed)
            #expect(failed.count == 1)
        }
    }
}

/// A copier that records the exchange's stored error at each attempt and fails the first `failures`.
struct ErrorObservingCopier: CaseDataCopying {
    let store: ExchangeStore
    var failures: Int
    let attempts = Counter()
    let seen = Recorder<String?>()

    func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        await seen.append(try await store.get(exchange.jobID)?.error)
        let attempt = await attempts.increment()
        if attempt <= failures { throw OrchestratorError(.copyFailed, "simulated copy failure \(attempt)") }
        return InMemoryCopier.outcome(2)
    }

    func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {}

    func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] { [] }
}

actor Recorder<Value: Sendable> {
    private(set) var value: [Value] = []
    func append(_ item: Value) { value.append(item) }
}
