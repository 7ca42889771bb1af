import Broker
import DocumentEngine
import ExchangerEvents
import ExchangerTestSupport
import FakeNutrient
import Foundation
import Logging
import ObjectStorage
import PreUploaderProcessor
import Testing
import UploaderProcessor
import WorkerRuntime

/// A pre-uploader task: source case 10 (document `document`, batch 3, exhibit 7) → case 20, batch 5, document `document + 1000`.
func preUploadTask(_ document: Int64, brandIn: Set<DocumentTask.AnnotationKind>) -> DocumentTask {
    var task = DocumentTask(
        jobID: "job-pre", sourceCaseID: 10, caseID: 20, batchID: 5, sourceDocumentID: document, documentID: document + 1000, exhibitID: 70,
        files: [DocumentFile(name: "\(document).pdf", kind: .rendition)], requiresAnnotations: true,
        routes: [DocumentTask.Route.uploader: "upload", DocumentTask.Route.preUploader: "pre"])
    task.annotationRouting = Dictionary(uniqueKeysWithValues: DocumentTask.AnnotationKind.allCases.map { ($0.rawValue, brandIn.contains($0) ? "brand_in" : "layer") })
    task.sourceBatchID = 3
    task.sourceExhibitID = 7
    return task
}

func sourceEngineID(_ document: Int64) throws -> EngineDocumentID {
    try EngineDocumentID(caseID: 10, batchID: 3, documentID: document, exhibitID: 7)
}

/// Puts the source PDF into the case store and the document, all seven kinds and a thread into `engine`.
func seedSource(_ document: Int64, store: any ObjectStore, engine: any DocumentEngine) async throws -> Data {
    let pdf = realPDF("Source \(document)")
    try await store.put(try CaseKeys.documentFile(caseID: 10, documentID: document, fileName: "\(document).pdf"), pdf)
    let kinds = try sevenKinds()
    let annotations = try InstantJSON(annotations: kinds.keys.sorted().compactMap { kinds[$0] }, attachments: [try stickerAttachment()])
    try await engine.ingest(try sourceEngineID(document), pdf: .bytes(pdf), annotations: annotations)
    try await engine.putCommentThreads(try sourceEngineID(document), [try sampleThread()])
    return pdf
}

/// Handles `task` once as delivered by the broker.
func handleOnce(_ handler: any MessageHandler, _ task: DocumentTask, broker: Broker) async throws -> HandlerOutcome {
    _ = try await broker.send("pre", try task.outgoing())
    let received = try #require(try await broker.receive("pre").first)
    let queue = try #require(try await broker.queue(named: "pre"))
    return try await handler.handle(WorkerMessage(received: received, body: received.body, queue: queue, logger: Logger(label: "test")))
}

func effects(_ outcome: HandlerOutcome) -> Effects? {
    if case .success(let effects) = outcome { return effects }
    return nil
}

@Suite(.serialized) struct PreUploaderTests {
    static let branded: Set<DocumentTask.AnnotationKind> = [.redactions, .highlights, .bates]

    @Test func brandInKindsAreFlattenedAndTheRestIsCarriedAsALayerOnTheLocalEngine() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                try await broker.createQueue("pre")
                let store = try await ObjectStorage.open("file://" + directory.path)
                let engine = try LocalDocumentEngine(store: store)
                _ = try await seedSource(1, store: store, engine: engine)
                let handler = PreUploaderHandler(store: store, engine: engine, ownsStore: false)
                let task = preUploadTask(1, brandIn: Self.branded)

                let first = try #require(effects(try await handleOnce(handler, task, broker: broker)))
                #expect(first.events.map(\.eventType) == [.documentPreProcessed])
                let expectedBody = try task.outgoing().body
                #expect(first.messages.map(\.queue) == ["upload"] && first.messages.first?.message.body == expectedBody)
                let detail = try #require(try first.events.first?.detail(as: DocumentPreProcessedDetail.self))
                #expect(detail.sourceEngineDocumentID == "document_10_3_1_7")
                #expect(detail.brandedIn == ["redaction": 1, "highlight": 1, "bates": 1])
                #expect(detail.layered == ["note": 1, "sticker": 1, "confidentiality": 1, "comment": 1])
                #expect(detail.layerAttachments == 1 && detail.commentThreads == 1 && detail.comments == 2)

