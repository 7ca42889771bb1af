import DocumentEngine
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// True redaction in the local engine, checked with poppler (`pdftotext -bbox-layout`,
/// `pdftoppm`) and qpdf as independent readers of the result, never with the engine's own
/// text extractor alone.
@Suite struct RedactionTests {
    /// A page of the test PDFs: its media box, rotation and content (Helvetica is `/F1`, a red
    /// 2 × 2 image is `/Im1`).
    struct Page {
        var mediaBox = "[0 0 612 792]"
        var rotate = 0
        var content: String
    }

    static let line = "BT /F1 14 Tf 72 720 Td (Privileged advice about the merger) Tj ET"
    static let kerned = "BT /F1 14 Tf 72 650 Td [(Con) 120 (fi) -20 (dential) -300 (strategy) -250 (memo)] TJ ET"

    /// A PDF of `pages`, uncompressed, with a font and an image every page may use.
    static func pdf(_ pages: [Page], catalogCopies: String? = nil) -> Data {
        var objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
        let image = "<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceRGB /BitsPerComponent 8 /Length 12 >>\nstream\n"
        var kids: [String] = []
        var streams: [Data] = []
        for page in pages {
            let number = objects.count + 1
            kids.append("\(number) 0 R")
            objects.append(
                "<< /Type /Page /Parent 2 0 R /MediaBox \(page.mediaBox) /Rotate \(page.rotate) /Contents \(number + 1) 0 R /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 IMAGE 0 R >> >> >>")
            objects.append("<< /Length \(page.content.utf8.count) >>\nstream\n\(page.content)\nendstream")
        }
        objects[1] = "<< /Type /Pages /Kids [\(kids.joined(separator: " "))] /Count \(pages.count) >>"
        if let text = catalogCopies {
            // Copies of page text where PDFs keep them: XMP metadata, a tagged structure tree with
            // /ActualText, piece info, and a form field's value.
            let xmp = "<x:xmpmeta><dc:description>\(text)</dc:description></x:xmpmeta>"
            let base = objects.count + 1
            objects.append("<< /Type /Metadata /Subtype /XML /Length \(xmp.utf8.count) >>\nstream\n\(xmp)\nendstream")
            objects.append("<< /Type /StructTreeRoot /K [<< /S /P /ActualText (\(text)) /Pg 4 0 R >>] >>")
            objects.append("<< /Fields [<< /FT /Tx /T (note) /V (\(text)) >>] >>")
            objects[0] = "<< /Type /Catalog /Pages 2 0 R /Metadata \(base) 0 R /StructTreeRoot \(base + 1) 0 R /MarkInfo << /Marked true >> /AcroForm \(base + 2) 0 R /PieceInfo << /App << /Private (\(text)) >> >> >>"
        }
        let imageNumber = objects.count + 1
        objects = objects.map { $0.replacingOccurrences(of: "IMAGE 0 R", with: "\(imageNumber) 0 R") }
        var red = Data(image.utf8)
        red.append(contentsOf: [UInt8](repeating: 0, count: 12).enumerated().map { $0.offset % 3 == 0 ? 220 : 20 })
        red.append(Data("\nendstream".utf8))
        streams.append(red)
        var output = Data("%PDF-1.4\n".utf8)
        var offsets: [Int] = []
        for (index, body) in objects.enumerated() {
            offsets.append(output.count)
            output.append(Data("\(index + 1) 0 obj\n\(body)\nendobj\n".utf8))
        }
        offsets.append(output.count)
        output.append(Data("\(imageNumber) 0 obj\n".utf8))
        output.append(streams[0])
        output.append(Data("\nendobj\n".utf8))
        let xref = output.count
        var trailer = "xref\n0 \(offsets.count + 1)\n0000000000 65535 f \n"
        for offset in offsets { trailer += String(format: "%010d 00000 n \n", offset) }
        trailer += "trailer\n<< /Size \(offsets.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n"
        output.append(Data(trailer.utf8))
        return output
    }

