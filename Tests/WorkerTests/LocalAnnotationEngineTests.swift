import DocumentEngine
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct LocalAnnotationEngineTests {
    /// What each kind leaves in the page content when it is branded in.
    static let markers: [String: String] = [
        "redaction": "q 0 0 0 rg", "highlight": "/GSHighlight gs", "note": "(Reviewer note) Tj", "sticker": "/Height 3\n",
        "bates": "(ABC-000001) Tj", "confidentiality": "(CONFIDENTIAL) Tj",
    ]

    @Test func brandInPutsEachKindIntoThePageContentAndLeavesNoAnnotation() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let kinds = try sevenKinds()
            let source = realPDF("Source")
            for (kind, marker) in Self.markers.sorted(by: { $0.key < $1.key }) {
                let annotation = try #require(kinds[kind])
                let attachments = kind == "sticker" ? [try stickerAttachment()] : []
                let built = try await engine.buildFlattened(pdf: source, annotations: try InstantJSON(annotations: [annotation], attachments: attachments))
                let text = try await uncompressed(built)
                #expect(text.contains(marker), "\(kind) is drawn into the page content")
                #expect(!text.contains("/Annots"), "\(kind): no annotation object is left")
                if kind == "redaction" {
                    #expect(!text.contains("(Source page 1)"), "the redacted words are gone from the file")
                    #expect(text.contains("(Source page 2) Tj"), "the page without a redaction stays as it was")
                } else {
                    #expect(text.contains("(Source page 1) Tj"), "the source content stays")
                }
                for (other, otherMarker) in Self.markers where other != kind && otherMarker != marker {
                    #expect(!text.contains(otherMarker), "\(kind) alone does not draw \(other)")
                }
            }
            try await store.shutdown()
        }
    }

    @Test func redactionsAreDrawnBeforeEverythingElse() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let kinds = try sevenKinds()
            // The redaction comes last in the list; it is still drawn first on its page.
            let list = try ["bates", "highlight", "confidentiality", "redaction"].map { try #require(kinds[$0]) }
            let built = try await engine.buildFlattened(pdf: realPDF("Order"), annotations: try InstantJSON(annotations: list))
            let text = try await uncompressed(built)
            let redaction = try #require(text.range(of: "q 0 0 0 rg")), bates = try #require(text.range(of: "(ABC-000001) Tj"))
            let highlight = try #require(text.range(of: "/GSHighlight gs"))
            #expect(redaction.lowerBound < bates.lowerBound && redaction.lowerBound < highlight.lowerBound)
            #expect(text.contains("(REDACTED) Tj"), "the overlay text is drawn on the box")
            // The covered text is gone from the file; page 2 has no redaction and keeps its content.
            #expect(!text.contains("(Order page 1)"))
            #expect(text.contains("(Order page 2) Tj"))
            try await store.shutdown()
        }
    }

    @Test func layerKeepsEachKindAsAnAnnotationAndThePDFUntouched() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let kinds = try sevenKinds()
            let pdf = realPDF("Layered")
            for (index, kind) in kinds.keys.sorted().enumerated() {
                let id = try EngineDocumentID(caseID: 7, batchID: 1, documentID: Int64(index + 1), exhibitID: nil)
                let attachments = kind == "sticker" ? [try stickerAttachment()] : []
                let layer = try InstantJSON(annotations: [try #require(kinds[kind])], attachments: attachments)
                try await engine.ingest(id, pdf: .bytes(pdf), annotations: layer)
                #expect(try await engine.annotations(id) == layer, "\(kind) comes back as the same annotation")
                #expect(try await engine.document(id) == pdf, "\(kind): the PDF is not touched")
            }
            try await store.shutdown()
        }
    }

    /// A worker being stopped (the supervisor signals its process group when it scales down) must
    /// not dead-letter the document it is building: qpdf runs in its own process group, and a qpdf
    /// killed by a signal is a transient failure, retried, never a permanent one.
    @Test func aQPDFKilledBySignalIsTransientAndRunsInItsOwnProcessGroup() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            // A stand-in qpdf that records its process group and then dies of SIGTERM.
            let script = directory.appendingPathComponent("qpdf").path
            let record = directory.appendingPathComponent("pgid").path
            try "#!/bin/sh\nps -o pgid= -p $$ > '\(record)'\nkill -TERM $$\n".write(toFile: script, atomically: true, encoding: .utf8)
            #expect(chmod(script, 0o755) == 0)
            let engine = try LocalDocumentEngine(store: store, settings: .init(qpdfPath: script))
            let annotations = try InstantJSON(annotations: [try #require(try sevenKinds()["bates"])])
            #expect(await engineError { _ = try await engine.buildFlattened(pdf: realPDF("x"), annotations: annotations) } == .transient)
            let group = try String(contentsOfFile: record, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!group.isEmpty && Int32(group) != getpgrp(), "qpdf ran in the worker's process group \(group)")
            try await store.shutdown()
        }
    }

    @Test func withoutQPDFBrandInFailsNamingWhatIsMissing() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store, settings: .init(qpdfPath: directory.appendingPathComponent("no/qpdf").path))
            let annotations = try InstantJSON(annotations: [try #require(try sevenKinds()["bates"])])
            do {
                _ = try await engine.buildFlattened(pdf: realPDF("x"), annotations: annotations)
                Issue.record("a build without qpdf must fail")
            } catch let error as DocumentEngineError {
                #expect(error.code == .unsupported)
                #expect(error.message.contains("qpdf") && error.message.contains("EXCHANGER_QPDF_PATH"))
            }
            let environment = ["EXCHANGER_QPDF_PATH": "/nonexistent/qpdf"]
            let opened = try await DocumentEngines.open(url: "local", caseStore: store, environment: environment)
            #expect(await engineError { _ = try await opened.buildFlattened(pdf: realPDF("x"), annotations: annotations) } == .unsupported)
            try await store.shutdown()
        }
    }

    @Test func whatCannotBeDrawnIsRefusedNotDropped() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let ink = try InstantJSONAnnotation(json: #"{"id":"i1","type":"pspdfkit/ink","pageIndex":0,"bbox":[1,1,1,1]}"#)
            #expect(await engineError { _ = try await engine.buildFlattened(pdf: realPDF("x"), annotations: try InstantJSON(annotations: [ink])) } == .unsupported)
            let gif = try InstantJSONAttachment(id: "sticker-png", contentType: "image/gif", data: Data("GIF89a....".utf8))
            let sticker = try #require(try sevenKinds()["sticker"])
            #expect(await engineError {
                _ = try await engine.buildFlattened(pdf: realPDF("x"), annotations: try InstantJSON(annotations: [sticker], attachments: [gif]))
            } == .unsupported)
            let offPage = try InstantJSONAnnotation(json: #"{"id":"o1","type":"pspdfkit/text","pageIndex":9,"bbox":[1,1,1,1],"text":{"value":"x"}}"#)
            #expect(await engineError { _ = try await engine.buildFlattened(pdf: realPDF("x"), annotations: try InstantJSON(annotations: [offPage])) }
                == .invalidAnnotations)
            #expect(await engineError { _ = try await engine.buildFlattened(pdf: Data("not a pdf".utf8), annotations: try InstantJSON(annotations: [ink])) }
                == .permanent)
            try await store.shutdown()
        }
    }

    @Test func commentThreadsAreKeptOnceAndGoWithTheDocument() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let id = try EngineDocumentID(caseID: 7, batchID: 1, documentID: 9, exhibitID: 2)
            #expect(await engineError { try await engine.putCommentThreads(id, [try sampleThread()]) } == .notFound)
            try await engine.ingest(id, pdf: .bytes(realPDF("c")), annotations: .empty)
            #expect(try await engine.commentThreads(id).isEmpty)
            try await engine.putCommentThreads(id, [try sampleThread()])
            try await engine.putCommentThreads(id, [try sampleThread()])
            #expect(try await engine.commentThreads(id) == [try sampleThread()], "putting the same thread twice keeps one copy")
            let data = CommentThread.documentData([try sampleThread()])
            #expect(try CommentThread.threads(document: data) == [try sampleThread()])
            try await engine.delete(id)
            #expect(await engineError { _ = try await engine.commentThreads(id) } == .notFound)
            #expect(try await store.list(prefix: "document-engine/").collect().isEmpty)
            try await store.shutdown()
        }
    }
}
