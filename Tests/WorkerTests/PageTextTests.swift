import DocumentEngine
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Testing

/// A PDF escape of a literal string's content.
func pdfEscaped(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "(", with: "\\(").replacingOccurrences(of: ")", with: "\\)")
}

/// An uncompressed PDF whose page `i` shows the lines `pages[i]` (one `Tj` per line, `Td` between
/// lines), laid out as the synthetic case PDFs are; `contents` overrides a page's content stream.
func textPDF(_ pages: [[String]], contents: [Int: String] = [:], filter: Bool = false) -> Data {
    var objects: [String] = []
    let kids = (0..<pages.count).map { "\(4 + 2 * $0) 0 R" }.joined(separator: " ")
    objects.append("<< /Type /Catalog /Pages 2 0 R >>")
    objects.append("<< /Type /Pages /Kids [\(kids)] /Count \(pages.count) >>")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for (index, lines) in pages.enumerated() {
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents \(5 + 2 * index) 0 R /Resources << /Font << /F1 3 0 R >> >> >>")
        let content = contents[index]
            ?? ("BT /F1 12 Tf 72 720 Td " + lines.map { "(\(pdfEscaped($0))) Tj" }.joined(separator: " 0 -14 Td ") + " ET")
        objects.append("<< /Length \(content.utf8.count)\(filter ? " /Filter /FlateDecode" : "") >>\nstream\n\(content)\nendstream")
    }
    var output = "%PDF-1.4\n"
    var offsets: [Int] = []
    for (index, body) in objects.enumerated() {
        offsets.append(output.utf8.count)
        output += "\(index + 1) 0 obj\n\(body)\nendobj\n"
    }
    let xref = output.utf8.count
    output += "xref\n0 \(objects.count + 1)\n0000000000 65535 f \n"
    for offset in offsets { output += String(format: "%010d 00000 n \n", offset) }
    output += "trailer\n<< /Size \(objects.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n"
    return Data(output.utf8)
}

@Suite("Page text") struct PageTextTests {
    @Test("the extractor reads Tj, TJ, ' and \" strings with their escapes, hex strings, page by page")
    func extractor() throws {
        let pdf = textPDF([["Quarterly (draft) report", "back\\slash and more"], ["Page two"], []], contents: [
            1: #"BT 72 720 Td [(Hel) -20 (lo) -400 (world)] TJ T* (next line) ' 1 2 (third \050x\051\n) " <48656C6C6F> Tj ET BT (a\\b(c)) Tj ET"#,
        ])
        let pages = try PDFTextExtractor().pageTexts(of: pdf)
        #expect(pages.count == 3)
        #expect(pages[0] == "Quarterly (draft) report\nback\\slash and more")
        #expect(pages[1] == "Hello world\nnext line\nthird (x)\nHello\na\\b(c)")
        #expect(pages[2] == "")
    }

    @Test("the synthetic case PDF layout: title and page number on each page")
    func syntheticLayout() throws {
        let content = { (page: Int) in "BT /F1 14 Tf 72 720 Td (Exhibit \\(A\\)) Tj 0 -24 Td (Page \(page + 1) of 2) Tj ET" }
        let pdf = textPDF([[], []], contents: [0: content(0), 1: content(1)])
        #expect(try PDFTextExtractor().pageTexts(of: pdf) == ["Exhibit (A)\nPage 1 of 2", "Exhibit (A)\nPage 2 of 2"])
    }

    @Test("compressed streams and non-PDFs are refused with what is missing")
    func refusals() {
        #expect(throws: PDFTextExtractor.Failure.self) { try PDFTextExtractor().pageTexts(of: Data("hello".utf8)) }
        let error = #expect(throws: PDFTextExtractor.Failure.self) { try PDFTextExtractor().pageTexts(of: textPDF([["x"]], filter: true)) }
        #expect(error?.message.contains("/Filter") == true)
        #expect(throws: PDFTextExtractor.Failure.self) { try PDFTextExtractor().pageTexts(of: samplePDF(3)) }
    }

    @Test("the local engine gives page counts and texts, caches them beside the document and re-reads a new PDF")
    func localEngine() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            let engine = try LocalDocumentEngine(store: store)
            let id = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 1001, exhibitID: nil)
            try await engine.ingest(id, pdf: .bytes(textPDF([["first page", "line 2"], ["second page"]])), annotations: .empty)

            #expect(try await engine.pageCount(id) == 2)
            #expect(try await engine.pageText(id, pageIndex: 0) == "first page\nline 2")
            #expect(try await engine.pageText(id, pageIndex: 1) == "second page")
            let cacheKey = try DocumentEngineKeys.pageTexts(id)
            #expect(cacheKey.rawValue == "document-engine/document_20_5_1001_0/text/pages.json")
            #expect(try await store.exists(cacheKey))

            // A second call reads the cache, not the PDF: spoil the stored PDF and it still answers.
            try await store.put(try DocumentEngineKeys.pdf(id), Data("not a pdf any more".utf8))
            #expect(try await engine.pageText(id, pageIndex: 1) == "second page")

            // Absent page and absent document.
            #expect(await engineError { _ = try await engine.pageText(id, pageIndex: 2) } == .notFound)
            #expect(await engineError { _ = try await engine.pageText(id, pageIndex: -1) } == .notFound)
            let absent = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 9999, exhibitID: nil)
            #expect(await engineError { _ = try await engine.pageCount(absent) } == .notFound)
            #expect(await engineError { _ = try await engine.pageText(absent, pageIndex: 0) } == .notFound)

            // Re-ingested with another PDF: the cache no longer matches and the new text is read.
            try await engine.ingest(id, pdf: .bytes(textPDF([["replaced"]])), annotations: .empty)
            #expect(try await engine.pageCount(id) == 1)
            #expect(try await engine.pageText(id, pageIndex: 0) == "replaced")

            // A PDF without readable text is a permanent error.
            let opaque = try EngineDocumentID(caseID: 20, batchID: 5, documentID: 1002, exhibitID: nil)
            try await engine.ingest(opaque, pdf: .bytes(samplePDF(7)), annotations: .empty)
            #expect(await engineError { _ = try await engine.pageCount(opaque) } == .permanent)

            // Deleting the document deletes its cache.
            try await engine.delete(id)
            #expect(try await !store.exists(cacheKey))
            try await store.shutdown()
        }
    }
}
