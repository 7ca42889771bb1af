import DocumentEngine
import Foundation

extension ExchangeVerifier {
    /// Proves that the branded-in redactions of one document removed what they cover, reading the
    /// PDFs with poppler (``PopplerReader``), not with the engine's own text extractor:
    /// - no word of the destination page's text layer overlaps a redaction area, except the words
    ///   of the redaction's overlay text;
    /// - no word the area covers in the source page is in the destination page's text (which the
    ///   page-text check proves equal to the stored text file and the index row), more often than
    ///   it stands uncovered elsewhere on the source page or in the overlay text.
    ///
    /// A reader that cannot run (poppler-utils missing) or a PDF it cannot read is a problem: a
    /// redaction that cannot be checked is not reported as checked.
    /// - Returns: the number of redactions checked.
    func checkRedactions(
        new: Int64, source: EngineDocumentID, destination: EngineDocumentID, redactions: [InstantJSONAnnotation], engine: any DocumentEngine,
        problems: inout ProblemList
    ) async -> Int {
        guard !redactions.isEmpty else { return 0 }
        do {
            let reader = try PopplerReader(settings: try DocumentEngines.localSettings(environment: settings.environment))
            let sourcePages = try await reader.pages(of: try await engine.document(source))
            let destinationPages = try await reader.pages(of: try await engine.document(destination))
            var checked = 0
            for redaction in redactions {
                let object = (try? redaction.object()) as? [String: Any] ?? [:]
                let name = redaction.id ?? "?"
                guard let page = (object["pageIndex"] as? NSNumber)?.intValue, sourcePages.indices.contains(page),
                    destinationPages.indices.contains(page)
                else {
                    problems.add("document \(new): redaction \(name) is on page \(String(describing: object["pageIndex"])), which its PDFs do not have")
                    continue
                }
                let overlayWords = Set(((object["overlayText"] as? String) ?? "").split(whereSeparator: \.isWhitespace).map(String.init))
                let after = destinationPages[page]
                let afterAreas = try PopplerReader.areas(of: redaction, geometry: after.geometry).map { after.geometry.displayRect($0) }
                for word in after.words where !overlayWords.contains(word.text) && afterAreas.contains(where: { $0.overlaps(word.box) }) {
                    problems.add("document \(new): redaction \(name) leaks '\(word.text)' on page \(page + 1): the word is in the PDF's text under the redaction")
                }
                let before = sourcePages[page]
                let beforeAreas = try PopplerReader.areas(of: redaction, geometry: before.geometry).map { before.geometry.displayRect($0) }
                let covered = before.words.filter { word in beforeAreas.contains(where: { $0.overlaps(word.box) }) }.map(\.text)
                var allowed: [String: Int] = [:]
                for word in before.words where !beforeAreas.contains(where: { $0.overlaps(word.box) }) { allowed[word.text, default: 0] += 1 }
                for word in overlayWords { allowed[word, default: 0] += 1 }
                let text = try await engine.pageText(destination, pageIndex: page)
                var found: [String: Int] = [:]
                for token in text.split(whereSeparator: \.isWhitespace) { found[String(token), default: 0] += 1 }
                for word in Set(covered) where (found[word] ?? 0) > (allowed[word] ?? 0) {
                    problems.add("document \(new): redaction \(name) leaks '\(word)' into the page text and index of page \(page + 1)")
                }
                checked += 1
            }
            return checked
        } catch {
            problems.add("document \(new): cannot check its \(redactions.count) redaction(s): \(error)")
            return 0
        }
    }
}