    static func redaction(_ id: String, page: Int, bbox: [Double], rects: [[Double]]? = nil, overlay: String = "PRIVILEGED") throws -> InstantJSONAnnotation {
        var object: [String: Any] = ["id": id, "type": "pspdfkit/markup/redaction", "pageIndex": page, "bbox": bbox, "overlayText": overlay, "v": 2]
        if let rects { object["rects"] = rects }
        return try InstantJSONAnnotation(json: String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
    }

    /// The words of every page as poppler reads them.
    static func words(_ pdf: Data) async throws -> [[PDFWord]] {
        PopplerOutput.lines(bboxLayout: try await tool("/usr/bin/pdftotext", ["-bbox-layout"], pdf).output).map { $0.flatMap(\.words) }
    }

    /// Runs `executable arguments… in.pdf output…` on `pdf` in a fresh directory; returns its
    /// standard output and the file `readBack` (in that directory) when one is named.
    static func tool(
        _ executable: String, _ arguments: [String], _ pdf: Data, output: [String] = ["-"], readBack: String? = nil
    ) async throws -> (output: String, file: Data?) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-redaction-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("in.pdf")
        try pdf.write(to: input)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments + [input.path] + output.map { $0 == "-" ? $0 : directory.appendingPathComponent($0).path }
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(executable) \(arguments) exits 0")
        return (String(decoding: data, as: UTF8.self), try readBack.map { try Data(contentsOf: directory.appendingPathComponent($0)) })
    }

