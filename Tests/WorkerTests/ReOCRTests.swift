import Broker
import DocumentEngine
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Logging
import ObjectStorage
import ReOCRProcessor
import Testing
import UploaderProcessor
import WorkerRuntime

#if canImport(Glibc)
import Glibc
#endif

/// The page lines of destination document `document` (case 20, batch 5) in the re-OCR tests.
func reOCRPages(_ document: Int64) -> [[String]] {
    [["Memo \(document) (privileged)", "merger agreement draft"], ["Page 2 of document \(document)"], ["closing board meeting"]]
}

/// Ingests documents into the engine as the uploader does and returns their DOCUMENT_UPLOADED events.
func uploadedEvents(
    _ engine: LocalDocumentEngine, documents: [Int64], job: String = "job-ocr", routes: [String: String]? = [DocumentTask.Route.searchText: "search"]
) async throws -> [EventEnvelope] {
    var events: [EventEnvelope] = []
    for document in documents {
        let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: document, exhibitID: nil)
        let result = try await engine.ingest(id, pdf: .bytes(textPDF(reOCRPages(document))), annotations: .empty)
        let detail = DocumentUploadedDetail(
            sourceDocumentID: document - 1000, exhibitID: nil, engineDocumentID: id.rawValue,
            pdfKey: "case_20/documents/\(document)/\(document).pdf", bytes: result.document.bytes, sha256: result.document.sha256,
            annotations: 0, attachments: 0, outcome: result.outcome.rawValue, routes: routes)
        events.append(try EventEnvelope(
            type: .documentUploaded, source: "exchanger-uploader", jobID: job, caseID: 20, sourceCaseID: 10, batchID: 5,
            documentID: document, correlationID: job, detail: detail))
    }
    return events
}

@Suite("Re-OCR processor", .serialized) struct ReOCRTests {
    @Test("writes each page's text byte-exact and sends one search-text task; a duplicate delivery changes nothing")
    func handlerWritesTextsAndSendsOnce() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                let engine = try LocalDocumentEngine(store: store)
                let event = try #require(try await uploadedEvents(engine, documents: [1001]).first)
                try await broker.createQueue("reocr")
                try await broker.createQueue("search")
                _ = try await broker.send("reocr", OutgoingMessage(body: try EventCoding.string(event), attributes: event.filterAttributes))
                let received = try #require(try await broker.receive("reocr").first)
                let queue = try #require(try await broker.queue(named: "reocr"))
                let message = WorkerMessage(received: received, body: received.body, queue: queue, logger: Logger(label: "test"))
                let handler = ReOCRHandler(store: store, engine: engine, ownsStore: false)

                guard case .success(let first) = try await handler.handle(message) else {
                    Issue.record("the first run succeeds")
                    return
                }
                let expected = ["Memo 1001 (privileged)\nmerger agreement draft", "Page 2 of document 1001", "closing board meeting"]
                for (position, text) in expected.enumerated() {
                    let key = try CaseKeys.attachmentText(caseID: 20, batchID: 5, documentID: 1001, position: position)
                    #expect(key.rawValue == "case_20/processed-files/5/txt/1001/attachments/\(position)/content.txt")
                    #expect(try await store.get(key) == Data(text.utf8), "byte-exact text of page \(position)")
                }
                #expect(first.events.isEmpty)
                #expect(first.messages.count == 1)
                let sent = try #require(first.messages.first)
                #expect(sent.queue == "search", "the queue named by the event's routes")
                let task = try SearchTextTask.decode(sent.message.body)
                #expect(task.caseID == 20 && task.batchID == 5 && task.documentID == 1001 && task.sourceDocumentID == 1)
                #expect(task.jobID == "job-ocr" && task.engineDocumentID == "document_20_5_1001_0")
                #expect(task.pages.map(\.position) == [0, 1, 2])
                #expect(task.pages.map(\.bytes) == expected.map(\.utf8.count))
                #expect(sent.message.attributes["documentId"] == .string("1001"))

                func contents() async throws -> [String: Data] {
                    var result: [String: Data] = [:]
                    for object in try await store.list(prefix: "case_20/").collect() { result[object.key.rawValue] = try await store.get(object.key) }
                    return result
                }
                let before = try await contents()
                #expect(before.count == 3)
                guard case .success(let second) = try await handler.handle(message) else {
                    Issue.record("the second run succeeds")
                    return
                }
                #expect(second == first, "the same effects: the same message, built from the same text")
                #expect(try await contents() == before, "the same objects, the same bytes")

