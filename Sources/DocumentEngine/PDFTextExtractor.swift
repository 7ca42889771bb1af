import Foundation

/// A minimal PDF text extractor for the local document engine: it reads the page tree and the
/// page content streams of a PDF and returns each page's text lines.
///
/// What it understands: classic cross-reference-free object scanning (`N G obj … endobj`), the
/// page tree (`/Root` → `/Pages` → `/Kids`, pages in document order), `/Contents` as one stream
/// or an array of streams, form XObjects drawn with `Do` (followed into their own content, as
/// flattened annotations and overlaid pages are drawn), and the text operators of uncompressed content streams — `Tj`, `TJ`,
/// `'`, `"` with literal strings (all escape sequences, octal codes, line continuations) and hex
/// strings; `Td`/`TD` with a vertical move, `T*`, `Tm` and `ET` end a line. String bytes are read
/// as PDFDocEncoding (Latin-1 for the printable range), or UTF-16BE after a byte-order mark.
///
/// What it refuses (``PDFTextExtractor/Failure``): no page tree, and compressed streams
/// (`/Filter`), which need a decoder this build does not have. Object streams and encrypted
/// PDFs are not supported either.
public struct PDFTextExtractor: Sendable {
    /// Why a PDF could not be read.
    public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    public init() {}

    /// The text of every page, in page order: each page's text lines joined by `"\n"`.
    public func pageTexts(of pdf: Data) throws(Failure) -> [String] {
        let bytes = [UInt8](pdf)
        guard bytes.starts(with: Array("%PDF-".utf8)) else { throw Failure("not a PDF (no %PDF- header)") }
        let objects = Self.objects(in: bytes)
        guard !objects.isEmpty else { throw Failure("no objects found") }
        let root = try rootReference(bytes: bytes, objects: objects)
        guard let catalog = objects[root], let pagesRef = Self.reference(after: "/Pages", in: catalog.dictionary) else {
            throw Failure("the catalog names no page tree")
        }
        var pages: [Int] = []
        var visited: Set<Int> = []
        try collectPages(pagesRef, objects: objects, into: &pages, visited: &visited)
        return try pages.map { page throws(Failure) in
            guard let object = objects[page] else { throw Failure("page object \(page) is missing") }
            var content: [UInt8] = []
            for ref in Self.contentReferences(object.dictionary) {
                content.append(contentsOf: try Self.streamData(ref, objects: objects, what: "content stream \(ref) of page object \(page)"))
                content.append(0x0A)
            }
            var expanding: Set<Int> = []
            let expanded = try Self.expandingForms(content, resources: object.dictionary, objects: objects, depth: 0, expanding: &expanding)
            return Self.textLines(expanded).joined(separator: "\n")
        }
    }

    /// Form XObjects drawn from one another deeper than this are not followed (a malformed PDF).
    static let maxFormDepth = 8

    /// The uncompressed data of stream object `ref`.
    static func streamData(_ ref: Int, objects: [Int: Object], what: String) throws(Failure) -> [UInt8] {
        guard let stream = objects[ref] else { throw Failure("\(what) is missing") }
        if find(Array("/Filter".utf8), in: stream.dictionary) != nil {
            throw Failure("\(what) (object \(ref)) is compressed (/Filter); only uncompressed content streams are supported")
        }
        guard let data = stream.stream else { throw Failure("object \(ref) is not a stream") }
        return data
    }

