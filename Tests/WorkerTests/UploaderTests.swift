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

#if canImport(Glibc)
import Glibc
#endif

/// A task as s3-copy forwards it to the uploader: destination case 20, batch 5, document `document + 1000`.
func uploadTask(_ document: Int64, job: String = "job-up", exhibit: Int64? = nil, annotations: Bool = false) -> DocumentTask {
    DocumentTask(
        jobID: job, sourceCaseID: 10, caseID: 20, batchID: 5, sourceDocumentID: document, documentID: document + 1000, exhibitID: exhibit,
        files: [DocumentFile(name: "\(document).pdf", kind: .rendition), DocumentFile(name: "original \(document).docx", kind: .native)],
        requiresAnnotations: annotations, routes: [DocumentTask.Route.uploader: "upload"])
}

/// Destination PDFs as s3-copy leaves them, for documents `documents` (destination ids + 1000).
func writeDestinationPDFs(_ store: any ObjectStore, documents: ClosedRange<Int64>) async throws {
    for document in documents {
        try await store.put(try CaseKeys.documentFile(caseID: 20, documentID: document + 1000, fileName: "\(document).pdf"), samplePDF(Int(document)))
    }
}

func engineID(_ document: Int64, exhibit: Int64? = nil) throws -> EngineDocumentID {
    try EngineDocumentID(caseID: 20, batchID: 5, documentID: document + 1000, exhibitID: exhibit)
}

/// Every event of the broker's log, decoded.
func loggedEnvelopes(_ broker: Broker) async throws -> [EventEnvelope] {
    let rows = try await broker.transaction { tx in try await tx.query("SELECT body FROM broker_events ORDER BY seq") }
    return try rows.map { try EventEnvelope.decode(try $0.require("body", \.string)) }
}

