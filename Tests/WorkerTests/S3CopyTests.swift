import ExchangerTestSupport
import Broker
import ConcurrencySupport
import ExchangerEvents
import Foundation
import Logging
import ObjectStorage
import ProcessSupport
import S3CopyProcessor
import Testing
import WorkerRuntime

#if canImport(Glibc)
import Glibc
#endif

/// A worker process of this build, its JSON log lines collected.
final class WorkerProcessHandle: Sendable {
    let child: ChildProcess
    let lines = LockedBox([String]())
    private let reader: Task<Void, Never>

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        var merged = ["EXCHANGER_LOG_LEVEL": "info"]
        merged.merge(environment) { $1 }
        let child = try ChildProcess(executable: TestEnvironment.executable(executable), arguments: arguments, environment: merged)
        self.child = child
        let lines = self.lines
        reader = Task {
            do {
                for try await line in child.lines() { lines.withLock { $0.append(line) } }
            } catch {}
        }
    }

    var pid: pid_t { child.pid }
    func signal(_ signal: Int32) { child.signal(signal) }

    /// Waits for the exit status, failing the test after `timeout`.
    func wait(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let child = self.child
        let waiter = Task { try await child.wait() }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if kill(child.pid, 0) != 0 || isZombie(child.pid) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if ContinuousClock.now >= deadline {
            child.signal(SIGKILL, group: true)
            Issue.record("worker \(child.pid) did not exit within \(timeout)")
        }
        let status = try await waiter.value
        _ = await reader.value
        return status
    }

    func log(containing text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }
    func lines(containing text: String) -> [String] { lines.withLock { $0.filter { $0.contains(text) } } }

    private func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }
}

/// Source documents with a PDF rendition and a native each, in a case of a store.
func writeDocuments(_ store: any ObjectStore, caseID: Int64, documents: ClosedRange<Int64>, natives: Bool = false, size: Int = 4096) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for document in documents {
            group.addTask {
                let pdf = Data((0..<size).map { UInt8(truncatingIfNeeded: Int($0) &+ Int(document)) })
                try await store.put(try CaseKeys.documentFile(caseID: caseID, documentID: document, fileName: "\(document).pdf"), pdf)
                if natives {
                    try await store.put(try CaseKeys.documentFile(caseID: caseID, documentID: document, fileName: "original \(document).docx"), Data("native \(document)".utf8))
                }
            }
        }
        try await group.waitForAll()
    }
}

func copyTask(_ document: Int64, job: String = "job-1", uploader: String = "uploader", annotations: Bool = false, natives: Bool = false) -> DocumentTask {
    var files = [DocumentFile(name: "\(document).pdf", kind: .rendition)]
    if natives { files.append(DocumentFile(name: "original \(document).docx", kind: .native)) }
    return DocumentTask(
        jobID: job, sourceCaseID: 10, caseID: 20, batchID: 5, sourceDocumentID: document, documentID: document + 1000,
        files: files, requiresAnnotations: annotations, includeNatives: natives, routes: [DocumentTask.Route.uploader: uploader])
}

func destinationKey(_ document: Int64, _ name: String? = nil) throws -> ObjectKey {
    try CaseKeys.documentFile(caseID: 20, documentID: document + 1000, fileName: name ?? "\(document).pdf")
}

