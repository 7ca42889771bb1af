import DocumentEngine
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Testing

/// Deterministic PDF-like bytes of a given size.
func samplePDF(_ seed: Int, size: Int = 8192) -> Data {
    var bytes = Array("%PDF-1.7\n".utf8)
    var state = UInt64(truncatingIfNeeded: seed) &* 6_364_136_223_846_793_005 &+ 1
    while bytes.count < size {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        bytes.append(UInt8(truncatingIfNeeded: state >> 33))
    }
    return Data(bytes.prefix(size))
}

/// The SHA-256 of `data` as the system's sha256sum computes it.
func systemSHA256(_ data: Data) throws -> String {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("exch-sha-\(UUID().uuidString)")
    try data.write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    process.arguments = [file.path]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: output, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}

func sampleAnnotations(_ label: String, sticker: Data? = nil) throws -> InstantJSON {
    var annotations = [
        try InstantJSONAnnotation(json: #"{"id":"a1","type":"pspdfkit/markup/highlight","pageIndex":0,"note":"\#(label)","rects":[[1,2,3,4]]}"#),
        try InstantJSONAnnotation(json: #"{"id":"a2","type":"pspdfkit/note","pageIndex":1,"text":{"format":"plain","value":"line\nbreak / slash"}}"#),
    ]
    var attachments: [InstantJSONAttachment] = []
    if let sticker {
        let id = "sticker-" + label
        annotations.append(try InstantJSONAnnotation(json: #"{"id":"a3","type":"pspdfkit/image","pageIndex":0,"imageAttachmentId":"\#(id)"}"#))
        attachments.append(try InstantJSONAttachment(id: id, contentType: "image/png", data: sticker))
    }
    return try InstantJSON(annotations: annotations, attachments: attachments)
}

func engineError(_ body: () async throws -> Void) async -> DocumentEngineError.Code? {
    do {
        try await body()
        return nil
    } catch let error as DocumentEngineError {
        return error.code
    } catch {
        Issue.record("not a DocumentEngineError: \(error)")
        return nil
    }
}

@Suite struct DocumentEngineTests {
    // MARK: Document ids

    @Test func documentIDsHaveTheVendorFormatAndParseBack() throws {
        let plain = try EngineDocumentID(caseID: 42, batchID: 7, documentID: 1001, exhibitID: nil)
        #expect(plain.rawValue == "document_42_7_1001_0")
        let exhibit = try EngineDocumentID(caseID: 42, batchID: 7, documentID: 1001, exhibitID: 3)
        #expect(exhibit.description == "document_42_7_1001_3")
        #expect(try EngineDocumentID(parsing: "document_42_7_1001_3") == exhibit)
        let parsed = try EngineDocumentID(parsing: "document_42_7_1001_0")
        #expect(parsed == plain && parsed.exhibitID == nil)
        #expect(try EngineDocumentID(caseID: 42, batchID: 7, documentID: 1001, exhibitID: 0) == plain, "exhibit 0 is no exhibit")
        let big = try EngineDocumentID(caseID: Int64.max, batchID: 1, documentID: 1, exhibitID: Int64.max)
        #expect(try EngineDocumentID(parsing: big.rawValue) == big)
        #expect(EngineDocumentID("document_1_2_3_4")?.documentID == 3)
        let coded = try JSONEncoder().encode([exhibit])
        #expect(String(decoding: coded, as: UTF8.self) == #"["document_42_7_1001_3"]"#)
        #expect(try JSONDecoder().decode([EngineDocumentID].self, from: coded) == [exhibit])
        #expect(throws: (any Error).self) { try JSONDecoder().decode([EngineDocumentID].self, from: Data(#"["document_x"]"#.utf8)) }
    }

    @Test(arguments: [
        "", "document", "document_", "document_42_7_1001", "document_42_7_1001_0_1", "doc_42_7_1001_0", "DOCUMENT_42_7_1001_0",
        "document_042_7_1001_0", "document_42_7_1001_00", "document_-1_7_1001_0", "document_+42_7_1001_0", "document_0_7_1001_0",
        "document_42_0_1001_0", "document_42_7_0_0", "document_42_7_1001_x", "document_42__1001_0", "document_4 2_7_1001_0",
        "document_42_7_1001_0\n", " document_42_7_1001_0", "document_99999999999999999999_7_1001_0", "document_42_7_1001_٣",
        "document_42_7_1001_0/../x",
    ])
    func garbageDocumentIDsAreRejected(_ text: String) {
        #expect(EngineDocumentID(text) == nil)
        #expect(throws: DocumentEngineError.self) { try EngineDocumentID(parsing: text) }
    }

    @Test func outOfRangeNumbersAreRejected() {
        for (caseID, batchID, documentID, exhibitID) in [(0, 1, 1, nil), (1, -1, 1, nil), (1, 1, 0, nil), (1, 1, 1, -2)] as [(Int64, Int64, Int64, Int64?)] {
            #expect(throws: DocumentEngineError.self) { try EngineDocumentID(caseID: caseID, batchID: batchID, documentID: documentID, exhibitID: exhibitID) }
        }
    }

    // MARK: Instant JSON

    @Test func instantJSONDocumentsAndNDJSONRoundTrip() throws {
        let annotations = try sampleAnnotations("x", sticker: Data([0x89, 0x50, 0x4e, 0x47, 0, 1, 2]))
        let document = try annotations.documentData()
        let text = String(decoding: document, as: UTF8.self)
        #expect(text.contains(#""format":"https://pspdfkit.com/instant-json/v1""#))
        #expect(try InstantJSON(document: document) == annotations)
        #expect(try InstantJSON(document: document).documentData() == document, "deterministic")
        let ndjson = annotations.ndjsonData()
        #expect(String(decoding: ndjson, as: UTF8.self).split(separator: "\n").count == 3, "one annotation per line, newlines escaped")
        #expect(try InstantJSON(ndjson: ndjson).annotations == annotations.annotations)
        #expect(annotations.annotations.first?.type == "pspdfkit/markup/highlight")
        #expect(annotations.annotations.first?.id == "a1")
        // Key order and spacing do not matter: annotations are canonical.
        #expect(try InstantJSONAnnotation(json: #"{ "b": 1, "a": [true, null] }"#) == InstantJSONAnnotation(json: #"{"a":[true,null],"b":1}"#))
        #expect(try InstantJSON(document: Data("{}".utf8)).isEmpty)
    }

    @Test(arguments: [
        "[]", "not json", #"{"annotations":{}}"#, #"{"annotations":[1]}"#, #"{"annotations":[[]]}"#, #"{"format":"https://example.com/v1"}"#,
        #"{"attachments":{"x":{"binary":"***","contentType":"image/png"}}}"#, #"{"attachments":{"x":{"binary":"AAAA"}}}"#,
        #"{"attachments":{"../x":{"binary":"AAAA","contentType":"image/png"}}}"#, #"{"attachments":[]}"#,
    ])
    func badInstantJSONIsRejected(_ text: String) {
        #expect(throws: DocumentEngineError.self) { try InstantJSON(document: Data(text.utf8)) }
    }

    // MARK: The local engine

    @Test func ingestExistsFetchAndDeleteRoundTripByteForByte() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try await DocumentEngines.open(url: "local", caseStore: store, environment: [:])
            let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 1001, exhibitID: nil)
            // Larger than the store's 1 MiB stream chunk, so the digest spans chunks.
            let pdf = samplePDF(1, size: (1 << 20) * 2 + 12345)
            let key = try CaseKeys.documentFile(caseID: 20, documentID: 1001, fileName: "1.pdf")
            try await store.put(key, pdf)
            #expect(try await !engine.exists(id))
            let annotations = try sampleAnnotations("one", sticker: Data("png bytes".utf8))

            let result = try await engine.ingest(id, pdf: .object(key), annotations: annotations)
            #expect(result.outcome == .created)
            #expect(result.document.bytes == Int64(pdf.count))
            #expect(result.document.sha256 == (try systemSHA256(pdf)))
            #expect(result.document.annotationCount == 3)
            #expect(result.document.attachments.map(\.id) == ["sticker-one"])
            #expect(try await engine.exists(id))
            #expect(try await engine.document(id) == pdf)
            #expect(try await engine.annotations(id) == annotations)
            #expect(try await engine.info(id) == result.document)

            // The documented layout.
            let files = try await store.list(prefix: "document-engine/").collect().map(\.key.rawValue)
            #expect(files == [
                "document-engine/document_20_5_1001_0/annotations.ndjson",
                "document-engine/document_20_5_1001_0/attachments/sticker-one",
                "document-engine/document_20_5_1001_0/document.json",
                "document-engine/document_20_5_1001_0/document.pdf",
            ])
            #expect(try await store.get(ObjectKey("document-engine/document_20_5_1001_0/annotations.ndjson")) == annotations.ndjsonData())

            try await engine.delete(id)
            #expect(try await !engine.exists(id))
            #expect(await engineError { _ = try await engine.document(id) } == .notFound)
            #expect(await engineError { _ = try await engine.annotations(id) } == .notFound)
            #expect(try await store.list(prefix: "document-engine/").collect().isEmpty)
            try await engine.delete(id)  // deleting an absent document is fine
            #expect(try await store.get(key) == pdf, "the case's PDF is untouched")
            try await engine.shutdown()
            try await store.shutdown()
        }
    }

    @Test func digestsMatchTheStandardVectors() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let vectors: [(Data, String)] = [
                (Data(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                (Data("abc".utf8), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                (Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
                (Data(repeating: UInt8(ascii: "a"), count: 1_000_000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
            ]
            for (index, (data, digest)) in vectors.enumerated() {
                let id = try EngineDocumentID(caseID: 1, batchID: 1, documentID: Int64(index + 1), exhibitID: nil)
                #expect(try await engine.ingest(id, pdf: .bytes(data), annotations: .empty).document.sha256 == digest)
                #expect(try await engine.document(id) == data)
            }
            try await store.shutdown()
        }
    }

    @Test func reIngestingTheSameContentChangesNothingAndOtherContentReplaces() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 7, exhibitID: 2)
            let key = try CaseKeys.documentFile(caseID: 20, documentID: 7, fileName: "7.pdf")
            try await store.put(key, samplePDF(7))
            let first = try await engine.ingest(id, pdf: .object(key), annotations: try sampleAnnotations("a", sticker: Data("old".utf8)))
            let before = try await store.list(prefix: "document-engine/").collect()

            let again = try await engine.ingest(id, pdf: .object(key), annotations: try sampleAnnotations("a", sticker: Data("old".utf8)))
            #expect(again.outcome == .unchanged)
            #expect(again.document == first.document)
            #expect(try await store.list(prefix: "document-engine/").collect() == before, "not one object rewritten")

            // A re-upload with other content replaces the document, old attachments included.
            try await store.put(key, samplePDF(8))
            let replaced = try await engine.ingest(id, pdf: .object(key), annotations: try sampleAnnotations("b", sticker: Data("new".utf8)))
            #expect(replaced.outcome == .replaced)
            #expect(try await engine.document(id) == samplePDF(8))
            #expect(try await engine.annotations(id) == sampleAnnotations("b", sticker: Data("new".utf8)))
            let attachments = try await store.list(prefix: DocumentEngineKeys.attachmentsPrefix(id)).collect().map(\.key.rawValue)
            #expect(attachments == ["document-engine/document_20_5_7_2/attachments/sticker-b"])
            // Annotations alone changing is a change too; and back to none.
            #expect(try await engine.ingest(id, pdf: .object(key), annotations: .empty).outcome == .replaced)
            #expect(try await engine.annotations(id).isEmpty)
            #expect(try await store.list(prefix: DocumentEngineKeys.attachmentsPrefix(id)).collect().isEmpty)
            try await store.shutdown()
        }
    }

    @Test func aCrashMidIngestLeavesNoDocumentAndTheRetryCompletesIt() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 9, exhibitID: nil)
            let key = try CaseKeys.documentFile(caseID: 20, documentID: 9, fileName: "9.pdf")
            try await store.put(key, samplePDF(9))

            // A first attempt died after the PDF and annotations, before the record.
            try await store.put(DocumentEngineKeys.pdf(id), samplePDF(9).prefix(100))
            try await store.put(DocumentEngineKeys.annotations(id), Data("{\"partial\":".utf8))
            #expect(try await !engine.exists(id))
            #expect(await engineError { _ = try await engine.document(id) } == .notFound)
            #expect(await engineError { _ = try await engine.info(id) } == .notFound)

            let retry = try await engine.ingest(id, pdf: .object(key), annotations: try sampleAnnotations("r"))
            #expect(retry.outcome == .created)
            #expect(try await engine.exists(id))
            #expect(try await engine.document(id) == samplePDF(9))
            #expect(try await engine.annotations(id) == sampleAnnotations("r"))

            // A replacement that dies after withdrawing the record: absent, then completed by the retry.
            try await store.delete(DocumentEngineKeys.metadata(id))
            try await store.put(DocumentEngineKeys.pdf(id), Data("half".utf8))
            #expect(try await !engine.exists(id))
            #expect(try await engine.ingest(id, pdf: .object(key), annotations: try sampleAnnotations("r")).outcome == .created)
            #expect(try await engine.document(id) == samplePDF(9))

            // A damaged record is reported, and the next ingest rewrites it.
            try await store.put(DocumentEngineKeys.metadata(id), Data("garbage".utf8))
            #expect(await engineError { _ = try await engine.info(id) } == .permanent)
            #expect(try await engine.ingest(id, pdf: .object(key), annotations: try sampleAnnotations("r")).outcome == .created)
            #expect(try await engine.info(id).sha256 == (try systemSHA256(samplePDF(9))))
            try await store.shutdown()
        }
    }

    @Test func aMissingSourceIsReportedAndLeavesNothing() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 11, exhibitID: nil)
            let code = await engineError {
                try await engine.ingest(id, pdf: .object(try CaseKeys.documentFile(caseID: 20, documentID: 11, fileName: "gone.pdf")), annotations: .empty)
            }
            #expect(code == .sourceNotFound)
            #expect(try await !engine.exists(id))
            #expect(try await store.list(prefix: "document-engine/").collect().isEmpty)
            try await store.shutdown()
        }
    }

    // MARK: Configuration

    @Test func enginesOpenFromTheirURLs() async throws {
        try await withTemporaryDirectory { directory in
            let caseStore = try await ObjectStorage.open("file://" + directory.appendingPathComponent("cases").path)
            #expect(try DocumentEngineLocation("local") == .local(storageURL: nil))
            #expect(try DocumentEngineLocation("") == .local(storageURL: nil))
            #expect(try DocumentEngineLocation("local:") == .local(storageURL: nil))
            #expect(try DocumentEngineLocation("s3://bucket/engine") == .local(storageURL: "s3://bucket/engine"))
            let nutrient: [(String, String)] = [
                ("https://engine.example.com", "https://engine.example.com"), ("http://localhost:5000/", "http://localhost:5000"),
                ("nutrient://engine:5000", "https://engine:5000"), ("nutrient+http://engine:5000", "http://engine:5000"), ("nutrient+https://engine", "https://engine"),
                ("nutrient+http://10.0.0.1:5000/de", "http://10.0.0.1:5000/de"),
            ]
            for (url, base) in nutrient {
                #expect(try DocumentEngineLocation(url) == .nutrient(baseURL: base), "\(url)")
                let engine = try await DocumentEngines.open(url: url, caseStore: caseStore, environment: [:])
                #expect((engine as? NutrientDocumentEngine)?.settings.baseURL == base)
                try await engine.shutdown()
            }
            for url in ["ftp://x", "engine", "local:ftp://x", "file://", "https://user:secret@engine", "nutrient://", "https://engine/?token=x"] {
                #expect(await engineError { _ = try await DocumentEngines.open(url: url, caseStore: caseStore, environment: [:]) } == .invalidURL, "\(url)")
            }

            // An engine on a store of its own (the PDF crosses stores through a temporary file), and a prefix setting.
            let enginePath = directory.appendingPathComponent("engine").path
            let engine = try await DocumentEngines.open(
                url: "local:file://" + enginePath, caseStore: caseStore, environment: ["EXCHANGER_DOCUMENT_ENGINE_PREFIX": "nutrient/docs"])
            let key = try CaseKeys.documentFile(caseID: 3, documentID: 4, fileName: "4.pdf")
            try await caseStore.put(key, samplePDF(4))
            let id = try EngineDocumentID(caseID: 3, batchID: 2, documentID: 4, exhibitID: nil)
            #expect(try await engine.ingest(id, pdf: .object(key), annotations: .empty).outcome == .created)
            #expect(try await engine.document(id) == samplePDF(4))
            #expect(FileManager.default.fileExists(atPath: enginePath + "/nutrient/docs/document_3_2_4_0/document.pdf"))
            #expect(try await caseStore.list(prefix: "nutrient/").collect().isEmpty)
            try await engine.shutdown()
            try await caseStore.shutdown()
        }
    }

    @Test func theLocalEngineWorksOnS3WithServerSideCopies() async throws {
        let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_ENDPOINT")
        let bucket = "exch-engine-" + UUID().uuidString.lowercased().prefix(8)
        let environment = ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint]
        let opened = try await ObjectStorage.open("s3://\(bucket)", environment: environment)
        let store = try #require(opened as? S3ObjectStore)
        try await store.createBucket()
        let engine = try await DocumentEngines.open(url: "local", caseStore: store, environment: environment)
        let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 1001, exhibitID: 1)
        let key = try CaseKeys.documentFile(caseID: 20, documentID: 1001, fileName: "1001.pdf")
        let pdf = samplePDF(3, size: 300_000)
        try await store.put(key, pdf)
        let annotations = try sampleAnnotations("s3", sticker: Data("s".utf8))
        #expect(try await engine.ingest(id, pdf: .object(key), annotations: annotations).outcome == .created)
        #expect(try await engine.ingest(id, pdf: .object(key), annotations: annotations).outcome == .unchanged)
        #expect(try await engine.document(id) == pdf)
        #expect(try await engine.annotations(id) == annotations)
        try await engine.delete(id)
        #expect(try await !engine.exists(id))
        for try await info in store.list(prefix: "") { try await store.delete(info.key) }
        try await store.shutdown()
    }
}

extension AsyncThrowingStream where Failure == any Error {
    /// Every element, in order.
    func collect() async throws -> [Element] {
        var all: [Element] = []
        for try await element in self { all.append(element) }
        return all
    }
}