                let pdfKey = try CaseKeys.documentFile(caseID: 20, documentID: 1001, fileName: "1.pdf")
                let content = try await uncompressed(try await store.get(pdfKey))
                for marker in ["q 0 0 0 rg", "/GSHighlight gs", "(ABC-000001) Tj"] { #expect(content.contains(marker), "\(marker) branded in") }
                for marker in ["(CONFIDENTIAL) Tj", "(Reviewer note) Tj", "/Height 3\n"] { #expect(!content.contains(marker), "\(marker) is a layer") }
                let layer = try InstantJSON(document: try await store.get(DocumentEngineKeys.layerAnnotations(caseID: 20, batchID: 5, documentID: 1001)))
                #expect(Set(layer.annotations.compactMap(\.id)) == ["n1", "s1", "c1", "cr1"])
                #expect(layer.attachments == [try stickerAttachment()], "the sticker carries its image")
                let threads = try CommentThread.threads(document: try await store.get(DocumentEngineKeys.commentThreads(caseID: 20, batchID: 5, documentID: 1001)))
                #expect(threads == [try sampleThread()])

                // A duplicate delivery changes nothing.
                let objects = try await store.list(prefix: "case_20/").collect()
                var bytes: [Data] = []
                for object in objects { bytes.append(try await store.get(object.key)) }
                let second = try #require(effects(try await handleOnce(handler, task, broker: broker)))
                #expect(second.events.map(\.eventID) == first.events.map(\.eventID))
                #expect(second.messages == first.messages)
                #expect(try await store.list(prefix: "case_20/").collect().map(\.key) == objects.map(\.key))
                for (object, data) in zip(objects, bytes) { #expect(try await store.get(object.key) == data, "\(object.key) unchanged") }
                for event in first.events + second.events { _ = try await broker.publish(try event.topicMessage()) }
                #expect(try await eventLog(broker).map(\.type) == ["DOCUMENT_PRE_PROCESSED"])

                // The uploader takes it from there: the layer goes into the destination engine with the branded PDF.
                try await broker.createQueue("upload")
                let handOff = try #require(first.messages.first).message
                _ = try await broker.send("upload", handOff)
                let delivered = try #require(try await broker.receive("upload").first)
                let uploadQueue = try #require(try await broker.queue(named: "upload"))
                let uploader = UploaderHandler(store: store, engine: engine, ownsStore: false)
                let upload = try #require(effects(try await uploader.handle(
                    WorkerMessage(received: delivered, body: delivered.body, queue: uploadQueue, logger: Logger(label: "test")))))
                #expect(upload.events.map(\.eventType) == [.documentUploaded])
                let destination = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 1001, exhibitID: 70)
                #expect(try await engine.annotations(destination) == layer)
                #expect(try await engine.commentThreads(destination) == [try sampleThread()], "the thread follows its root")
                _ = try await uploader.handle(WorkerMessage(received: delivered, body: delivered.body, queue: uploadQueue, logger: Logger(label: "test")))
                #expect(try await engine.commentThreads(destination) == [try sampleThread()], "a duplicate upload adds no comment")
                try await store.shutdown()
            }
        }
    }

    @Test func againstNutrientTheEngineBuildsWithRedactionsFirst() async throws {
        try await withFakeNutrient { server, store in
            try await withTestBroker(.sqlite) { broker, _ in
                try await broker.createQueue("pre")
                let engine = nutrientClient(server, store: store)
                let pdf = try await seedSource(2, store: store, engine: engine)
                let handler = PreUploaderHandler(store: store, engine: CircuitBreakingEngine(engine), ownsStore: false)
                #expect(handler.receiveGate != nil)
                let outcome = try #require(effects(try await handleOnce(handler, preUploadTask(2, brandIn: [.bates, .redactions, .stickers]), broker: broker)))
                #expect(outcome.events.map(\.eventType) == [.documentPreProcessed])
                let built = try await store.get(try CaseKeys.documentFile(caseID: 20, documentID: 1002, fileName: "2.pdf"))
                #expect(!built.starts(with: pdf), "the engine applied the redaction: the PDF was rewritten")
                #expect(String(decoding: built, as: UTF8.self).contains("actions=applyInstantJson,applyRedactions,flatten annotations=r1,b1,s1"),
                        "redactions first, then the other brand_in kinds")
                let layer = try InstantJSON(document: try await store.get(DocumentEngineKeys.layerAnnotations(caseID: 20, batchID: 5, documentID: 1002)))
                #expect(Set(layer.annotations.compactMap(\.id)) == ["h1", "n1", "c1", "cr1"])
                #expect(layer.attachments.isEmpty, "the sticker was branded in: its image is not carried")
                #expect(await server.state.requests.contains { $0.path == "/api/documents/document_10_3_2_7/annotations/cr1/comments" && $0.method == "GET" })
                try await engine.shutdown()
            }
        }
    }

    @Test func badInputIsPermanentAMissingPDFIsNotFoundAndEngineOutagesAreRecoverable() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                try await broker.createQueue("pre")
                let store = try await ObjectStorage.open("file://" + directory.path)
                let engine = try LocalDocumentEngine(store: store)
                let handler = PreUploaderHandler(store: store, engine: engine, ownsStore: false)
                let queue = try #require(try await broker.queue(named: "pre"))

                for (body, fragment) in [("not json", "not a document task"), (#"{"version":1}"#, "not a document task")] {
                    _ = try await broker.send("pre", OutgoingMessage(body: body))
                    let received = try #require(try await broker.receive("pre").first)
                    do {
                        _ = try await handler.handle(WorkerMessage(received: received, body: body, queue: queue, logger: Logger(label: "test")))
                        Issue.record("garbage must fail")
                    } catch {
                        #expect(WorkerError.classify(error) == .permanent)
                        #expect("\(error)".contains(fragment), "\(error)")
                    }
                }
                var noAnnotations = preUploadTask(3, brandIn: [])
                noAnnotations.requiresAnnotations = false
                var badRouting = preUploadTask(3, brandIn: [])
                badRouting.annotationRouting = ["redactions": "burn"]
                var noUploader = preUploadTask(3, brandIn: [])
                noUploader.routes = [:]
                for task in [noAnnotations, badRouting, noUploader] {
                    do {
                        _ = try await handleOnce(handler, task, broker: broker)
                        Issue.record("an impossible task must fail")
                    } catch {
                        #expect(WorkerError.classify(error) == .permanent, "\(error)")
                    }
                }

                // No source PDF: DOCUMENT_NOT_FOUND, nothing sent on.
                let missing = try #require(effects(try await handleOnce(handler, preUploadTask(4, brandIn: []), broker: broker)))
                #expect(missing.events.map(\.eventType) == [.documentNotFound] && missing.messages.isEmpty)
                #expect(try missing.events.first?.detail(as: DocumentNotFoundDetail.self).stage == "pre-uploader")

                // A document the source engine does not know, or one without a source batch (its engine id
                // cannot be formed): a permanent failure, whatever the routing, and no PDF is written.
                let pdf = realPDF("Plain")
                try await store.put(try CaseKeys.documentFile(caseID: 10, documentID: 5, fileName: "5.pdf"), pdf)
                var noBatch = preUploadTask(5, brandIn: Self.branded)
                noBatch.sourceBatchID = nil
                let unknown = [(preUploadTask(5, brandIn: Self.branded), "not in the document engine"), (preUploadTask(5, brandIn: []), "not in the document engine"),
                               (noBatch, "no batch")]
                for (task, fragment) in unknown {
                    do {
                        _ = try await handleOnce(handler, task, broker: broker)
                        Issue.record("a document whose annotations cannot be read must fail")
                    } catch {
                        #expect(WorkerError.classify(error) == .permanent, "\(error)")
                        #expect("\(error)".contains(fragment), "\(error)")
                    }
                    #expect(try await !store.exists(try CaseKeys.documentFile(caseID: 20, documentID: 1005, fileName: "5.pdf")), "no PDF reaches the destination")
                }

                // The engine down: recoverable, so the message is retried.
                let down = PreUploaderHandler(store: store, engine: FailingEngine(error: DocumentEngineError(.transient, "503")), ownsStore: false)
                do {
                    _ = try await handleOnce(down, preUploadTask(5, brandIn: []), broker: broker)
                    Issue.record("an engine outage must fail")
                } catch {
                    #expect(WorkerError.classify(error) == .recoverable)
                }
                try await store.shutdown()
            }
        }
    }

    @Test func tasksCarryTheRoutingBackwardCompatibly() throws {
        let task = preUploadTask(1, brandIn: [.redactions])
        let decoded = try DocumentTask.decode(try EventCoding.string(task))
        #expect(decoded == task && decoded.brandsIn(.redactions) && !decoded.brandsIn(.notes))
        let old = #"{"version":1,"jobId":"j","sourceCaseId":1,"caseId":2,"batchId":3,"sourceDocumentId":4,"documentId":5,"files":[],"requiresAnnotations":true,"includeNatives":false,"routes":{}}"#
        let parsed = try DocumentTask.decode(old)
        #expect(parsed.annotationRouting == nil && parsed.sourceBatchID == nil && !parsed.brandsIn(.redactions), "an older task: everything is a layer")
        #expect(!(try EventCoding.string(parsed)).contains("annotationRouting"), "absent fields stay absent")
    }
}

