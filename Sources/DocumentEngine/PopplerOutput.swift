import Foundation

/// A word as poppler's `pdftotext -bbox-layout` reports it: its text and its box in display space
/// (see ``PageGeometry``).
public struct PDFWord: Sendable, Hashable {
    public var text: String
    public var box: PageRect

    public init(text: String, box: PageRect) {
        self.text = text
        self.box = box
    }
}

/// One text line of a page, its words in reading order.
public struct PDFTextLine: Sendable, Hashable {
    public var words: [PDFWord]

    public init(words: [PDFWord]) { self.words = words }
}

/// A page's geometry and trim box, as poppler's `pdfinfo -box` reports them (inherited
/// attributes resolved).
struct PageBoxes: Sendable, Hashable {
    var geometry: PageGeometry
    /// The trim box in user space (the crop box, else the media box, when the page has none).
    var trimBox: PageRect
}

/// Readers of poppler's text output. Poppler is the independent reader of the redaction path: the
/// words it finds are what a person copying text from the PDF would get.
public enum PopplerOutput {
    /// The lines of every page of `pdftotext -bbox-layout` output (XHTML), page by page.
    public static func lines(bboxLayout xhtml: String) -> [[PDFTextLine]] {
        var pages: [[PDFTextLine]] = []
        var words: [PDFWord]?
        for raw in xhtml.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("<page ") {
                pages.append([])
            } else if line.hasPrefix("<line ") {
                words = []
            } else if line.hasPrefix("</line>") {
                if let finished = words, !finished.isEmpty, !pages.isEmpty { pages[pages.count - 1].append(PDFTextLine(words: finished)) }
                words = nil
            } else if line.hasPrefix("<word "), let word = word(line) {
                words?.append(word)
            }
        }
        return pages
    }

    /// `<word xMin="…" yMin="…" xMax="…" yMax="…">text</word>`.
    static func word(_ line: String) -> PDFWord? {
        guard let close = line.range(of: ">"), let end = line.range(of: "</word>", options: .backwards), close.upperBound <= end.lowerBound else {
            return nil
        }
        let attributes = String(line[..<close.lowerBound])
        func value(_ name: String) -> Double? {
            guard let start = attributes.range(of: "\(name)=\"") else { return nil }
            let rest = attributes[start.upperBound...]
            guard let quote = rest.firstIndex(of: "\"") else { return nil }
            return Double(rest[..<quote])
        }
        guard let xMin = value("xMin"), let yMin = value("yMin"), let xMax = value("xMax"), let yMax = value("yMax") else { return nil }
        return PDFWord(text: unescaped(String(line[close.upperBound..<end.lowerBound])), box: PageRect(minX: xMin, minY: yMin, maxX: xMax, maxY: yMax))
    }

    static func unescaped(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
    }

    /// Page number (from 1) → boxes, from `pdfinfo -f 1 -l N -box` output:
    /// `Page    1 rot:   90`, `Page    1 MediaBox:     0.00     0.00   612.00   792.00`, `… TrimBox: …`.
    static func pageBoxes(pdfinfo output: String) -> [Int: PageBoxes] {
        var media: [Int: PageRect] = [:]
        var trim: [Int: PageRect] = [:]
        var rotation: [Int: Int] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("Page ") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 3, let page = Int(parts[1]) else { continue }
            switch parts[2] {
            case "rot:":
                if parts.count >= 4, let value = Int(parts[3]) { rotation[page] = value }
            case "MediaBox:", "TrimBox:":
                let numbers = parts.dropFirst(3).compactMap { Double($0) }
                guard numbers.count == 4 else { continue }
                let rect = PageRect(minX: numbers[0], minY: numbers[1], maxX: numbers[2], maxY: numbers[3])
                if parts[2] == "MediaBox:" { media[page] = rect } else { trim[page] = rect }
            default:
                continue
            }
        }
        var result: [Int: PageBoxes] = [:]
        for (page, box) in media {
            result[page] = PageBoxes(geometry: PageGeometry(mediaBox: box, rotation: rotation[page] ?? 0), trimBox: trim[page] ?? box)
        }
        return result
    }
}

/// Poppler's `pdftotext` and `pdfinfo` as a reader of finished PDFs: what a person copying text
/// out of the document, or a search engine indexing it, would get. ``ExchangeVerifier`` uses it
/// to prove that no word is left under a branded-in redaction, independently of the engine's own
/// text extractor.
public struct PopplerReader: Sendable {
    let pdftotext: PDFTool
    let pdfinfo: PDFTool
    let temporaryDirectory: String

    /// The programs `settings` names (`EXCHANGER_PDFTOTEXT_PATH`, `EXCHANGER_PDFINFO_PATH`, else on
    /// `PATH`); throws ``DocumentEngineError/Code/unsupported`` naming poppler-utils when one is missing.
    public init(settings: LocalDocumentEngine.Settings = LocalDocumentEngine.Settings()) throws(DocumentEngineError) {
        let tools = try PopplerTools(settings)
        pdftotext = tools.pdftotext
        pdfinfo = tools.pdfinfo
        temporaryDirectory = settings.temporaryDirectory
    }

    /// Every page's words (display space) and geometry.
    public func pages(of pdf: Data) async throws -> [(geometry: PageGeometry, words: [PDFWord])] {
        let directory = (temporaryDirectory as NSString).appendingPathComponent("exchanger-read-\(UUID().uuidString)")
        let input = (directory as NSString).appendingPathComponent("document.pdf")
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try pdf.write(to: URL(fileURLWithPath: input))
        } catch {
            throw DocumentEngineError(.transient, "cannot stage a PDF to read in \(temporaryDirectory): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let lines = PopplerOutput.lines(bboxLayout: try await pdftotext.run(["-bbox-layout", input, "-"]))
        let boxes = PopplerOutput.pageBoxes(pdfinfo: try await pdfinfo.run(["-f", "1", "-l", "\(lines.count)", "-box", input]))
        return try lines.enumerated().map { index, page throws(DocumentEngineError) in
            guard let found = boxes[index + 1] else { throw DocumentEngineError(.permanent, "pdfinfo reports no boxes for page \(index + 1)") }
            return (found.geometry, page.flatMap(\.words))
        }
    }

    /// The user-space areas of a redaction annotation on a page of `geometry`: its `rects`, else its `bbox`.
    public static func areas(of redaction: InstantJSONAnnotation, geometry: PageGeometry) throws(DocumentEngineError) -> [PageRect] {
        let boxes = [PageBoxes(geometry: geometry, trimBox: geometry.mediaBox)]
        let single = try InstantJSONAnnotation(json: try Self.onFirstPage(redaction))
        return try FlattenOverlay.redactionAreas(try InstantJSON(annotations: [single]), pages: boxes)[0] ?? []
    }

    /// The annotation moved to page 0 (areas are read per page).
    private static func onFirstPage(_ annotation: InstantJSONAnnotation) throws(DocumentEngineError) -> String {
        guard var object = try annotation.object() as? [String: Any] else {
            throw DocumentEngineError(.invalidAnnotations, "redaction \(annotation.id ?? "") is not an object")
        }
        object["pageIndex"] = 0
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            throw DocumentEngineError(.invalidAnnotations, "redaction \(annotation.id ?? "") cannot be re-encoded")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