@Suite(.serialized) struct UploaderTests {
    @Test(arguments: Backend.allCases)
    func uploadsEachDocumentOnceAndTheReOCRSubscriptionHearsOfIt(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDestinationPDFs(store, documents: 1...3)
                try await broker.createQueue("upload-dlq")
                try await broker.createQueue("upload", attributes: QueueAttributes(deadLetterQueue: "upload-dlq"))
                // The re-OCR queue's subscription, exactly as the orchestrator plans it, and one for another batch.
                try await broker.createQueue("reocr")
                try await broker.createQueue("reocr-other")
                _ = try await broker.subscribe(
                    "reocr", filterPolicy: #"{"batchId":["5"],"caseId":["20"],"eventType":["\#(EventType.documentUploaded.rawValue)"]}"#)
                _ = try await broker.subscribe(
                    "reocr-other", filterPolicy: #"{"batchId":["6"],"caseId":["20"],"eventType":["\#(EventType.documentUploaded.rawValue)"]}"#)
                _ = try await broker.sendBatch("upload", [
                    try uploadTask(1).outgoing(), try uploadTask(2, exhibit: 4).outgoing(), try uploadTask(3).outgoing(),
                    try uploadTask(4).outgoing(),  // s3-copy never produced it
                ])
                let engine = try LocalDocumentEngine(store: store)
                let worker = Worker(
                    broker: broker, handler: UploaderHandler(store: store, engine: engine, ownsStore: false),
                    configuration: testConfiguration("upload"), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                #expect(try await runWorker(worker) { try await broker.counters("upload").total == 0 })

                for (document, exhibit) in [(1, nil), (2, 4), (3, nil)] as [(Int64, Int64?)] {
                    let id = try engineID(document, exhibit: exhibit)
                    #expect(try await engine.exists(id))
                    #expect(try await engine.document(id) == samplePDF(Int(document)), "byte-identical in the engine")
                    #expect(try await engine.annotations(id).isEmpty)
                }
                #expect(try await !engine.exists(engineID(4)))
                #expect(try await store.exists(ObjectKey("document-engine/document_20_5_1002_4/document.pdf")))

                let events = try await loggedEnvelopes(broker)
                let uploaded = events.filter { $0.eventType == .documentUploaded }
                #expect(uploaded.count == 3)
                #expect(Set(uploaded.compactMap(\.documentID)) == [1001, 1002, 1003])
                for event in uploaded {
                    #expect(event.source == "exchanger-uploader")
                    #expect(event.filterAttributes["caseId"] == .string("20"))
                    #expect(event.filterAttributes["batchId"] == .string("5"))
                    let detail = try event.detail(as: DocumentUploadedDetail.self)
                    #expect(detail.engineDocumentID == "document_20_5_\(detail.sourceDocumentID + 1000)_\(detail.exhibitID ?? 0)")
                    #expect(detail.bytes == 8192 && detail.outcome == "created")
                    #expect(detail.routes == [DocumentTask.Route.uploader: "upload"], "the task's routes travel with the event")
                }
                let missing = events.filter { $0.eventType == .documentNotFound }
                #expect(missing.count == 1)
                let detail = try #require(try missing.first?.detail(as: DocumentNotFoundDetail.self))
                #expect(detail.stage == "uploader")
                #expect(detail.missingKeys == ["case_20/documents/1004/4.pdf"])
                #expect(try await broker.counters("upload-dlq").total == 0, "a missing PDF is not an error to retry")

                // The re-OCR queue hears of every upload of its batch, through the event's attributes.
                let heard = try await broker.drain("reocr", count: 4, timeout: .seconds(2))
                #expect(Set(try heard.map { try EventEnvelope.decode($0.body).documentID }) == [1001, 1002, 1003])
                #expect(try await broker.counters("reocr-other").total == 0)
                #expect(try await broker.counters().keys.sorted() == ["reocr", "reocr-other", "upload", "upload-dlq"], "the uploader sends nothing on")
                try await store.shutdown()
            }
        }
    }

    @Test func aDuplicateDeliveryChangesNothing() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDestinationPDFs(store, documents: 1...1)
                try await broker.createQueue("upload")
                _ = try await broker.send("upload", try uploadTask(1).outgoing())
                let received = try #require(try await broker.receive("upload").first)
                let queue = try #require(try await broker.queue(named: "upload"))
                let message = WorkerMessage(received: received, body: received.body, queue: queue, logger: Logger(label: "test"))
                let engine = try LocalDocumentEngine(store: store)
                let handler = UploaderHandler(store: store, engine: engine, ownsStore: false)

                guard case .success(let first) = try await handler.handle(message) else {
                    Issue.record("the first run succeeds")
                    return
                }
                let stored = try await store.list(prefix: "document-engine/").collect()
                let info = try await engine.info(engineID(1))
                guard case .success(let second) = try await handler.handle(message) else {
                    Issue.record("the second run succeeds")
                    return
                }
                #expect(first.events.map(\.eventID) == second.events.map(\.eventID), "the same fact, the same id")
                #expect(first.messages.isEmpty && second.messages.isEmpty)
                #expect(try second.events.first?.detail(as: DocumentUploadedDetail.self).outcome == "unchanged")
                #expect(try await store.list(prefix: "document-engine/").collect() == stored, "the engine's objects are untouched")
                #expect(try await engine.info(engineID(1)) == info)
                #expect(try await engine.document(engineID(1)) == samplePDF(1))
                for event in first.events + second.events { _ = try await broker.publish(try event.topicMessage()) }
                #expect(try await eventLog(broker).map(\.type) == ["DOCUMENT_UPLOADED"])
                try await store.shutdown()
            }
        }
    }

    @Test func layerAnnotationsFromThePreUploaderAreIngestedWithThePDF() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDestinationPDFs(store, documents: 1...2)
                let layer = try sampleAnnotations("layer", sticker: Data("sticker image".utf8))
                try await store.put(DocumentEngineKeys.layerAnnotations(caseID: 20, batchID: 5, documentID: 1001), layer.documentData())
                #expect(try DocumentEngineKeys.layerAnnotations(caseID: 20, batchID: 5, documentID: 1001).rawValue
                    == "case_20/processed-files/5/annotations/1001/layer.json")
                try await broker.createQueue("upload")
                _ = try await broker.sendBatch("upload", [try uploadTask(1, annotations: true).outgoing(), try uploadTask(2, annotations: true).outgoing()])
                let engine = try LocalDocumentEngine(store: store)
                let worker = Worker(
                    broker: broker, handler: UploaderHandler(store: store, engine: engine, ownsStore: false),
                    configuration: testConfiguration("upload"), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                #expect(try await runWorker(worker) { try await broker.counters("upload").total == 0 })
                #expect(try await engine.annotations(engineID(1)) == layer)
                #expect(try await engine.annotations(engineID(2)).isEmpty, "no layer file: no annotations")
                let details = try await loggedEnvelopes(broker).map { try $0.detail(as: DocumentUploadedDetail.self) }
                #expect(details.map(\.annotations).sorted() == [0, 3])
                #expect(details.map(\.attachments).sorted() == [0, 1])
                try await store.shutdown()
            }
        }
    }

    @Test func garbageAndImpossibleTasksAreDeadLetteredWithoutRetries() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.postgres) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDestinationPDFs(store, documents: 1...3)
                try await store.put(DocumentEngineKeys.layerAnnotations(caseID: 20, batchID: 5, documentID: 1003), Data(#"{"annotations":[42]}"#.utf8))
                try await broker.createQueue("upload-dlq")
                try await broker.createQueue("upload", attributes: QueueAttributes(maxReceiveCount: 5, deadLetterQueue: "upload-dlq"))
                var noRendition = uploadTask(1)
                noRendition.files = noRendition.files.filter { $0.kind == .native }
                var badExhibit = uploadTask(2)
                badExhibit.exhibitID = -3
                _ = try await broker.sendBatch("upload", [
                    OutgoingMessage(body: "{\"jobId\": 12"), OutgoingMessage(body: "\u{1F4A9}"), try noRendition.outgoing(), try badExhibit.outgoing(),
                    try uploadTask(3, annotations: true).outgoing(),
                    OutgoingMessage(body: #"{"version":1,"jobId":"j","sourceCaseId":1,"caseId":20,"batchId":5,"sourceDocumentId":1,"documentId":2,"files":[{"name":"../../etc/passwd","kind":"rendition"}],"requiresAnnotations":false,"includeNatives":false,"routes":{}}"#),
                ])
                let engine = try LocalDocumentEngine(store: store)
                let worker = Worker(
                    broker: broker, handler: UploaderHandler(store: store, engine: engine, ownsStore: false),
                    configuration: testConfiguration("upload"), stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                #expect(try await runWorker(worker) { try await broker.counters("upload-dlq").visible == 6 })
                let letters = try await broker.drain("upload-dlq", count: 6).map { try EventCoding.decode(DeadLetterEnvelope.self, from: $0.body) }
                #expect(letters.count == 6)
                #expect(letters.allSatisfy { $0.reason == "permanent" && $0.receiveCount == 1 })
                #expect(letters.contains { $0.error.contains("no PDF rendition") })
                #expect(letters.contains { $0.error.contains("exhibitId") })
                #expect(letters.contains { $0.error.contains("layer annotations") })
                #expect(letters.contains { $0.error.contains("invalidKey") })
                #expect(try await store.list(prefix: "document-engine/").collect().isEmpty)
                #expect(try await eventLog(broker).isEmpty)
                try await store.shutdown()
            }
        }
    }

    @Test func engineErrorsKeepTheirKind() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let store = try await ObjectStorage.open("file://" + directory.path)
                try await writeDestinationPDFs(store, documents: 1...1)
                try await broker.createQueue("upload")
                _ = try await broker.send("upload", try uploadTask(1).outgoing())
                let received = try #require(try await broker.receive("upload").first)
                let queue = try #require(try await broker.queue(named: "upload"))
                let message = WorkerMessage(received: received, body: received.body, queue: queue, logger: Logger(label: "test"))
                let cases: [(DocumentEngineError.Code, WorkerError.Kind)] = [(.transient, .recoverable), (.permanent, .permanent), (.unsupported, .permanent)]
                for (code, kind) in cases {
                    let handler = UploaderHandler(store: store, engine: FailingEngine(error: DocumentEngineError(code, "boom")), ownsStore: false)
                    do {
                        _ = try await handler.handle(message)
                        Issue.record("\(code) must fail")
                    } catch {
                        #expect(WorkerError.classify(error) == kind, "\(code)")
                    }
                }
                // An engine that reports the source gone (deleted after s3-copy) is DOCUMENT_NOT_FOUND, not an error.
                let gone = UploaderHandler(store: store, engine: FailingEngine(error: DocumentEngineError(.sourceNotFound, "gone")), ownsStore: false)
                guard case .success(let effects) = try await gone.handle(message) else {
                    Issue.record("a vanished source is acknowledged")
                    return
                }
                #expect(effects.events.map(\.eventType) == [.documentNotFound])
                try await store.shutdown()
            }
        }
    }

    // MARK: The real executable

    @Test func theUploaderExecutableProcessesAQueueAndExitsZeroOnSIGTERM() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestDatabase(.postgres) { url in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = try await ObjectStorage.open("file://" + directory.path)
                let count: Int64 = 12
                try await writeDestinationPDFs(store, documents: 1...count)
                try await broker.createQueue("upload-dlq")
                try await broker.createQueue(
                    "upload", attributes: QueueAttributes(visibilityTimeout: .seconds(30), deadLetterQueue: "upload-dlq", program: "uploader"))
                var tasks = try (1...count).map { try uploadTask($0).outgoing() }
                tasks.append(try uploadTask(99).outgoing())  // missing
                _ = try await broker.sendBatch("upload", tasks)

                let worker = try WorkerProcessHandle(
                    "exchanger-uploader",
                    ["--queue", "upload", "--database", url, "--storage-url", "file://" + directory.path, "--batch-size", "5", "--wait", "1"],
                    environment: ["EXCHANGER_DOCUMENT_ENGINE_URL": "local"])
                let done = try await eventually(timeout: .seconds(30)) { try await broker.counters("upload").total == 0 }
                #expect(done)
                worker.signal(SIGTERM)
                #expect(try await worker.wait() == 0)
                #expect(worker.log(containing: "document engine opened"))

                let engine = try LocalDocumentEngine(store: store)
                for document in 1...count {
                    #expect(try await engine.document(engineID(document)) == samplePDF(Int(document)))
                }
                let types = try await eventLog(broker).map(\.type)
                #expect(types.filter { $0 == "DOCUMENT_UPLOADED" }.count == Int(count))
                #expect(types.filter { $0 == "DOCUMENT_NOT_FOUND" }.count == 1)
                #expect(try await broker.counters("upload-dlq").total == 0)

                // A Nutrient URL with credentials in it is refused up front with a usage error.
                let refused = try WorkerProcessHandle(
                    "exchanger-uploader",
                    ["--queue", "upload", "--database", url, "--storage-url", "file://" + directory.path, "--document-engine", "https://user:secret@engine.example.com"])
                let status = try await refused.wait()
                #expect(status != 0)
                try await store.shutdown()
            }
        }
    }
}

/// An engine whose ingest always fails with `error`.
struct FailingEngine: DocumentEngine {
    let error: DocumentEngineError
    func ingest(_ id: EngineDocumentID, pdf: PDFSource, annotations: InstantJSON) async throws -> IngestResult { throw error }
    func exists(_ id: EngineDocumentID) async throws -> Bool { throw error }
    func info(_ id: EngineDocumentID) async throws -> EngineDocumentInfo { throw error }
    func document(_ id: EngineDocumentID) async throws -> Data { throw error }
    func annotations(_ id: EngineDocumentID) async throws -> InstantJSON { throw error }
    func delete(_ id: EngineDocumentID) async throws { throw error }
    func shutdown() async throws {}
    func commentThreads(_ id: EngineDocumentID) async throws -> [CommentThread] { throw error }
    func putCommentThreads(_ id: EngineDocumentID, _ threads: [CommentThread]) async throws { throw error }
    func buildFlattened(pdf: Data, annotations: InstantJSON) async throws -> Data { throw error }
    func pageCount(_ id: EngineDocumentID) async throws -> Int { throw error }
    func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String { throw error }
}