    /// `content` with every `/Name Do` of a form XObject (`/Subtype /Form`) replaced by the form's
    /// own content, recursively — flattened annotations and overlaid pages (qpdf's
    /// `--flatten-annotations`, `--overlay`) draw their text through forms. `resources` is the
    /// dictionary holding (or referring to) the `/Resources` whose `/XObject` entries name them.
    /// Image XObjects and unknown names are left alone; a form drawing itself is drawn once.
    static func expandingForms(
        _ content: [UInt8], resources: [UInt8], objects: [Int: Object], depth: Int, expanding: inout Set<Int>
    ) throws(Failure) -> [UInt8] {
        let names = xObjectReferences(resources, objects: objects)
        guard !names.isEmpty, depth < maxFormDepth, find(Array("Do".utf8), in: content) != nil else { return content }
        var result: [UInt8] = []
        result.reserveCapacity(content.count)
        var cursor = 0
        var from = 0
        while let at = find(Array("Do".utf8), in: content, from: from) {
            from = at + 2
            let after = at + 2
            guard after >= content.count || isDelimiterOrSpace(content[after]), at > 0, isSpace(content[at - 1]) else { continue }
            // The operand: the name just before.
            var nameEnd = at - 1
            while nameEnd > 0, isSpace(content[nameEnd]) { nameEnd -= 1 }
            var nameStart = nameEnd
            while nameStart > 0, !isDelimiterOrSpace(content[nameStart - 1]) { nameStart -= 1 }
            guard nameStart > 0, content[nameStart - 1] == UInt8(ascii: "/") else { continue }
            let xName = String(decoding: content[nameStart...nameEnd], as: UTF8.self)
            guard let ref = names[xName], let form = objects[ref], name(after: "/Subtype", in: form.dictionary) == "Form",
                !expanding.contains(ref)
            else { continue }
            expanding.insert(ref)
            let inner = try streamData(ref, objects: objects, what: "form XObject /\(xName)")
            let drawn = try expandingForms(inner, resources: form.dictionary, objects: objects, depth: depth + 1, expanding: &expanding)
            expanding.remove(ref)
            result.append(contentsOf: content[cursor..<(nameStart - 1)])
            result.append(0x0A)
            result.append(contentsOf: drawn)
            result.append(0x0A)
            cursor = after
        }
        result.append(contentsOf: content[cursor...])
        return result
    }

    /// The `/XObject` names of a dictionary's `/Resources` (inline or an indirect object) → object numbers.
    static func xObjectReferences(_ dictionary: [UInt8], objects: [Int: Object]) -> [String: Int] {
        guard let resourcesAt = findKey(Array("/Resources".utf8), in: dictionary) else { return [:] }
        var cursor = resourcesAt + "/Resources".utf8.count
        while cursor < dictionary.count, isSpace(dictionary[cursor]) { cursor += 1 }
        var resources = Array(dictionary[cursor...])
        if cursor < dictionary.count, isDigit(dictionary[cursor]), let ref = references(in: Array(resources.prefix(24))).first,
            let object = objects[ref]
        {
            resources = object.dictionary
        }
        guard let xAt = findKey(Array("/XObject".utf8), in: resources) else { return [:] }
        var start = xAt + "/XObject".utf8.count
        while start < resources.count, isSpace(resources[start]) { start += 1 }
        var entries = Array(resources[start...])
        if start < resources.count, isDigit(resources[start]), let ref = references(in: Array(entries.prefix(24))).first,
            let object = objects[ref]
        {
            entries = object.dictionary
        }
        // `<< /Name N G R … >>`: up to the first `>>`.
        guard let open = find(Array("<<".utf8), in: entries) else { return [:] }
        let close = find(Array(">>".utf8), in: entries, from: open + 2) ?? entries.count
        let text = String(decoding: entries[(open + 2)..<close], as: UTF8.self)
        let parts = text.split(whereSeparator: { " \t\r\n\u{0C}".contains($0) })
        var result: [String: Int] = [:]
        var index = 0
        while index + 3 < parts.count {
            if parts[index].hasPrefix("/"), let number = Int(parts[index + 1]), Int(parts[index + 2]) != nil, parts[index + 3] == "R" {
                result[String(parts[index].dropFirst())] = number
                index += 4
            } else {
                index += 1
            }
        }
        return result
    }

    // MARK: Objects