@Suite struct AnnotationSeederTests {
    @Test func seededAnnotationsAreAllSevenKindsAndEveryEngineFlattensThem() async throws {
        let (annotations, threads) = try AnnotationSeeder.annotations(documentID: 42, batesNumber: "SYN0000042", pageCount: 3)
        let kinds = annotations.annotations.map { AnnotationSorter.kind(of: $0) }
        #expect(Set(kinds) == Set(AnnotationSorter.Kind.allCases).subtracting([.other]), "one of each of the seven kinds")
        #expect(annotations.attachments.count == 1 && threads.count == 1 && threads[0].comments.count == 2)
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let id = try EngineDocumentID(caseID: 3, batchID: 2, documentID: 42, exhibitID: 9)
            try await AnnotationSeeder.seed(engine, id: id, pdf: .bytes(realPDF("Seeded", pages: 3)), batesNumber: "SYN0000042", pageCount: 3)
            #expect(try await engine.annotations(id) == annotations)
            #expect(try await engine.commentThreads(id) == threads)
            let drawable = try InstantJSON(annotations: annotations.annotations.filter { AnnotationSorter.kind(of: $0) != .comment }, attachments: annotations.attachments)
            let built = try await uncompressed(try await engine.buildFlattened(pdf: realPDF("Seeded", pages: 3), annotations: drawable))
            #expect(built.contains("(SYN0000042) Tj") && built.contains("/Subtype /Image") && built.contains("(PRIVILEGED) Tj"))
            try await store.shutdown()
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct PreUploaderProcessTests {
    @Test func thePreUploaderExecutableWorksAgainstNutrientAndExitsZeroOnSIGTERM() async throws {
        try await withTemporaryDirectory { directory in
            let server = try await FakeNutrientServer.start()
            defer { Task { await server.shutdown() } }
            let store = try await ObjectStorage.open("file://" + directory.path)
            defer { Task { try await store.shutdown() } }
            try await withTestDatabase(.postgres) { url in
                let broker = try await Broker.connect(url: url)
                let engine = nutrientClient(server, store: store)
                for document in Int64(1)...3 { _ = try await seedSource(document, store: store, engine: engine) }
                try await engine.shutdown()
                try await broker.createQueue("pre-dlq")
                try await broker.createQueue("pre", attributes: QueueAttributes(visibilityTimeout: .seconds(30), deadLetterQueue: "pre-dlq", program: "pre-uploader"))
                try await broker.createQueue("upload")
                _ = try await broker.sendBatch("pre", try (Int64(1)...3).map { try preUploadTask($0, brandIn: [.redactions, .bates]).outgoing() })

                let worker = try WorkerProcessHandle(
                    "exchanger-pre-uploader",
                    ["--queue", "pre", "--database", url, "--storage-url", "file://" + directory.path, "--wait", "1"],
                    environment: [
                        "EXCHANGER_DOCUMENT_ENGINE_URL": "nutrient+http://127.0.0.1:\(server.port)",
                        "EXCHANGER_NUTRIENT_API_TOKEN": FakeNutrientServer.token,
                    ])
                let done = try await eventually(timeout: .seconds(30)) { try await broker.counters("pre").total == 0 }
                #expect(done)
                worker.signal(SIGTERM)
                #expect(try await worker.wait() == 0)
                #expect(worker.log(containing: "document engine opened"))
                #expect(!worker.log(containing: FakeNutrientServer.token), "the token is never logged")
                #expect(try await broker.counters("upload").total == 3, "each document handed to the uploader")
                #expect(try await broker.counters("pre-dlq").total == 0)
                for document in Int64(1)...3 {
                    let built = try await store.get(try CaseKeys.documentFile(caseID: 20, documentID: document + 1000, fileName: "\(document).pdf"))
                    #expect(String(decoding: built, as: UTF8.self).contains("annotations=r1,b1"))
                    #expect(try await store.exists(try DocumentEngineKeys.layerAnnotations(caseID: 20, batchID: 5, documentID: document + 1000)))
                }
                #expect(try await eventLog(broker).map(\.type).filter { $0 == "DOCUMENT_PRE_PROCESSED" }.count == 3)
                await broker.close()
            }
        }
    }
}
