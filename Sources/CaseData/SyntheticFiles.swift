import Foundation

/// Small, valid files for synthetic documents: a PDF rendition, a native file, a text file.
enum SyntheticFiles {
    /// A valid PDF of `pages` pages (1…50), each showing `title` and its page number; with
    /// `minimumBytes`, padded to at least that size by an unreferenced stream object (still valid).
    static func pdf(title: String, pages: Int, minimumBytes: Int = 0) -> Data {
        let pageCount = min(max(pages, 1), 50)
        let safeTitle = title.unicodeScalars.map { scalar -> String in
            switch scalar {
            case "(", ")", "\\": "\\" + String(scalar)
            case _ where scalar.value < 0x20 || scalar.value > 0x7e: "?"
            default: String(scalar)
            }
        }.joined()
        // Objects: 1 catalog, 2 pages, 3 font, then per page a page object and a content stream.
        var objects: [String] = []
        let kids = (0..<pageCount).map { "\(4 + 2 * $0) 0 R" }.joined(separator: " ")
        objects.append("<< /Type /Catalog /Pages 2 0 R >>")
        objects.append("<< /Type /Pages /Kids [\(kids)] /Count \(pageCount) >>")
        objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
        for page in 0..<pageCount {
            objects.append(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents \(5 + 2 * page) 0 R /Resources << /Font << /F1 3 0 R >> >> >>")
            let content = "BT /F1 14 Tf 72 720 Td (\(safeTitle)) Tj 0 -24 Td (Page \(page + 1) of \(pageCount)) Tj ET"
            objects.append("<< /Length \(content.utf8.count) >>\nstream\n\(content)\nendstream")
        }
        let unpadded = objects.reduce(400) { $0 + $1.utf8.count + 40 }
        if minimumBytes > unpadded {
            let filler = String(repeating: "0123456789abcdef", count: (minimumBytes - unpadded) / 16 + 1)
            objects.append("<< /Length \(filler.utf8.count) >>\nstream\n\(filler)\nendstream")
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

    /// The native file kinds: extension and MIME type.
    static let nativeKinds: [(ext: String, mime: String)] = [
        ("eml", "message/rfc822"), ("csv", "text/csv"), ("html", "text/html"),
    ]

    /// A native file of the given kind.
    static func native(kind: Int, documentID: Int64, title: String, body: String) -> Data {
        switch kind % nativeKinds.count {
        case 0:
            return Data("""
                From: custodian\(documentID % 97)@example.com\r
                To: counsel@example.com\r
                Subject: \(title)\r
                Date: Mon, 1 Jan 2024 09:00:00 +0000\r
                Message-ID: <doc-\(documentID)@example.com>\r
                Content-Type: text/plain; charset=utf-8\r
                \r
                \(body)\r

                """.utf8)
        case 1:
            return Data("document_id,title,amount\n\(documentID),\"\(title.replacingOccurrences(of: "\"", with: "\"\""))\",\(documentID * 17 % 10_000)\n".utf8)
        default:
            return Data("<!DOCTYPE html>\n<html><head><title>\(title)</title></head><body><p>\(body)</p></body></html>\n".utf8)
        }
    }
}

/// A small deterministic pseudo-random generator (SplitMix64): the same seed gives the same case
/// (and the same values in the property tests, so a failing seed can be replayed).
package struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