    struct Object {
        /// The object's body up to `stream` (its dictionary, or the whole body when no stream).
        var dictionary: [UInt8]
        var stream: [UInt8]?
    }

    /// Every `N G obj … endobj`, by object number (the last definition wins, as with incremental updates).
    static func objects(in bytes: [UInt8]) -> [Int: Object] {
        var result: [Int: Object] = [:]
        let obj = Array("obj".utf8), endobj = Array("endobj".utf8), streamWord = Array("stream".utf8)
        let endstream = Array("endstream".utf8)
        var index = 0
        while let at = find(obj, in: bytes, from: index) {
            index = at + obj.count
            // "obj" must be preceded by "N G " and followed by a delimiter; "endobj" is not "obj".
            guard at >= 4, index >= bytes.count || isDelimiterOrSpace(bytes[index]) else { continue }
            if at >= 3, bytes[(at - 3)..<at].elementsEqual(Array("end".utf8)) { continue }
            var cursor = at - 1
            guard isSpace(bytes[cursor]) else { continue }
            while cursor > 0, isSpace(bytes[cursor]) { cursor -= 1 }
            let generationEnd = cursor + 1
            while cursor > 0, isDigit(bytes[cursor]) { cursor -= 1 }
            guard generationEnd > cursor + 1, isSpace(bytes[cursor]) else { continue }
            while cursor > 0, isSpace(bytes[cursor]) { cursor -= 1 }
            let numberEnd = cursor + 1
            while cursor > 0, isDigit(bytes[cursor - 1]) { cursor -= 1 }
            guard numberEnd > cursor, isDigit(bytes[cursor]),
                  let number = Int(String(decoding: bytes[cursor..<numberEnd], as: UTF8.self)) else { continue }
            let end = find(endobj, in: bytes, from: index) ?? bytes.count
            let body = Array(bytes[index..<end])
            if let streamAt = findKeyword(streamWord, in: body) {
                var start = streamAt + streamWord.count
                if start < body.count, body[start] == 0x0D { start += 1 }
                if start < body.count, body[start] == 0x0A { start += 1 }
                let dictionary = Array(body[..<streamAt])
                var stop = find(endstream, in: body, from: start) ?? body.count
                if let length = integer(after: "/Length", in: dictionary), length >= 0, start + length <= stop {
                    stop = start + length
                } else {
                    // No direct length: drop the end-of-line before `endstream`.
                    if stop > start, body[stop - 1] == 0x0A { stop -= 1 }
                    if stop > start, body[stop - 1] == 0x0D { stop -= 1 }
                }
                result[number] = Object(dictionary: dictionary, stream: Array(body[start..<stop]))
            } else {
                result[number] = Object(dictionary: body, stream: nil)
            }
            index = end
        }
        return result
    }

    private func rootReference(bytes: [UInt8], objects: [Int: Object]) throws(Failure) -> Int {
        // The trailer's /Root; else the object of /Type /Catalog.
        if let trailer = Self.lastIndex(of: Array("trailer".utf8), in: bytes),
           let root = Self.reference(after: "/Root", in: Array(bytes[trailer...]))
        {
            return root
        }
        for (number, object) in objects.sorted(by: { $0.key < $1.key }) where Self.name(after: "/Type", in: object.dictionary) == "Catalog" {
            return number
        }
        throw Failure("no document catalog (/Root)")
    }

    private func collectPages(_ number: Int, objects: [Int: Object], into pages: inout [Int], visited: inout Set<Int>) throws(Failure) {
        guard visited.insert(number).inserted else { throw Failure("the page tree has a cycle at object \(number)") }
        guard let node = objects[number] else { throw Failure("page tree object \(number) is missing") }
        let type = Self.name(after: "/Type", in: node.dictionary)
        if type == "Page" {
            pages.append(number)
            return
        }
        guard let kids = Self.arrayText(after: "/Kids", in: node.dictionary) else {
            throw Failure("page tree node \(number) has no /Kids")
        }
        for kid in Self.references(in: kids) { try collectPages(kid, objects: objects, into: &pages, visited: &visited) }
    }

