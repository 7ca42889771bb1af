import Broker
import DocumentEngine
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Logging
import ObjectStorage
import Testing
import UploaderProcessor
import WorkerRuntime

/// A document engine that fails every call transiently while `down`.
final class SwitchableEngine: DocumentEngine, @unchecked Sendable {
    let base: any DocumentEngine
    private let lock = NSLock()
    private var isDown = true
    private var failedCalls = 0

    init(_ base: any DocumentEngine) { self.base = base }

    var down: Bool {
        get { lock.withLock { isDown } }
        set { lock.withLock { isDown = newValue } }
    }
    var failures: Int { lock.withLock { failedCalls } }

    private func check() throws {
        try lock.withLock {
            if isDown {
                failedCalls += 1
                throw DocumentEngineError(.transient, "engine down (test)")
            }
        }
    }

    func ingest(_ id: EngineDocumentID, pdf: PDFSource, annotations: InstantJSON) async throws -> IngestResult {
        try check()
        return try await base.ingest(id, pdf: pdf, annotations: annotations)
    }
    func exists(_ id: EngineDocumentID) async throws -> Bool { try check(); return try await base.exists(id) }
    func info(_ id: EngineDocumentID) async throws -> EngineDocumentInfo { try check(); return try await base.info(id) }
    func document(_ id: EngineDocumentID) async throws -> Data { try check(); return try await base.document(id) }
    func annotations(_ id: EngineDocumentID) async throws -> InstantJSON { try check(); return try await base.annotations(id) }
    func delete(_ id: EngineDocumentID) async throws { try check(); try await base.delete(id) }
    func shutdown() async throws { try await base.shutdown() }
    func commentThreads(_ id: EngineDocumentID) async throws -> [CommentThread] { try check(); return try await base.commentThreads(id) }
    func putCommentThreads(_ id: EngineDocumentID, _ threads: [CommentThread]) async throws { try check(); try await base.putCommentThreads(id, threads) }
    func buildFlattened(pdf: Data, annotations: InstantJSON) async throws -> Data {
        try check()
        return try await base.buildFlattened(pdf: pdf, annotations: annotations)
    }
    func pageCount(_ id: EngineDocumentID) async throws -> Int { try check(); return try await base.pageCount(id) }
    func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String { try check(); return try await base.pageText(id, pageIndex: pageIndex) }
}

@Suite struct CircuitBreakerTests {
    @Test func theStateMachineOpensAfterFiveFailuresAndTriesOnceAfterThirtySeconds() {
        var breaker = CircuitBreakerState()
        #expect(breaker.settings.failureThreshold == 5 && breaker.settings.openDuration == .seconds(30))
        let start = ContinuousClock.now
        for failure in 1...4 {
            let allowed = breaker.allow(at: start)
            #expect(allowed)
            breaker.recordFailure(at: start)
            #expect(breaker.phase == .closed(failures: failure))
        }
        breaker.recordSuccess()
        #expect(breaker.phase == .closed(failures: 0), "a success resets the count")
        for _ in 1...5 { breaker.recordFailure(at: start) }
        #expect(breaker.phase == .open(until: start + .seconds(30)))
        let refusedWhileOpen = breaker.allow(at: start + .seconds(29))
        #expect(!refusedWhileOpen, "open: refused")
        breaker.recordFailure(at: start + .seconds(29))
        #expect(breaker.reopensAt == start + .seconds(30), "a late failure does not extend the open period")

        let trial = breaker.allow(at: start + .seconds(30))
        #expect(trial, "half-open: one trial")
        #expect(breaker.phase == .halfOpen(trialInFlight: true))
        let secondTrial = breaker.allow(at: start + .seconds(30))
        #expect(!secondTrial, "only one trial")
        breaker.recordFailure(at: start + .seconds(31))
        #expect(breaker.phase == .open(until: start + .seconds(61)), "a failed trial opens again")

        let nextTrial = breaker.allow(at: start + .seconds(61))
        #expect(nextTrial)
        breaker.recordSuccess()
        let afterClose = breaker.allow(at: start + .seconds(61))
        #expect(breaker.isClosed && afterClose)
    }