    /// Page `page` rendered at 72 dpi by pdftoppm: width, height and RGB bytes.
    static func render(_ pdf: Data, page: Int) async throws -> (Int, Int, [UInt8]) {
        let ppm = try await tool(
            "/usr/bin/pdftoppm", ["-r", "72", "-f", "\(page)", "-l", "\(page)", "-singlefile"], pdf, output: ["page"], readBack: "page.ppm")
        let bytes = [UInt8](try #require(ppm.file))
        // P6 <width> <height> 255 <RGB…>
        var fields: [String] = []
        var index = 0
        while fields.count < 4 {
            while bytes[index] == 0x20 || bytes[index] == 0x0A { index += 1 }
            let start = index
            while bytes[index] != 0x20 && bytes[index] != 0x0A { index += 1 }
            fields.append(String(decoding: bytes[start..<index], as: UTF8.self))
        }
        index += 1
        let width = try #require(Int(fields[1])), height = try #require(Int(fields[2]))
        return (width, height, Array(bytes[index...]))
    }

    static func pixel(_ raster: (Int, Int, [UInt8]), x: Int, y: Int) -> (Int, Int, Int) {
        let offset = (y * raster.0 + x) * 3
        return (Int(raster.2[offset]), Int(raster.2[offset + 1]), Int(raster.2[offset + 2]))
    }

    static func engine(_ directory: URL) async throws -> (LocalDocumentEngine, any ObjectStore) {
        let store = try await ObjectStorage.open("file://" + directory.path)
        return (try LocalDocumentEngine(store: store), store)
    }

    /// The annotation-space box of the source's words `from` … `through` (display space is
    /// annotation space on an unrotated page at the origin), ending `fraction` into the last word.
    static func box(_ words: [PDFWord], from first: String, through last: String, fraction: Double = 1) throws -> [Double] {
        let start = try #require(words.first { $0.text == first }), end = try #require(words.first { $0.text == last })
        let right = end.box.minX + (end.box.maxX - end.box.minX) * fraction
        return [start.box.minX - 1, start.box.minY - 1, right - start.box.minX + 1, start.box.height + 2]
    }

    @Test func coveredWordsLeaveTheTextLayerTheFileAndThePageText() async throws {
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            let source = Self.pdf([Page(content: Self.line + "\n" + Self.kerned), Page(content: Self.line)])
            let sourceWords = try await Self.words(source)[0]
            // "advice" whole and "about" partly (a third of it) on the first line; "Confidential",
            // drawn in three kerned pieces, on the second, as a second rect.
            let first = try Self.box(sourceWords, from: "advice", through: "about", fraction: 0.3)
            let second = try Self.box(sourceWords, from: "Confidential", through: "Confidential")
            let union = [first[0], first[1], first[2], second[1] + second[3] - first[1]]
            let built = try await engine.buildFlattened(
                pdf: source, annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: union, rects: [first, second])]))

            let pages = try await Self.words(built)
            let texts = pages[0].map(\.text)
            for covered in ["advice", "about", "Confidential"] {
                #expect(!texts.contains(covered), "'\(covered)' is not in the text layer of page 1")
            }
            for kept in ["Privileged", "the", "merger", "strategy", "memo"] {
                #expect(texts.contains(kept), "'\(kept)' outside the areas is still searchable text")
            }
            // No word but the overlay text's lies in an area.
            for word in pages[0] where !["PRIVILEGED"].contains(word.text) {
                for rect in [first, second] {
                    let area = PageRect(minX: rect[0], minY: rect[1], maxX: rect[0] + rect[2], maxY: rect[1] + rect[3])
                    #expect(!area.overlaps(word.box), "'\(word.text)' \(word.box) is not under the redaction \(area)")
                }
            }
            #expect(pages[1].map(\.text) == ["Privileged", "advice", "about", "the", "merger"], "page 2 has no redaction and keeps every word")
            // Nothing of the covered text anywhere in the file, every stream uncompressed.
            let file = try await uncompressed(built)
            for covered in ["advice about", "(Con)", "(dential)"] where file.components(separatedBy: covered).count - 1 > (covered == "advice about" ? 1 : 0) {
                Issue.record("'\(covered)' is still in the file")
            }
            #expect(file.contains("(Privileged advice about the merger) Tj"), "page 2's content stream stays as it was")
            // The engine's own page text (what re-OCR indexes) follows the redacted PDF.
            let id = try EngineDocumentID(caseID: 1, batchID: 1, documentID: 1, exhibitID: 1)
            try await engine.ingest(id, pdf: .bytes(built), annotations: try InstantJSON(annotations: []))
            let pageText = try await engine.pageText(id, pageIndex: 0)
            #expect(!pageText.contains("advice") && !pageText.contains("about") && !pageText.contains("Confidential"))
            #expect(pageText.contains("Privileged") && pageText.contains("merger") && pageText.contains("strategy"))
            try await store.shutdown()
        }
    }

    @Test func redactionsOnSeveralPagesEachRemoveTheirOwnWords() async throws {
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            let pages = [Self.line, "BT /F1 14 Tf 72 720 Td (Second page stays whole) Tj ET", Self.kerned]
            let source = Self.pdf(pages.map { Page(content: $0) })
            let words = try await Self.words(source)
            let first = try Self.box(words[0], from: "Privileged", through: "advice")
            let third = try Self.box(words[2], from: "strategy", through: "memo")
            let built = try await engine.buildFlattened(
                pdf: source,
                annotations: try InstantJSON(annotations: [
                    try Self.redaction("r3", page: 2, bbox: third, overlay: ""), try Self.redaction("r1", page: 0, bbox: first, overlay: ""),
                ]))
            let after = try await Self.words(built).map { $0.map(\.text) }
            #expect(after[0] == ["about", "the", "merger"], "\(after[0])")
            #expect(after[1] == ["Second", "page", "stays", "whole"])
            #expect(after[2] == ["Confidential"], "\(after[2])")
            try await store.shutdown()
        }
    }

    @Test func copiesOfTheCoveredTextElsewhereInTheFileAreDropped() async throws {
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            let source = Self.pdf([Page(content: Self.line)], catalogCopies: "advice about the merger")
            #expect(try await uncompressed(source).contains("advice about the merger"), "the copies are in the source")
            let box = try Self.box(try await Self.words(source)[0], from: "advice", through: "about")
            let built = try await engine.buildFlattened(pdf: source, annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: box)]))
            let file = try await uncompressed(built)
            #expect(!file.contains("advice"), "no XMP, /ActualText, piece-info or form-field copy is left")
            #expect(!file.contains("/StructTreeRoot") && !file.contains("/AcroForm") && !file.contains("/Metadata"))
            try await store.shutdown()
        }
    }

    @Test(arguments: [90, 180, 270])
    func rotatedPagesAreRedactedInThePagesOwnSpace(rotation: Int) async throws {
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            let upright = Self.pdf([Page(content: Self.line)])
            let box = try Self.box(try await Self.words(upright)[0], from: "advice", through: "the")
            // The same content and the same annotation-space box on a rotated page.
            let source = Self.pdf([Page(rotate: rotation, content: Self.line)])
            let built = try await engine.buildFlattened(pdf: source, annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: box)]))
            let texts = try await Self.words(built)[0].map(\.text)
            #expect(!texts.contains("advice") && !texts.contains("about") && !texts.contains("the"), "rotation \(rotation): \(texts)")
            #expect(texts.contains("Privileged") && texts.contains("merger"), "rotation \(rotation): \(texts)")
            #expect(try await uncompressed(built).contains("advice") == false)
            // The restored text layer sits where the source's words were.
            let before = try #require(try await Self.words(source)[0].first { $0.text == "merger" })
            let after = try #require(try await Self.words(built)[0].first { $0.text == "merger" })
            #expect(before.box.contains(after.box, tolerance: 1.5) && after.box.contains(before.box, tolerance: 1.5), "\(before.box) vs \(after.box)")
            try await store.shutdown()
        }
    }

    @Test func rotatedPageAreaIsWhereAViewerShowsIt() async throws {
        // Rotation 90 on a Letter page: annotation-space [70, 55, 300, 25] (user x 70…370,
        // y 712…737) is displayed at u 712…737, v 70…370. The overlay text is drawn there.
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            let source = Self.pdf([Page(rotate: 90, content: Self.line)])
            let built = try await engine.buildFlattened(
                pdf: source, annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: [70, 55, 300, 25], overlay: "WITHHELD")]))
            let words = try await Self.words(built)[0]
            let overlay = try #require(words.first { $0.text == "WITHHELD" })
            #expect(PageRect(minX: 712, minY: 70, maxX: 737, maxY: 370).contains(overlay.box, tolerance: 1), "\(overlay.box)")
            #expect(words.count == 1, "only the overlay text is left: \(words.map(\.text))")
            try await store.shutdown()
        }
    }

    @Test func imagesUnderTheAreaArePaintedOverAndTheRestOfThePageStays() async throws {
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            // The red image fills display x 72…272, y 192…292; the redaction covers x 100…200, y 200…250.
            let source = Self.pdf([Page(content: "q 200 0 0 100 72 500 cm /Im1 Do Q\n" + Self.line)])
            let built = try await engine.buildFlattened(
                pdf: source, annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: [100, 200, 100, 50], overlay: "")]))
            let raster = try await Self.render(built, page: 1)
            for (x, y) in [(105, 205), (150, 225), (195, 245)] {
                let (r, g, b) = Self.pixel(raster, x: x, y: y)
                #expect(r < 60 && g < 60 && b < 60, "(\(x), \(y)) under the redaction is black, not the image: \(r) \(g) \(b)")
            }
            let (r, g, _) = Self.pixel(raster, x: 80, y: 280)
            #expect(r > 150 && g < 90, "the image outside the area stays: \(r) \(g)")
            try await store.shutdown()
        }
    }

    @Test func aClipLeftOpenByThePageCannotHideTheMask() async throws {
        try await withTemporaryDirectory { directory in
            let (engine, store) = try await Self.engine(directory)
            // The content ends inside a q with a 10 × 10 clip: a mask appended to it would be clipped away.
            let source = Self.pdf([Page(content: Self.line + "\nq 0 0 10 10 re W n")])
            let box = try Self.box(try await Self.words(source)[0], from: "Privileged", through: "merger")
            let built = try await engine.buildFlattened(pdf: source, annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: box, overlay: "")]))
            #expect(try await Self.words(built)[0].isEmpty)
            let raster = try await Self.render(built, page: 1)
            let (r, g, b) = Self.pixel(raster, x: Int(box[0] + box[2] / 2), y: Int(box[1] + box[3] / 2))
            #expect(r < 60 && g < 60 && b < 60)
            try await store.shutdown()
        }
    }

    @Test func withoutPopplerBrandInRefusesNamingThePackage() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await ObjectStorage.open("file://" + directory.path)
            var settings = LocalDocumentEngine.Settings()
            settings.pdftoppmPath = "/nonexistent/pdftoppm"
            let engine = try LocalDocumentEngine(store: store, settings: settings)
            let error = await #expect(throws: DocumentEngineError.self) {
                try await engine.buildFlattened(pdf: realPDF("Source"), annotations: try InstantJSON(annotations: [try Self.redaction("r", page: 0, bbox: [60, 60, 200, 30])]))
            }
            #expect(error?.code == .unsupported)
            #expect(error?.message.contains("poppler-utils") == true && error?.message.contains("EXCHANGER_PDFTOPPM_PATH") == true)
            try await store.shutdown()
        }
    }

    @Test func aHangingToolIsKilledAtItsDeadlineAndTheBuildIsTransient() async throws {
        try await withTemporaryDirectory { directory in
            // A "qpdf" that hangs: it records its pid, then sleeps in its own place.
            let script = directory.appendingPathComponent("qpdf")
            let pidFile = directory.appendingPathComponent("pid")
            try "#!/bin/sh\necho $$ > '\(pidFile.path)'\nexec sleep 1000\n".write(to: script, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
            let store = try await ObjectStorage.open("file://" + directory.path)
            var settings = try DocumentEngines.localSettings(environment: ["EXCHANGER_PDF_TOOL_TIMEOUT_SECONDS": "1"])
            settings.qpdfPath = script.path
            let engine = try LocalDocumentEngine(store: store, settings: settings)
            let start = ContinuousClock.now
            let error = await #expect(throws: DocumentEngineError.self) {
                try await engine.buildFlattened(pdf: realPDF("Hang"), annotations: try InstantJSON(annotations: []))
            }
            #expect(ContinuousClock.now - start < .seconds(60), "killed at its 1 s deadline, long before the 1,000 s sleep ends")
            #expect(error?.code == .transient && error?.message.contains("EXCHANGER_PDF_TOOL_TIMEOUT_SECONDS") == true, "\(String(describing: error))")
            let pid = try #require(Int32(try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(kill(pid, 0) != 0, "the hanging program is gone")
            try await store.shutdown()
        }
    }

    @Test(
        "a tool that fails for a full disk is transient (the document is retried); any other failure is permanent and carries what the tool said",
        arguments: [("qpdf: write error: No space left on device", true), ("qpdf: damaged.pdf: file is damaged; xref not found", false)])
    func aToolsErrorOutputDecidesItsClass(said: String, transient: Bool) async throws {
        try await withTemporaryDirectory { directory in
            let script = directory.appendingPathComponent("qpdf")
            try "#!/bin/sh\necho '\(said)' >&2\nexit 2\n".write(to: script, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
            let store = try await ObjectStorage.open("file://" + directory.path)
            var settings = try DocumentEngines.localSettings(environment: [:])
            settings.qpdfPath = script.path
            let engine = try LocalDocumentEngine(store: store, settings: settings)
            let error = await #expect(throws: DocumentEngineError.self) {
                try await engine.buildFlattened(pdf: realPDF("Full"), annotations: try InstantJSON(annotations: []))
            }
            #expect(error?.code == (transient ? .transient : .permanent), "\(String(describing: error))")
            #expect(error?.message.contains(said) == true, "\(String(describing: error))")
            try await store.shutdown()
        }
    }

    @Test func pageGeometryRoundTripsEveryRotation() {
        for rotation in [0, 90, 180, 270] {
            let geometry = PageGeometry(mediaBox: PageRect(minX: 10, minY: 20, maxX: 622, maxY: 812), rotation: rotation)
            let user = geometry.userRect(annotationBox: [50, 60, 100, 30])
            #expect(user == PageRect(minX: 60, minY: 722, maxX: 160, maxY: 752))
            let display = geometry.displayRect(user)
            #expect(geometry.userRect(display: display) == user, "rotation \(rotation)")
            let size = geometry.displaySize
            #expect(display.maxX <= size.width && display.maxY <= size.height && display.minX >= 0 && display.minY >= 0)
        }
        #expect(PageGeometry(mediaBox: PageRect(minX: 0, minY: 0, maxX: 612, maxY: 792), rotation: -90).rotation == 270)
    }
}