    static func contentReferences(_ dictionary: [UInt8]) -> [Int] {
        guard let at = find(Array("/Contents".utf8), in: dictionary) else { return [] }
        var cursor = at + "/Contents".utf8.count
        while cursor < dictionary.count, isSpace(dictionary[cursor]) { cursor += 1 }
        if cursor < dictionary.count, dictionary[cursor] == UInt8(ascii: "[") {
            let end = dictionary[cursor...].firstIndex(of: UInt8(ascii: "]")) ?? dictionary.count
            return references(in: Array(dictionary[cursor..<end]))
        }
        return reference(after: "/Contents", in: dictionary).map { [$0] } ?? []
    }

    // MARK: Dictionary scanning (enough for page trees)

    static func reference(after key: String, in bytes: [UInt8]) -> Int? {
        guard let at = findKey(Array(key.utf8), in: bytes) else { return nil }
        let refs = references(in: Array(bytes[(at + key.utf8.count)...].prefix(40)))
        return refs.first
    }

    /// `N G R` references in order.
    static func references(in bytes: [UInt8]) -> [Int] {
        let text = String(decoding: bytes, as: UTF8.self)
        let tokens = text.split(whereSeparator: { " \t\r\n\u{0C}[]<>/".contains($0) })
        var result: [Int] = []
        var index = 0
        while index + 2 < tokens.count {
            if tokens[index + 2] == "R", let number = Int(tokens[index]), Int(tokens[index + 1]) != nil {
                result.append(number)
                index += 3
            } else {
                index += 1
            }
        }
        return result
    }

    static func integer(after key: String, in bytes: [UInt8]) -> Int? {
        guard let at = findKey(Array(key.utf8), in: bytes) else { return nil }
        var cursor = at + key.utf8.count
        while cursor < bytes.count, isSpace(bytes[cursor]) { cursor += 1 }
        let start = cursor
        while cursor < bytes.count, isDigit(bytes[cursor]) { cursor += 1 }
        guard cursor > start else { return nil }
        let value = Int(String(decoding: bytes[start..<cursor], as: UTF8.self))
        // An indirect length (`12 0 R`) is not a direct integer.
        var probe = cursor
        while probe < bytes.count, isSpace(bytes[probe]) { probe += 1 }
        let generationStart = probe
        while probe < bytes.count, isDigit(bytes[probe]) { probe += 1 }
        if probe > generationStart {
            while probe < bytes.count, isSpace(bytes[probe]) { probe += 1 }
            if probe < bytes.count, bytes[probe] == UInt8(ascii: "R") { return nil }
        }
        return value
    }

