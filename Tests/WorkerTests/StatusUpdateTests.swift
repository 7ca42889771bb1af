import ExchangerTestSupport
import Broker
import CaseDatabase
import ExchangerEvents
import Foundation
import Logging
import ProcessSupport
import StatusUpdateProcessor
import Testing
import WorkerRuntime

#if canImport(Glibc)
import Glibc
#endif

/// Runs a worker in this process for `body`, then stops it and waits for it.
func withWorker<T: Sendable>(
    _ broker: Broker, queue: String, program: String, handler: any MessageHandler, _ body: () async throws -> T
) async throws -> T {
    var configuration = WorkerConfiguration(source: .queue(queue), program: program)
    configuration.wait = .milliseconds(200)
    configuration.backoff.base = .seconds(1)
    let worker = Worker(
        broker: broker, handler: handler, configuration: configuration, stager: PayloadStager(store: nil),
        logger: Logger(label: "test.\(program)"))
    let running = Task { try await worker.run() }
    do {
        let result = try await body()
        worker.requestStop()
        try await running.value
        return result
    } catch {
        worker.requestStop()
        _ = try? await running.value
        throw error
    }
}

/// A lifecycle event for a batch.
func lifecycleEvent(_ type: EventType, jobID: String, caseID: Int64?, batchID: Int64?, detail: ExchangeStatusDetail = .init()) throws -> EventEnvelope {
    try EventEnvelope(
        type: type, source: "exchanger-orchestrator", jobID: jobID, caseID: caseID, sourceCaseID: 41, batchID: batchID,
        detail: detail)
}

/// Pairs the broker backend with the same kind of case databases.
extension Backend {
    var caseBackend: CaseBackend { self == .postgres ? .postgres : .sqlite }
}