                // Through the runtime, the message is handed on in the acknowledging transaction: once.
                try await broker.changeVisibility("reocr", received.receipt, timeout: .zero)
                let worker = Worker(
                    broker: broker, handler: handler, configuration: testConfiguration("reocr"), stager: PayloadStager(store: nil),
                    logger: Logger(label: "test"))
                #expect(try await runWorker(worker) { try await broker.counters("reocr").total == 0 })
                let handed = try await broker.drain("search", count: 2, timeout: .seconds(1))
                #expect(handed.count == 1)
                #expect(try handed.first.map { try SearchTextTask.decode($0.body) } == task)
                try await store.shutdown()
            }
        }
    }

    @Test("garbage, other events, missing routes and missing documents are dead-lettered without retries")
    func permanentErrors() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                let engine = try LocalDocumentEngine(store: store)
                let good = try #require(try await uploadedEvents(engine, documents: [1001]).first)
                let noRoute = try #require(try await uploadedEvents(engine, documents: [1002], routes: nil).first)
                var gone = try #require(try await uploadedEvents(engine, documents: [1003]).first)
                try await engine.delete(try EngineDocumentID(caseID: 20, batchID: 5, documentID: 1003, exhibitID: nil))
                gone.eventID = "evt-gone"
                var other = good
                other.eventType = .documentCopied
                other.eventID = "evt-other"
                try await broker.createQueue("reocr-dlq")
                try await broker.createQueue("reocr", attributes: QueueAttributes(maxReceiveCount: 5, deadLetterQueue: "reocr-dlq"))
                try await broker.createQueue("search")
                _ = try await broker.sendBatch("reocr", [
                    OutgoingMessage(body: "not json"),
                    OutgoingMessage(body: #"{"eventId":"x"}"#),
                    OutgoingMessage(body: try EventCoding.string(other)),
                    OutgoingMessage(body: try EventCoding.string(noRoute)),
                    OutgoingMessage(body: try EventCoding.string(gone)),
                    OutgoingMessage(body: try EventCoding.string(good)),
                ])
                let worker = Worker(
                    broker: broker, handler: ReOCRHandler(store: store, engine: engine, ownsStore: false),
                    configuration: testConfiguration("reocr"), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                #expect(try await runWorker(worker) { try await broker.counters("reocr").total == 0 })
                let dead = try await broker.drain("reocr-dlq", count: 10, timeout: .seconds(2))
                #expect(dead.count == 5)
                let handed = try await broker.drain("search", count: 3, timeout: .seconds(1))
                #expect(try handed.map { try SearchTextTask.decode($0.body).documentID } == [1001], "the good one is not held up")
                try await store.shutdown()
            }
        }
    }

    @Test("the exchanger-re-ocr executable hears DOCUMENT_UPLOADED through its subscription and exits 0 on SIGTERM")
    func executable() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestDatabase(.postgres) { url in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = try await ObjectStorage.open("file://" + directory.path)
                let engine = try LocalDocumentEngine(store: store)
                let documents: [Int64] = Array(1001...1008)
                let events = try await uploadedEvents(engine, documents: documents, routes: [DocumentTask.Route.searchText: "search"])
                try await broker.createQueue("reocr-dlq")
                try await broker.createQueue(
                    "reocr", attributes: QueueAttributes(visibilityTimeout: .seconds(30), deadLetterQueue: "reocr-dlq", program: "re-ocr"))
                try await broker.createQueue("search")
                _ = try await broker.subscribe(
                    "reocr", filterPolicy: #"{"batchId":["5"],"caseId":["20"],"eventType":["\#(EventType.documentUploaded.rawValue)"]}"#)
                let worker = try WorkerProcessHandle(
                    "exchanger-re-ocr",
                    ["--queue", "reocr", "--database", url, "--storage-url", "file://" + directory.path, "--batch-size", "4", "--wait", "1"],
                    environment: ["EXCHANGER_DOCUMENT_ENGINE_URL": "local"])
                for event in events { try await broker.publish(try event.topicMessage()) }
                // Published twice: the event id is the same, so the queue hears of each document once.
                for event in events { try await broker.publish(try event.topicMessage()) }
                #expect(try await eventually(timeout: .seconds(30)) { try await broker.counters("search").visible == documents.count })
                worker.signal(SIGTERM)
                #expect(try await worker.wait() == 0)
                #expect(worker.log(containing: "document engine opened"))
                let handed = try await broker.drain("search", count: documents.count + 1, timeout: .seconds(2))
                #expect(Set(try handed.map { try SearchTextTask.decode($0.body).documentID }) == Set(documents))
                for document in documents {
                    let key = try CaseKeys.attachmentText(caseID: 20, batchID: 5, documentID: document, position: 2)
                    #expect(try await store.get(key) == Data("closing board meeting".utf8))
                }
                #expect(try await broker.counters("reocr-dlq").total == 0)
                try await store.shutdown()
            }
        }
    }
}