    @Test func settingsComeFromTheEnvironment() throws {
        #expect(try CircuitBreakerSettings(environment: [:]) == CircuitBreakerSettings())
        let set = try CircuitBreakerSettings(environment: ["EXCHANGER_ENGINE_BREAKER_FAILURES": "3", "EXCHANGER_ENGINE_BREAKER_OPEN_SECONDS": "1.5"])
        #expect(set.failureThreshold == 3 && set.openDuration == .milliseconds(1500))
        for bad in [["EXCHANGER_ENGINE_BREAKER_FAILURES": "0"], ["EXCHANGER_ENGINE_BREAKER_OPEN_SECONDS": "-1"], ["EXCHANGER_ENGINE_BREAKER_FAILURES": "x"]] {
            #expect(throws: DocumentEngineError.self) { try CircuitBreakerSettings(environment: bad) }
        }
    }

    @Test func onlyTransientFailuresCountAndAnOpenBreakerRefusesCalls() async throws {
        let breaker = EngineCircuitBreaker(settings: CircuitBreakerSettings(failureThreshold: 2, openDuration: .seconds(60))) {}
        for _ in 0..<5 {
            await #expect(throws: DocumentEngineError.self) {
                try await breaker.call { throw DocumentEngineError(.permanent, "4xx") } as Void
            }
        }
        #expect(await breaker.phase == .closed(failures: 0), "permanent errors say the engine answers")
        for _ in 0..<2 {
            await #expect(throws: DocumentEngineError.self) { try await breaker.call { throw DocumentEngineError(.transient, "503") } as Void }
        }
        guard case .open = await breaker.phase else {
            Issue.record("two transient failures open it")
            return
        }
        let calls = LockedCounter()
        let refused = await engineError { try await breaker.call { _ = calls.next() } }
        #expect(refused == .transient && calls.value == 0, "an open breaker does not call")
        #expect(await !breaker.permitsReceiving())
    }

    @Test func whileTheBreakerIsOpenTheWorkerReceivesNothingAndEveryDocumentIsDoneAfterRecovery() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDestinationPDFs(store, documents: 1...12)
                try await broker.createQueue("upload-dlq")
                try await broker.createQueue(
                    "upload", attributes: QueueAttributes(visibilityTimeout: .seconds(5), maxReceiveCount: 3, deadLetterQueue: "upload-dlq"))
                _ = try await broker.sendBatch("upload", try (1...12).map { try uploadTask($0).outgoing() })

                let switchable = SwitchableEngine(try LocalDocumentEngine(store: store))
                let engine = CircuitBreakingEngine(switchable, settings: CircuitBreakerSettings(failureThreshold: 3, openDuration: .milliseconds(700)))
                let handler = UploaderHandler(store: store, engine: engine, ownsStore: false)
                #expect(handler.receiveGate != nil)
                var configuration = testConfiguration("upload", batch: 4, concurrency: 1)
                configuration.gateRecheckInterval = .milliseconds(50)
                let worker = Worker(broker: broker, handler: handler, configuration: configuration, stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                let running = Task { try await worker.run() }

                let opened = await eventually(timeout: .seconds(10)) {
                    if case .open = await engine.breaker.phase { return true }
                    return false
                }
                #expect(opened, "the breaker opens")
                // Down for three open periods: only probes reach the engine, nothing is received.
                try await Task.sleep(for: .seconds(2.5))
                let failuresWhileOpen = switchable.failures
                #expect(try await broker.counters("upload-dlq").total == 0, "nothing dead-lettered while open")
                let counters = try await broker.counters("upload")
                #expect(counters.total == 12, "every document still waits")
                let maxReceives = try await broker.transaction { tx in
                    try await tx.query("SELECT max(receive_count) AS m FROM broker_messages")
                }
                #expect((try maxReceives.first?.require("m", \.int64) ?? 0) <= 1, "receive counts are not burnt while open")

                switchable.down = false
                let done = try await eventually(timeout: .seconds(20)) { try await broker.counters("upload").total == 0 }
                worker.requestStop()
                try await running.value
                #expect(done, "every document is uploaded after recovery")
                #expect(failuresWhileOpen >= 3)
                #expect(try await broker.counters("upload-dlq").total == 0)
                let uploaded = try await loggedEnvelopes(broker).filter { $0.eventType == .documentUploaded }
                #expect(Set(uploaded.map(\.documentID)) == Set((1...12).map { Int64($0 + 1000) }))
                try await store.shutdown()
            }
        }
    }
}