@Suite(.serialized) struct S3CopyTests {
    @Test(arguments: Backend.allCases)
    func copiesEachPathAndReportsMissingDocuments(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDocuments(store, caseID: 10, documents: 1...3, natives: true)
                try await broker.createQueue("copy-dlq")
                try await broker.createQueue("uploader")
                try await broker.createQueue("copy", attributes: QueueAttributes(deadLetterQueue: "copy-dlq"))
                _ = try await broker.sendBatch("copy", [
                    try copyTask(1).outgoing(),  // no annotations: rendition → uploader
                    try copyTask(2, natives: true).outgoing(),  // rendition + native → uploader
                    try copyTask(3, annotations: true, natives: true).outgoing(),  // native only, nothing sent on
                    try copyTask(4).outgoing(),  // missing in the source
                ])
                let worker = Worker(
                    broker: broker, handler: S3CopyHandler(store: store), configuration: testConfiguration("copy"),
                    stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                let done = try await runWorker(worker) { try await broker.counters("copy").total == 0 }
                #expect(done)

                #expect(try await store.get(destinationKey(1)) == store.get(CaseKeys.documentFile(caseID: 10, documentID: 1, fileName: "1.pdf")))
                #expect(try await store.exists(destinationKey(2, "original 2.docx")))
                #expect(try await !store.exists(destinationKey(3)), "with annotations the pre-uploader makes the PDF")
                #expect(try await store.exists(destinationKey(3, "original 3.docx")))
                #expect(try await !store.exists(destinationKey(4)))

                let forwarded = try await broker.drain("uploader", count: 2)
                #expect(Set(try forwarded.map { try DocumentTask.decode($0.body).sourceDocumentID }) == [1, 2])
                #expect(forwarded.allSatisfy { $0.attributes["jobId"] == .string("job-1") })
                #expect(try await broker.counters("copy-dlq").total == 0, "a missing document is not an error to retry")

                let log = try await eventLog(broker)
                let types = log.map(\.type)
                #expect(types.filter { $0 == "DOCUMENT_COPIED" }.count == 2)
                #expect(types.filter { $0 == "NATIVE_DOCUMENT_COPIED" }.count == 2)
                #expect(types.filter { $0 == "DOCUMENT_NOT_FOUND" }.count == 1)
                try await store.shutdown()
            }
        }
    }

    @Test func runningTwiceOnTheSameMessageChangesNothing() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDocuments(store, caseID: 10, documents: 1...1, natives: true)
                try await broker.createQueue("uploader")
                try await broker.createQueue("copy")
                _ = try await broker.send("copy", try copyTask(1, natives: true).outgoing())
                let received = try #require(try await broker.receive("copy").first)
                let queue = try #require(try await broker.queue(named: "copy"))
                let message = WorkerMessage(received: received, body: received.body, queue: queue, logger: Logger(label: "test"))
                let handler = S3CopyHandler(store: store)
                let first = try await handler.handle(message)
                let second = try await handler.handle(message)
                guard case .success(let a) = first, case .success(let b) = second else {
                    Issue.record("both runs succeed")
                    return
                }
                #expect(a.events.map(\.eventID) == b.events.map(\.eventID), "the same facts, the same ids")
                for event in a.events + b.events { _ = try await broker.publish(try event.topicMessage()) }
                #expect(try await eventLog(broker).count == 2, "DOCUMENT_COPIED and NATIVE_DOCUMENT_COPIED, once each")
                #expect(try await store.get(destinationKey(1)).count == 4096)
                try await store.shutdown()
            }
        }
    }

    @Test func garbageAndImpossibleTasksAreDeadLetteredWithoutRetries() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.postgres) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDocuments(store, caseID: 10, documents: 1...1)
                try await broker.createQueue("copy-dlq")
                try await broker.createQueue("copy", attributes: QueueAttributes(deadLetterQueue: "copy-dlq"))
                var noRoute = copyTask(1)
                noRoute.routes = [:]
                var noRendition = copyTask(1)
                noRendition.files = []
                _ = try await broker.sendBatch("copy", [
                    OutgoingMessage(body: "{\"jobId\": 12"), OutgoingMessage(body: "\u{1F4A9}"), try noRoute.outgoing(), try noRendition.outgoing(),
                    OutgoingMessage(body: #"{"version":1,"jobId":"j","sourceCaseId":1,"caseId":2,"batchId":3,"sourceDocumentId":1,"documentId":2,"files":[{"name":"../../etc/passwd","kind":"rendition"}],"requiresAnnotations":false,"includeNatives":false,"routes":{"uploader":"u"}}"#),
                ])
                let worker = Worker(
                    broker: broker, handler: S3CopyHandler(store: store), configuration: testConfiguration("copy"),
                    stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                let done = try await runWorker(worker) { try await broker.counters("copy-dlq").visible == 5 }
                #expect(done)
                let letters = try await broker.drain("copy-dlq", count: 5).map { try EventCoding.decode(DeadLetterEnvelope.self, from: $0.body) }
                #expect(letters.allSatisfy { $0.reason == "permanent" && $0.receiveCount == 1 })
                #expect(letters.contains { $0.error.contains("invalidKey") }, "a path-escaping file name is refused")
                #expect(letters.contains { $0.error.contains("no uploader queue") })
                #expect(letters.contains { $0.error.contains("no PDF rendition") })
                try await store.shutdown()
            }
        }
    }

    // MARK: Real worker processes

    @Test(arguments: Backend.allCases)
    func aWorkerKilledMidBatchLosesAndDuplicatesNothing(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestDatabase(backend) { url in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = try await ObjectStorage.open("file://" + directory.path)
                let count: Int64 = 300
                try await writeDocuments(store, caseID: 10, documents: 1...count, size: 64 * 1024)
                try await broker.createQueue("copy-dlq")
                try await broker.createQueue("uploader")
                try await broker.createQueue("copy", attributes: QueueAttributes(visibilityTimeout: .seconds(2), deadLetterQueue: "copy-dlq"))
                _ = try await broker.sendBatch("copy", try (1...count).map { try copyTask($0).outgoing() })
                let arguments = ["--queue", "copy", "--database", url, "--storage-url", "file://" + directory.path, "--batch-size", "25", "--concurrency", "1", "--wait", "1"]

                let victim = try WorkerProcessHandle("exchanger-s3-copy", arguments)
                // Kill it while it holds a batch: some documents forwarded, others leased and unfinished.
                let holding = try await eventually(timeout: .seconds(30)) {
                    let counters = try await broker.counters(["copy", "uploader"])
                    return (counters["uploader"]?.visible ?? 0) >= 5 && (counters["copy"]?.inFlight ?? 0) >= 5
                }
                #expect(holding)
                victim.signal(SIGKILL)
                #expect(try await victim.wait() == 128 + SIGKILL)
                let orphaned = try await broker.counters("copy").inFlight
                #expect(orphaned > 0, "the dead worker held leases")

                let survivors = try (0..<2).map { _ in try WorkerProcessHandle("exchanger-s3-copy", arguments) }
                let finished = try await eventually(timeout: .seconds(60)) { try await broker.counters("uploader").visible == Int(count) }
                #expect(finished)
                for survivor in survivors { survivor.signal(SIGTERM) }
                for survivor in survivors { #expect(try await survivor.wait() == 0) }

                // Every object copied, byte for byte; every uploader message exactly once; every event once.
                for document in 1...count {
                    let source = try await store.get(try CaseKeys.documentFile(caseID: 10, documentID: document, fileName: "\(document).pdf"))
                    #expect(try await store.get(destinationKey(document)) == source)
                }
                let forwarded = try await broker.drain("uploader", count: Int(count) + 10, timeout: .seconds(3))
                let documents = try forwarded.map { try DocumentTask.decode($0.body).sourceDocumentID }
                #expect(documents.count == Int(count))
                #expect(Set(documents).count == Int(count))
                let log = try await eventLog(broker)
                #expect(log.filter { $0.type == "DOCUMENT_COPIED" }.count == Int(count))
                #expect(Set(log.map(\.id)).count == log.count)
                #expect(try await broker.counters(["copy", "copy-dlq"]).values.allSatisfy { $0.total == 0 })
                try await store.shutdown()
            }
        }
    }

    @Test func aPoisonMessageIsDeadLetteredAfterMaxReceivesAndItsErrorEventPublished() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestDatabase(.postgres) { url in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDocuments(store, caseID: 10, documents: 1...20)
                let dlq = try WorkerProcessHandle("exchanger-dlq", ["--database", url, "--wait", "1"])
                #expect(try await eventually(timeout: .seconds(20)) { try await broker.queue(named: "exch-dlq") != nil })
                try await broker.createQueue("uploader")
                try await broker.createQueue(
                    "copy", attributes: QueueAttributes(visibilityTimeout: .seconds(10), maxReceiveCount: 3, deadLetterQueue: "exch-dlq", program: "s3-copy"))
                // Document 7 routes to a queue that does not exist: every attempt fails (recoverably).
                var tasks = (1...20).map { copyTask(Int64($0)) }
                tasks[6].routes = [DocumentTask.Route.uploader: "gone"]
                _ = try await broker.sendBatch("copy", try tasks.map { try $0.outgoing() })
                let copier = try WorkerProcessHandle(
                    "exchanger-s3-copy", ["--queue", "copy", "--database", url, "--storage-url", "file://" + directory.path, "--wait", "1"],
                    environment: ["EXCHANGER_WORKER_BACKOFF_BASE_SECONDS": "1", "EXCHANGER_WORKER_BACKOFF_CAP_SECONDS": "2"])

                let published = try await eventually(timeout: .seconds(40)) {
                    try await eventLog(broker).contains { $0.type == "S3_DOC_COPIED" }
                }
                #expect(published)
                #expect(try await broker.counters("uploader").visible == 19, "the neighbours went through")
                #expect(try await broker.counters("copy").total == 0)
                let rows = try await broker.transaction { tx in
                    try await tx.query("SELECT queue, program, reason, receive_count, document_id, error FROM exchanger_dead_letters")
                }
                #expect(rows.count == 1)
                let row = try #require(rows.first)
                #expect(row["queue"].string == "copy")
                #expect(row["program"].string == "s3-copy")
                #expect(row["reason"].string == "retriesExhausted")
                #expect(row["receive_count"].int == 3)
                #expect(row["document_id"].int64 == 1007)
                #expect(row["error"].string?.contains("gone") == true)
                let errorEvents = try await broker.transaction { tx in
                    try await tx.query("SELECT body FROM broker_events WHERE attributes IS NOT NULL ORDER BY seq")
                }.compactMap { $0["body"].string.flatMap { try? EventEnvelope.decode($0) } }.filter { $0.eventType == .s3DocCopied }
                #expect(errorEvents.count == 1)
                let detail = try #require(try errorEvents.first?.detail(as: ProcessingErrorDetail.self))
                #expect(detail.status == "ERROR")
                #expect(errorEvents.first?.documentID == 1007)
                #expect(errorEvents.first?.jobID == "job-1")

                for process in [copier, dlq] { process.signal(SIGTERM) }
                for process in [copier, dlq] { #expect(try await process.wait() == 0) }
                try await store.shutdown()
            }
        }
    }

    @Test func aPostgresRestartUnderAWorkerLosesAndDuplicatesNothing() async throws {
        try await withTemporaryDirectory { directory in
            try await RestartablePostgres.withDatabase { url in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = try await ObjectStorage.open("file://" + directory.path)
                let count: Int64 = 400
                try await writeDocuments(store, caseID: 10, documents: 1...count, size: 8 * 1024)
                try await broker.createQueue("uploader")
                try await broker.createQueue("copy", attributes: QueueAttributes(visibilityTimeout: .seconds(3), maxReceiveCount: 20))
                _ = try await broker.sendBatch("copy", try (1...count).map { try copyTask($0).outgoing() })
                let worker = try WorkerProcessHandle(
                    "exchanger-s3-copy",
                    ["--queue", "copy", "--database", url, "--storage-url", "file://" + directory.path, "--batch-size", "10", "--concurrency", "2",
                     "--wait", "1"],
                    environment: ["EXCHANGER_WORKER_BACKOFF_BASE_SECONDS": "1", "EXCHANGER_WORKER_BACKOFF_CAP_SECONDS": "2"])
                #expect(try await eventually(timeout: .seconds(30)) { try await broker.counters("uploader").visible >= 20 })
                try await RestartablePostgres.restart()
                let before = (try? await broker.counters("uploader").visible) ?? 0
                #expect(before < Int(count), "the restart happened while work was left")

                // Counters fail while the server comes back; the worker reconnects on its own.
                let finished = await eventually(timeout: .seconds(90)) {
                    ((try? await broker.counters("uploader").visible) ?? 0) == Int(count)
                }
                #expect(finished)
                worker.signal(SIGTERM)
                #expect(try await worker.wait() == 0)
                #expect(worker.log(containing: "receive failed") || worker.log(containing: "could not"), "it did see the restart")

                let forwarded = try await broker.drain("uploader", count: Int(count) + 10, timeout: .seconds(3))
                let documents = try forwarded.map { try DocumentTask.decode($0.body).sourceDocumentID }
                #expect(documents.count == Int(count))
                #expect(Set(documents).count == Int(count), "each document handed on once")
                let log = try await eventLog(broker)
                #expect(log.filter { $0.type == "DOCUMENT_COPIED" }.count == Int(count))
                #expect(try await broker.counters("copy").total == 0)
                try await store.shutdown()
            }
        }
    }

    @Test func sigtermDrainsAndExitsZero() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestDatabase(.postgres) { url in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = try await ObjectStorage.open("file://" + directory.path)
                let count: Int64 = 1500
                try await writeDocuments(store, caseID: 10, documents: 1...count, size: 1024)
                try await broker.createQueue("uploader")
                try await broker.createQueue("copy", attributes: QueueAttributes(visibilityTimeout: .seconds(120)))
                _ = try await broker.sendBatch("copy", try (1...count).map { try copyTask($0).outgoing() })
                let worker = try WorkerProcessHandle(
                    "exchanger-s3-copy",
                    ["--queue", "copy", "--database", url, "--storage-url", "file://" + directory.path, "--batch-size", "50", "--concurrency", "2"])
                #expect(try await eventually(timeout: .seconds(30)) { try await broker.counters("uploader").visible >= 50 })
                worker.signal(SIGTERM)
                #expect(try await worker.wait(timeout: .seconds(20)) == 0)
                #expect(worker.log(containing: "stop requested"))
                let counters = try await broker.counters(["copy", "uploader"])
                #expect(counters["copy"]?.inFlight == 0, "no message left in flight")
                #expect((counters["copy"]?.visible ?? 0) > 0, "it stopped before the end")
                #expect((counters["copy"]?.visible ?? 0) + (counters["uploader"]?.visible ?? 0) == Int(count), "nothing lost")
                // One info line per document it finished, with the job and the document.
                let done = worker.lines(containing: #""msg":"document done""#)
                #expect(done.count == counters["uploader"]?.visible, "one line per forwarded document")
                #expect(done.allSatisfy { $0.contains(#""jobId":"job-1""#) && $0.contains(#""documentId":"#) && $0.contains(#""level":"info""#) })

                // An idle worker parked in a long poll stops promptly too.
                try await broker.createQueue("uploader-none")
                let idle = try WorkerProcessHandle("exchanger-s3-copy", ["--queue", "uploader-none", "--database", url, "--storage-url", "file://" + directory.path])
                #expect(await eventually { idle.log(containing: "worker started") })
                try await Task.sleep(for: .milliseconds(500))
                #expect(!idle.log(containing: "worker exits"), "parked in its long poll, not gone")
                let started = ContinuousClock.now
                idle.signal(SIGTERM)
                #expect(try await idle.wait() == 0)
                #expect(ContinuousClock.now - started < .seconds(5))
                try await store.shutdown()
            }
        }
    }

    @Test func unboundWorkersServeEveryQueueOfTheirProgramAgainstS3() async throws {
        let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_ENDPOINT")
        let bucket = "exch-copy-" + UUID().uuidString.lowercased().prefix(8)
        let environment = [
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint,
            "EXCHANGER_WORKER_QUEUE_REFRESH_SECONDS": "0.2",
        ]
        let opened = try await ObjectStorage.open("s3://\(bucket)", environment: environment)
        let store = try #require(opened as? S3ObjectStore)
        try await store.createBucket()
        try await withTestDatabase(.postgres) { url in
            let broker = try await Broker.connect(url: url)
            defer { Task { await broker.close() } }
            try await writeDocuments(store, caseID: 10, documents: 1...20, natives: true)
            try await broker.createQueue("uploader")
            for exchange in ["a", "b"] {
                try await broker.createQueue("copy-\(exchange)", attributes: QueueAttributes(exchangeID: exchange, program: "s3-copy"))
            }
            _ = try await broker.sendBatch("copy-a", try (1...10).map { try copyTask($0, job: "a", natives: true).outgoing() })
            let worker = try WorkerProcessHandle(
                "exchanger-s3-copy", ["--program", "s3-copy", "--database", url, "--storage-url", "s3://\(bucket)", "--wait", "1"],
                environment: environment)
            // A queue created after the worker started is found too.
            try await Task.sleep(for: .milliseconds(500))
            _ = try await broker.sendBatch("copy-b", try (11...20).map { try copyTask($0, job: "b", natives: true).outgoing() })
            let done = try await eventually(timeout: .seconds(30)) { try await broker.counters("uploader").visible == 20 }
            #expect(done)
            worker.signal(SIGTERM)
            #expect(try await worker.wait() == 0)
            for document: Int64 in 1...20 {
                #expect(try await store.exists(destinationKey(document)))
                #expect(try await store.get(destinationKey(document, "original \(document).docx")) == Data("native \(document)".utf8))
            }
        }
        for try await info in store.list(prefix: "") { try await store.delete(info.key) }
        try await store.shutdown()
    }
}
