import DocumentEngine
import ExchangerTestSupport
import FakeNutrient
import Foundation
import ObjectStorage
import Testing

/// A client of `server` with fast retries.
func nutrientClient(
    _ server: FakeNutrientServer, store: any ObjectStore, token: String = FakeNutrientServer.token, attempts: Int = 3
) -> NutrientDocumentEngine {
    var settings = NutrientDocumentEngine.Settings(baseURL: server.baseURL)
    settings.maxAttempts = attempts
    settings.retryBase = .milliseconds(5)
    settings.retryCap = .milliseconds(20)
    settings.requestTimeout = .seconds(10)
    return NutrientDocumentEngine(settings: settings, sourceStore: store, tokens: NutrientTokenCache { token })
}

func withFakeNutrient(_ body: (FakeNutrientServer, any ObjectStore) async throws -> Void) async throws {
    try await withTemporaryDirectory { directory in
        let server = try await FakeNutrientServer.start()
        let store = try await ObjectStorage.open("file://" + directory.path)
        do {
            try await body(server, store)
        } catch {
            await server.shutdown()
            try? await store.shutdown()
            throw error
        }
        await server.shutdown()
        try await store.shutdown()
    }
}

@Suite struct NutrientEngineTests {
    @Test func everyOperationSpeaksTheWireFormatWithTheToken() async throws {
        try await withFakeNutrient { server, store in
            let engine = nutrientClient(server, store: store)
            let id = try EngineDocumentID(caseID: 10, batchID: 3, documentID: 55, exhibitID: 4)
            let kinds = try sevenKinds()
            let annotations = try InstantJSON(annotations: kinds.keys.sorted().compactMap { kinds[$0] }, attachments: [try stickerAttachment()])
            let pdf = realPDF("Nutrient", pages: 2)
            let key = try CaseKeys.documentFile(caseID: 10, documentID: 55, fileName: "55.pdf")
            try await store.put(key, pdf)

            #expect(try await !engine.exists(id))
            #expect(try await engine.ingest(id, pdf: .object(key), annotations: annotations).outcome == .created)
            #expect(try await engine.ingest(id, pdf: .object(key), annotations: annotations).outcome == .replaced, "a re-upload overwrites")
            #expect(try await engine.exists(id))
            #expect(try await engine.document(id) == pdf)
            #expect(try await engine.annotations(id) == annotations, "NDJSON listing, with the sticker's image fetched")
            #expect(try await engine.info(id).annotationCount == 7)
            #expect(try await engine.pageCount(id) == 2)

            #expect(await server.state.update(id.rawValue) { $0.pageTexts[1] = ["first line", "second line"] })
            #expect(try await engine.pageText(id, pageIndex: 1) == "first line\nsecond line")
            #expect(await engineError { _ = try await engine.pageText(id, pageIndex: 7) } == .notFound)

            let reviewLayer = try InstantJSON(annotations: [try #require(kinds["note"])])
            let layerData = try reviewLayer.documentData()
            #expect(await server.state.update(id.rawValue) { $0.layers["review"] = layerData })
            #expect(try await engine.layerAnnotations(id, layer: "review") == reviewLayer)
            #expect(await engineError { _ = try await engine.layerAnnotations(id, layer: "none") } == .notFound)

            #expect(try await engine.commentThreads(id) == [CommentThread(rootID: "cr1", comments: [])])
            try await engine.putCommentThreads(id, [try sampleThread()])
            try await engine.putCommentThreads(id, [try sampleThread()])
            #expect(try await engine.commentThreads(id) == [try sampleThread()], "comments already there are not posted again")

            let brandIn = try InstantJSON(annotations: [try #require(kinds["redaction"]), try #require(kinds["bates"])])
            let built = try await engine.buildFlattened(pdf: pdf, annotations: brandIn)
            #expect(!built.starts(with: pdf), "applyRedactions rewrote the PDF")
            #expect(String(decoding: built, as: UTF8.self).contains("actions=applyInstantJson,applyRedactions,flatten annotations=r1,b1"))
            #expect(await server.state.lastBuild()
                == #"{"actions":[{"file":"annotations","type":"applyInstantJson"},{"type":"applyRedactions"},{"type":"flatten"}],"output":{"type":"pdf"},"parts":[{"file":"document"}]}"#)

            try await engine.delete(id)
            try await engine.delete(id)
            #expect(try await !engine.exists(id))
            #expect(await engineError { _ = try await engine.document(id) } == .notFound)

            let requests = await server.state.requests
            #expect(requests.count > 15)
            #expect(requests.allSatisfy { $0.authorization == #"Token token="fake-nutrient-token""# }, "every request carries the token")
            #expect(requests.filter { $0.path.hasSuffix("/annotations") && $0.method == "GET" }.allSatisfy { $0.accept == "application/x-ndjson" })
            #expect(requests.contains { $0.method == "GET" && $0.path == "/api/documents/\(id.rawValue)/attachments/sticker-png" })
            try await engine.shutdown()
        }
    }

    /// The same redaction checks as ``RedactionTests`` on the Nutrient path: the build applies the
    /// redactions, and the engine's page text of the uploaded result lacks the covered words.
    @Test func redactionsRemoveWhatTheyCoverThroughTheBuild() async throws {
        try await withFakeNutrient { server, store in
            let engine = nutrientClient(server, store: store)
            let source = RedactionTests.pdf([RedactionTests.Page(content: RedactionTests.line), RedactionTests.Page(content: RedactionTests.line)])
            let box = try RedactionTests.box(try await RedactionTests.words(source)[0], from: "advice", through: "about", fraction: 0.4)
            let built = try await engine.buildFlattened(
                pdf: source, annotations: try InstantJSON(annotations: [try RedactionTests.redaction("r", page: 0, bbox: box)]))
            let pages = try await RedactionTests.words(built)
            #expect(pages[0].map(\.text).sorted() == ["PRIVILEGED", "Privileged", "merger", "the"], "only the overlay text is added, \"advice\" and \"about\" are gone")
            #expect(pages[1].map(\.text) == ["Privileged", "advice", "about", "the", "merger"])
            let id = try EngineDocumentID(caseID: 10, batchID: 3, documentID: 57, exhibitID: nil)
            try await engine.ingest(id, pdf: .bytes(built), annotations: try InstantJSON(annotations: []))
            let text = try await engine.pageText(id, pageIndex: 0)
            #expect(!text.contains("advice") && !text.contains("about") && text.contains("merger"), "\(text)")
            try await engine.shutdown()
        }
    }

    @Test func moreThanAThousandAnnotationsComeBackWhole() async throws {
        try await withFakeNutrient { server, store in
            let engine = nutrientClient(server, store: store)
            let id = try EngineDocumentID(caseID: 10, batchID: 3, documentID: 56, exhibitID: nil)
            let many = try (0..<1_250).map { try InstantJSONAnnotation(json: #"{"id":"a\#($0)","type":"pspdfkit/note","pageIndex":0,"bbox":[1,1,1,1]}"#) }
            try await engine.ingest(id, pdf: .bytes(realPDF("many")), annotations: try InstantJSON(annotations: many))
            #expect(try await engine.annotations(id).annotations.count == 1_250)
            try await engine.shutdown()
        }
    }

    @Test func serverErrorsAreRetriedAndClientErrorsAreNot() async throws {
        try await withFakeNutrient { server, store in
            let engine = nutrientClient(server, store: store, attempts: 3)
            let id = try EngineDocumentID(caseID: 10, batchID: 3, documentID: 57, exhibitID: nil)
            await server.state.inject([503, 502])
            #expect(try await engine.ingest(id, pdf: .bytes(realPDF("retry")), annotations: .empty).outcome == .created, "two 5xx, then success")
            var before = await server.state.requests.count
            await server.state.inject([500, 503, 504])
            #expect(await engineError { _ = try await engine.document(id) } == .transient, "5xx on every attempt")
            #expect(await server.state.requests.count - before == 3, "maxAttempts requests")

            before = await server.state.requests.count
            await server.state.inject([400])
            #expect(await engineError { _ = try await engine.document(id) } == .permanent)
            await server.state.inject([422])
            #expect(await engineError { _ = try await engine.buildFlattened(pdf: realPDF("x"), annotations: .empty) } == .permanent)
            #expect(await server.state.requests.count - before == 2, "a 4xx is not retried")
            await server.state.inject([429])
            #expect(try await engine.document(id).isEmpty == false, "429 is throttling: retried")
            try await engine.shutdown()

            // Nothing listening: connection errors are transient after the retries.
            var settings = NutrientDocumentEngine.Settings(baseURL: "http://127.0.0.1:1")
            settings.maxAttempts = 2
            settings.retryBase = .milliseconds(5)
            let unreachable = NutrientDocumentEngine(settings: settings, sourceStore: store, tokens: NutrientTokenCache { "t" })
            #expect(await engineError { _ = try await unreachable.exists(id) } == .transient)
            try await unreachable.shutdown()
        }
    }

    @Test func aRefusedTokenIsReloadedOnceThenPermanent() async throws {
        try await withFakeNutrient { server, store in
            let id = try EngineDocumentID(caseID: 10, batchID: 3, documentID: 58, exhibitID: nil)
            let wrong = nutrientClient(server, store: store, token: "wrong")
            #expect(await engineError { _ = try await wrong.exists(id) } == .permanent)
            #expect(await wrong.tokens.loads == 2, "the cache was dropped once after the 401")
            try await wrong.shutdown()

            let rotations = LockedCounter()
            let rotating = NutrientDocumentEngine(
                settings: NutrientDocumentEngine.Settings(baseURL: server.baseURL), sourceStore: store,
                tokens: NutrientTokenCache { rotations.next() == 0 ? "stale" : FakeNutrientServer.token })
            #expect(try await !rotating.exists(id), "a rotated token is picked up after one 401")
            try await rotating.shutdown()
        }
    }

    @Test func theTokenIsLoadedOnceUnderConcurrency() async throws {
        let counter = LockedCounter()
        let cache = NutrientTokenCache {
            _ = counter.next()
            try await Task.sleep(for: .milliseconds(50))
            return "tok"
        }
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<200 { group.addTask { try await cache.token() } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(tokens.count == 200 && Set(tokens) == ["tok"])
        let loads = await cache.loads
        #expect(counter.value == 1 && loads == 1)

        try await withTemporaryDirectory { directory in
            let file = directory.appendingPathComponent("token")
            try Data("  from-file\n".utf8).write(to: file)
            #expect(try await NutrientTokenCache(environment: ["EXCHANGER_NUTRIENT_API_TOKEN_FILE": file.path]).token() == "from-file")
            #expect(try await NutrientTokenCache(environment: ["EXCHANGER_NUTRIENT_API_TOKEN": "env", "EXCHANGER_NUTRIENT_API_TOKEN_FILE": file.path]).token() == "env")
            #expect(await engineError { _ = try await NutrientTokenCache(environment: [:]).token() } == .transient)
        }
        #expect(NutrientTokenCache.shared(environment: [:]) === NutrientTokenCache.shared(environment: ["x": "y"]), "one cache per process")
    }
}

/// A counter safe to bump from any task.
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    /// Returns the count before this call and adds one.
    func next() -> Int { lock.withLock { defer { count += 1 }; return count } }
    var value: Int { lock.withLock { count } }
}