    static func name(after key: String, in bytes: [UInt8]) -> String? {
        guard let at = findKey(Array(key.utf8), in: bytes) else { return nil }
        var cursor = at + key.utf8.count
        while cursor < bytes.count, isSpace(bytes[cursor]) { cursor += 1 }
        guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: "/") else { return nil }
        cursor += 1
        let start = cursor
        while cursor < bytes.count, !isDelimiterOrSpace(bytes[cursor]) { cursor += 1 }
        return String(decoding: bytes[start..<cursor], as: UTF8.self)
    }

    static func arrayText(after key: String, in bytes: [UInt8]) -> [UInt8]? {
        guard let at = findKey(Array(key.utf8), in: bytes) else { return nil }
        var cursor = at + key.utf8.count
        while cursor < bytes.count, isSpace(bytes[cursor]) { cursor += 1 }
        guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: "[") else { return nil }
        let end = bytes[cursor...].firstIndex(of: UInt8(ascii: "]")) ?? bytes.count
        return Array(bytes[(cursor + 1)..<end])
    }

    /// A key (`/Type`) followed by a delimiter, so `/Type` does not match `/TypeX`.
    static func findKey(_ key: [UInt8], in bytes: [UInt8]) -> Int? {
        var from = 0
        while let at = find(key, in: bytes, from: from) {
            let next = at + key.count
            if next >= bytes.count || isDelimiterOrSpace(bytes[next]) { return at }
            from = at + 1
        }
        return nil
    }

    /// A keyword (`stream`) standing alone (not inside `endstream`).
    static func findKeyword(_ word: [UInt8], in bytes: [UInt8]) -> Int? {
        var from = 0
        while let at = find(word, in: bytes, from: from) {
            let before = at == 0 || isDelimiterOrSpace(bytes[at - 1])
            let next = at + word.count
            let after = next >= bytes.count || isDelimiterOrSpace(bytes[next])
            if before, after { return at }
            from = at + 1
        }
        return nil
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        let first = needle[0]
        var index = from
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first {
                var match = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }

    static func lastIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        var found: Int?
        var from = 0
        while let at = find(needle, in: haystack, from: from) {
            found = at
            from = at + 1
        }
        return found
    }

    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 || byte == 0x0C || byte == 0x00 }
    static func isDigit(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) }
    static func isDelimiterOrSpace(_ byte: UInt8) -> Bool { isSpace(byte) || "()<>[]{}/%".utf8.contains(byte) }

    // MARK: Content streams

    enum Token: Equatable {
        case string([UInt8])
        case number(Double)
        case arrayStart, arrayEnd
        case name(String)
        case op(String)
    }

    /// The text lines of a content stream.
    static func textLines(_ content: [UInt8]) -> [String] {
        var lines: [String] = []
        var line = ""
        var operands: [Token] = []
        var lastArray: [Token] = []
        var array: [Token]?
        func breakLine() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if !trimmed.isEmpty { lines.append(trimmed) }
            line = ""
        }
        for token in tokens(content) {
            if case .arrayStart = token {
                array = []
                continue
            }
            if case .arrayEnd = token {
                lastArray = array ?? []
                array = nil
                continue
            }
            if array != nil {
                array?.append(token)
                continue
            }
            guard case .op(let name) = token else {
                operands.append(token)
                continue
            }
            switch name {
            case "Tj":
                if case .string(let bytes)? = operands.last { line += decode(bytes) }
            case "'", "\"":
                breakLine()
                if case .string(let bytes)? = operands.last { line += decode(bytes) }
            case "TJ":
                for item in lastArray {
                    switch item {
                    case .string(let bytes): line += decode(bytes)
                    // A large negative adjustment (in thousandths of an em) is a word gap.
                    case .number(let value) where value <= -200: if !line.hasSuffix(" ") { line += " " }
                    default: break
                    }
                }
            case "Td", "TD":
                if case .number(let ty)? = operands.last, ty != 0 { breakLine() }
            case "T*", "Tm", "ET", "BT":
                breakLine()
            default:
                break
            }
            operands.removeAll(keepingCapacity: true)
            lastArray.removeAll(keepingCapacity: true)
        }
        breakLine()
        return lines
    }

    /// The tokens of a content stream (comments skipped, dictionaries and inline images ignored).
    static func tokens(_ bytes: [UInt8]) -> [Token] {
        var result: [Token] = []
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if isSpace(byte) {
                index += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "%"):
                while index < count, bytes[index] != 0x0A, bytes[index] != 0x0D { index += 1 }
            case UInt8(ascii: "("):
                let (string, next) = literalString(bytes, from: index + 1)
                result.append(.string(string))
                index = next
            case UInt8(ascii: "<"):
                if index + 1 < count, bytes[index + 1] == UInt8(ascii: "<") {
                    index += 2  // dictionary start: its contents are tokens we ignore
                } else {
                    var hex: [UInt8] = []
                    index += 1
                    while index < count, bytes[index] != UInt8(ascii: ">") {
                        if let value = hexValue(bytes[index]) { hex.append(value) }
                        index += 1
                    }
                    index += 1
                    if hex.count % 2 == 1 { hex.append(0) }
                    var string: [UInt8] = []
                    var position = 0
                    while position + 1 < hex.count {
                        string.append(hex[position] << 4 | hex[position + 1])
                        position += 2
                    }
                    result.append(.string(string))
                }
            case UInt8(ascii: ">"):
                index += 1
            case UInt8(ascii: "["):
                result.append(.arrayStart)
                index += 1
            case UInt8(ascii: "]"):
                result.append(.arrayEnd)
                index += 1
            case UInt8(ascii: "/"):
                let start = index + 1
                index = start
                while index < count, !isDelimiterOrSpace(bytes[index]) { index += 1 }
                result.append(.name(String(decoding: bytes[start..<index], as: UTF8.self)))
            case UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: ")"):
                index += 1
            default:
                let start = index
                while index < count, !isDelimiterOrSpace(bytes[index]) { index += 1 }
                let word = String(decoding: bytes[start..<index], as: UTF8.self)
                if let value = Double(word), word.first.map({ $0.isNumber || $0 == "-" || $0 == "+" || $0 == "." }) == true {
                    result.append(.number(value))
                } else {
                    result.append(.op(word))
                    if word == "BI" {
                        // Inline image: skip its data up to "EI".
                        if let end = find(Array("EI".utf8), in: bytes, from: index) { index = end + 2 }
                    }
                }
            }
        }
        return result
    }

    /// A literal string's bytes from just after its `(`; returns the index after its `)`.
    static func literalString(_ bytes: [UInt8], from start: Int) -> ([UInt8], Int) {
        var result: [UInt8] = []
        var depth = 1
        var index = start
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\\"):
                index += 1
                guard index < count else { return (result, index) }
                let escaped = bytes[index]
                switch escaped {
                case UInt8(ascii: "n"): result.append(0x0A)
                case UInt8(ascii: "r"): result.append(0x0D)
                case UInt8(ascii: "t"): result.append(0x09)
                case UInt8(ascii: "b"): result.append(0x08)
                case UInt8(ascii: "f"): result.append(0x0C)
                case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "\\"): result.append(escaped)
                case 0x0D:
                    // Line continuation: backslash + end of line is nothing.
                    if index + 1 < count, bytes[index + 1] == 0x0A { index += 1 }
                case 0x0A:
                    break
                case UInt8(ascii: "0")...UInt8(ascii: "7"):
                    var value = Int(escaped - UInt8(ascii: "0"))
                    var digits = 1
                    while digits < 3, index + 1 < count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(bytes[index + 1]) {
                        index += 1
                        value = value * 8 + Int(bytes[index] - UInt8(ascii: "0"))
                        digits += 1
                    }
                    result.append(UInt8(truncatingIfNeeded: value))
                default:
                    // An unknown escape: the backslash is ignored.
                    result.append(escaped)
                }
                index += 1
            case UInt8(ascii: "("):
                depth += 1
                result.append(byte)
                index += 1
            case UInt8(ascii: ")"):
                depth -= 1
                index += 1
                if depth == 0 { return (result, index) }
                result.append(byte)
            case 0x0D:
                // An unescaped end of line in a string is read as a line feed.
                result.append(0x0A)
                index += 1
                if index < count, bytes[index] == 0x0A { index += 1 }
            default:
                result.append(byte)
                index += 1
            }
        }
        return (result, index)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// String bytes as text: UTF-16BE after a byte-order mark, else PDFDocEncoding (read as Latin-1).
    static func decode(_ bytes: [UInt8]) -> String {
        if bytes.count >= 2, bytes[0] == 0xFE, bytes[1] == 0xFF {
            var units: [UInt16] = []
            var index = 2
            while index + 1 < bytes.count {
                units.append(UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1]))
                index += 2
            }
            return String(decoding: units, as: UTF16.self)
        }
        return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }
}