@Suite("Status update processor")
struct StatusUpdateTests {
    @Test("prepare creates exch-status and exch-dlq and subscribes once, however often it runs", arguments: Backend.allCases)
    func prepareIsIdempotent(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await withCaseDatabases(backend.caseBackend, cases: []) { databases in
                let settings = StatusUpdateSettings(caseDatabase: databases.settings)
                let logger = Logger(label: "test")
                try await StatusUpdateHandler.prepare(broker: broker, settings: settings, logger: logger)
                try await StatusUpdateHandler.prepare(broker: broker, settings: settings, logger: logger)
                let status = try #require(try await broker.queue(named: "exch-status"))
                #expect(status.attributes.deadLetterQueue == "exch-dlq")
                #expect(status.attributes.maxReceiveCount == 3)
                #expect(try await broker.queue(named: "exch-dlq") != nil)
                let subscriptions = try await broker.subscriptions(queue: "exch-status")
                #expect(subscriptions.count == 1)
                #expect(subscriptions.first?.filterPolicy?.contains("EXCHANGER_FAILED") == true)
                // Other events do not reach the queue.
                try await broker.publish(try lifecycleEvent(.documentCopied, jobID: "j", caseID: 42, batchID: 7).topicMessage())
                #expect(try await broker.counters("exch-status").total == 0)
            }
        }
    }

    @Test("INITIATED then FINISHED, published on the topic, end as FINISHED in the case database", arguments: Backend.allCases)
    func endToEnd(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await withCaseDatabases(backend.caseBackend, cases: [42]) { databases in
                let settings = StatusUpdateSettings(caseDatabase: databases.settings)
                try await StatusUpdateHandler.prepare(broker: broker, settings: settings, logger: Logger(label: "test"))
                let store = BatchStatusStore(settings: databases.settings)
                let check = BatchStatusStore(settings: databases.settings)
                try await withWorker(broker, queue: "exch-status", program: "status-update", handler: StatusUpdateHandler(store: store)) {
                    try await broker.publish(try lifecycleEvent(.exchangerInitiated, jobID: "job-a", caseID: 42, batchID: 7).topicMessage())
                    #expect(try await eventually { try await check.status(caseID: 42, batchID: 7)?.status == .initiated })
                    let finished = try lifecycleEvent(
                        .exchangerFinished, jobID: "job-a", caseID: 42, batchID: 7,
                        detail: ExchangeStatusDetail(summary: ExchangeSummary(documents: 3, copied: 2, notFound: 1, failed: 0)))
                    try await broker.publish(try finished.topicMessage())
                    #expect(try await eventually { try await check.status(caseID: 42, batchID: 7)?.status == .finished })
                    // A late INITIATED (another event id) is acknowledged and changes nothing.
                    var late = try lifecycleEvent(.exchangerInitiated, jobID: "job-a", caseID: 42, batchID: 7)
                    late.eventID = EventID.random()
                    try await broker.publish(try late.topicMessage())
                    #expect(try await eventually { try await broker.counters("exch-status").total == 0 })
                    let row = try #require(try await check.status(caseID: 42, batchID: 7))
                    #expect(row.status == .finished && row.lastEventID == finished.eventID)
                    #expect(row.summary?.contains("\"copied\":2") == true)
                }
                #expect(try await broker.counters("exch-dlq").total == 0)
                await store.shutdown()
                await check.shutdown()
            }
        }
    }

    @Test("a missing case database, a missing batchId or a body that is no event end in exch-dlq; other types are acknowledged",
          arguments: Backend.allCases)
    func permanentFailures(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, _ in
            try await withCaseDatabases(backend.caseBackend, cases: [42]) { databases in
                let settings = StatusUpdateSettings(caseDatabase: databases.settings)
                try await StatusUpdateHandler.prepare(broker: broker, settings: settings, logger: Logger(label: "test"))
                let store = BatchStatusStore(settings: databases.settings)
                let letters = try await withWorker(broker, queue: "exch-status", program: "status-update", handler: StatusUpdateHandler(store: store)) {
                    try await broker.publish(try lifecycleEvent(.exchangerFailed, jobID: "job-b", caseID: 9_999, batchID: 1).topicMessage())
                    try await broker.publish(try lifecycleEvent(.exchangerInitiated, jobID: "job-c", caseID: 42, batchID: nil).topicMessage())
                    try await broker.send("exch-status", OutgoingMessage(body: "not json"))
                    // Routed here only by a subscription change: acknowledged, nothing written, not dead-lettered.
                    try await broker.send("exch-status", OutgoingMessage(
                        body: try EventCoding.string(try lifecycleEvent(.documentCopied, jobID: "job-d", caseID: 42, batchID: 5))))
                    return try await broker.drain("exch-dlq", count: 3, timeout: .seconds(15))
                }
                #expect(letters.count == 3)
                let envelopes = try letters.map { try EventCoding.decode(DeadLetterEnvelope.self, from: $0.body) }
                #expect(envelopes.allSatisfy { $0.reason == "permanent" && $0.queue == "exch-status" && $0.program == "status-update" })
                #expect(envelopes.contains { $0.error.contains("does not exist") })
                #expect(envelopes.contains { $0.error.contains("batchId") })
                #expect(letters.allSatisfy { $0.attributes[DeadLetterEnvelope.attributeName] != nil })
                #expect(try await broker.counters("exch-status").total == 0)
                #expect(try await store.status(caseID: 42, batchID: 5) == nil)
                #expect(try await databases.exists(caseID: 9_999) == false)
                await store.shutdown()
            }
        }
    }

    @Test("the exchanger-status-update executable writes statuses and exits 0 on SIGTERM", arguments: Backend.allCases)
    func executable(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await withCaseDatabases(backend.caseBackend, cases: [42]) { databases in
                var environment = databases.environment
                environment["EXCHANGER_DATABASE_URL"] = url
                environment["EXCHANGER_WORKER_WAIT_SECONDS"] = "1"
                let child = try ChildProcess(
                    executable: TestEnvironment.executable("exchanger-status-update"), arguments: [], environment: environment,
                    stderr: .inherit)
                let output = Task { try await child.readAll() }
                do {
                    // prepare has run once the subscription exists.
                    #expect(try await eventually(timeout: .seconds(20)) { try await !broker.subscriptions(queue: "exch-status").isEmpty })
                    try await broker.publish(try lifecycleEvent(.exchangerInitiated, jobID: "job-x", caseID: 42, batchID: 3).topicMessage())
                    try await broker.publish(try lifecycleEvent(.exchangerFinished, jobID: "job-x", caseID: 42, batchID: 3).topicMessage())
                    let store = BatchStatusStore(settings: databases.settings)
                    #expect(try await eventually(timeout: .seconds(20)) { try await store.status(caseID: 42, batchID: 3)?.status == .finished })
                    await store.shutdown()
                } catch {
                    child.signal(SIGKILL)
                    _ = try? await child.wait()
                    throw error
                }
                child.signal(SIGTERM)
                let status = try await child.wait()
                let log = try await output.value
                #expect(status == 0, "exchanger-status-update output:\n\(log)")
                #expect(log.contains("batch status recorded"))
            }
        }
    }
}
