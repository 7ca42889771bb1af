import Foundation

/// A parsed XML element: enough of a DOM for S3's small response documents.
///
/// Parsed by ``S3XMLReader``, not Foundation's XMLParser: FoundationXML loads libxml2 and with it
/// the system ICU (about 38 MB that the container image would carry only for this).
struct S3XMLNode: Sendable {
    var name: String
    var text: String
    var children: [S3XMLNode]

    /// The first child named `name`.
    func child(_ name: String) -> S3XMLNode? { children.first { $0.name == name } }
    /// Every child named `name`.
    func children(_ name: String) -> [S3XMLNode] { children.filter { $0.name == name } }
    /// The text of the first child named `name`.
    func value(_ name: String) -> String? { child(name)?.text }

    /// Parses a document and returns its root element; nil when it is not well-formed XML.
    static func parse(_ data: Data) -> S3XMLNode? {
        var reader = S3XMLReader(bytes: Array(data))
        return reader.document()
    }
}

/// A small non-validating XML reader for S3's answers: the declaration, comments, processing
/// instructions and a DOCTYPE are skipped; attributes are read and dropped; element names lose
/// their namespace prefix (as XMLParser's `shouldProcessNamespaces` gives them); text gets the
/// five predefined entities, character references and CDATA sections. Anything not well-formed
/// (a tag not closed, a mismatched end tag, text outside the root, an unknown entity) is nil.
struct S3XMLReader {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
    }

    mutating func document() -> S3XMLNode? {
        var stack: [S3XMLNode] = []
        var root: S3XMLNode?
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "<") {
                if hasPrefix("<!--") {
                    guard skip(past: "-->") else { return nil }
                } else if hasPrefix("<![CDATA[") {
                    index += 9
                    let start = index
                    guard skip(past: "]]>") else { return nil }
                    guard !stack.isEmpty else { return nil }
                    stack[stack.count - 1].text += String(decoding: bytes[start..<(index - 3)], as: UTF8.self)
                } else if hasPrefix("<?") {
                    guard skip(past: "?>") else { return nil }
                } else if hasPrefix("<!") {
                    guard stack.isEmpty, root == nil, skip(past: ">") else { return nil }
                } else if hasPrefix("</") {
                    index += 2
                    guard let name = readName() else { return nil }
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ">"), let element = stack.popLast(),
                        element.name == Self.localName(name)
                    else { return nil }
                    index += 1
                    if stack.isEmpty {
                        guard root == nil else { return nil }
                        root = element
                    } else {
                        stack[stack.count - 1].children.append(element)
                    }
                } else {
                    index += 1
                    guard let name = readName(), let selfClosing = readAttributes() else { return nil }
                    let element = S3XMLNode(name: Self.localName(name), text: "", children: [])
                    if selfClosing {
                        if stack.isEmpty {
                            guard root == nil else { return nil }
                            root = element
                        } else {
                            stack[stack.count - 1].children.append(element)
                        }
                    } else {
                        guard !(stack.isEmpty && root != nil) else { return nil }
                        stack.append(element)
                    }
                }
            } else {
                let start = index
                while index < bytes.count && bytes[index] != UInt8(ascii: "<") { index += 1 }
                let raw = bytes[start..<index]
                if stack.isEmpty {
                    // Only white space may stand outside the root element.
                    guard raw.allSatisfy(Self.isSpace) else { return nil }
                } else {
                    guard let text = Self.decode(raw) else { return nil }
                    stack[stack.count - 1].text += text
                }
            }
        }
        return stack.isEmpty ? root : nil
    }

    private func hasPrefix(_ prefix: String) -> Bool {
        let utf8 = Array(prefix.utf8)
        return bytes.count - index >= utf8.count && bytes[index..<(index + utf8.count)].elementsEqual(utf8)
    }

    /// Moves past the next `terminator`; false when there is none.
    private mutating func skip(past terminator: String) -> Bool {
        let utf8 = Array(terminator.utf8)
        while index + utf8.count <= bytes.count {
            if bytes[index..<(index + utf8.count)].elementsEqual(utf8) {
                index += utf8.count
                return true
            }
            index += 1
        }
        return false
    }

    private mutating func skipSpace() {
        while index < bytes.count && Self.isSpace(bytes[index]) { index += 1 }
    }

    private mutating func readName() -> String? {
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if Self.isSpace(byte) || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "=")
                || byte == UInt8(ascii: "<")
            {
                break
            }
            index += 1
        }
        return index > start ? String(decoding: bytes[start..<index], as: UTF8.self) : nil
    }

    /// Reads (and drops) the attributes up to the end of a start tag; returns whether the tag
    /// closes itself (`/>`), nil when the tag is malformed.
    private mutating func readAttributes() -> Bool? {
        while true {
            skipSpace()
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: ">"):
                index += 1
                return false
            case UInt8(ascii: "/"):
                guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: ">") else { return nil }
                index += 2
                return true
            default:
                guard readName() != nil else { return nil }
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "=") else { return nil }
                index += 1
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") else { return nil }
                let quote = bytes[index]
                index += 1
                while index < bytes.count && bytes[index] != quote { index += 1 }
                guard index < bytes.count else { return nil }
                index += 1
            }
        }
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    static func localName(_ name: String) -> String {
        guard let colon = name.lastIndex(of: ":") else { return name }
        return String(name[name.index(after: colon)...])
    }

    /// Text with its entity and character references replaced; nil for an unknown or unterminated one.
    static func decode(_ raw: ArraySlice<UInt8>) -> String? {
        guard raw.contains(UInt8(ascii: "&")) else { return String(decoding: raw, as: UTF8.self) }
        var output: [UInt8] = []
        output.reserveCapacity(raw.count)
        var position = raw.startIndex
        while position < raw.endIndex {
            let byte = raw[position]
            guard byte == UInt8(ascii: "&") else {
                output.append(byte)
                position += 1
                continue
            }
            guard let end = raw[position...].firstIndex(of: UInt8(ascii: ";")) else { return nil }
            let entity = String(decoding: raw[(position + 1)..<end], as: UTF8.self)
            switch entity {
            case "lt": output.append(UInt8(ascii: "<"))
            case "gt": output.append(UInt8(ascii: ">"))
            case "amp": output.append(UInt8(ascii: "&"))
            case "quot": output.append(UInt8(ascii: "\""))
            case "apos": output.append(UInt8(ascii: "'"))
            default:
                let scalarValue: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    scalarValue = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    scalarValue = UInt32(entity.dropFirst(), radix: 10)
                } else {
                    scalarValue = nil
                }
                guard let scalarValue, let scalar = Unicode.Scalar(scalarValue) else { return nil }
                output.append(contentsOf: Array(String(Character(scalar)).utf8))
            }
            position = end + 1
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// What an S3 `<Error>` document says.
public struct S3ErrorDocument: Sendable, Hashable {
    /// `NoSuchKey`, `SlowDown`, `InternalError`, …
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    /// Parses `<Error><Code>…</Code><Message>…</Message></Error>`; nil when the document is something else.
    public static func parse(_ data: Data) -> S3ErrorDocument? {
        guard let root = S3XMLNode.parse(data), root.name == "Error" else { return nil }
        return S3ErrorDocument(code: root.value("Code") ?? "", message: root.value("Message") ?? "")
    }

    /// Error codes worth retrying even when S3 sends them inside a 200 response or a 4xx.
    public static let retryableCodes: Set<String> = [
        "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException", "Throttling",
        "ThrottlingException", "RequestThrottled", "TooManyRequestsException", "OperationAborted",
    ]
}

/// One page of a ListObjectsV2 answer.
struct ListObjectsPage: Sendable {
    struct Entry: Sendable {
        var key: String
        var size: Int64
        var etag: String?
        var lastModified: Date?
    }

    var entries: [Entry]
    var isTruncated: Bool
    var nextContinuationToken: String?

    static func parse(_ data: Data) throws(ObjectStorageError) -> ListObjectsPage {
        guard let root = S3XMLNode.parse(data), root.name == "ListBucketResult" else {
            throw ObjectStorageError(.failed, "ListObjectsV2 returned an unexpected document: \(S3XMLText.snippet(data))")
        }
        let entries = root.children("Contents").compactMap { element -> Entry? in
            guard let key = element.value("Key") else { return nil }
            return Entry(
                key: key, size: Int64(element.value("Size") ?? "") ?? 0, etag: element.value("ETag").map(S3XMLText.unquote),
                lastModified: element.value("LastModified").flatMap(S3XMLText.parseISODate))
        }
        let truncated = root.value("IsTruncated")?.lowercased() == "true"
        let token = root.value("NextContinuationToken").flatMap { $0.isEmpty ? nil : $0 }
        return ListObjectsPage(entries: entries, isTruncated: truncated, nextContinuationToken: token)
    }
}

/// `<CopyObjectResult>` / `<CopyPartResult>`: what a successful (server-side) copy returns.
public struct S3CopyResult: Sendable, Hashable {
    public var etag: String?
    public var lastModified: Date?

    /// Parses the body of a 200 answer to CopyObject or UploadPartCopy. S3 may answer 200 and
    /// still fail (the copy broke after the headers were sent): an `<Error>` body throws, as
    /// ``ObjectStorageError/Code/transient`` for retryable codes (InternalError, SlowDown, …),
    /// ``ObjectStorageError/Code/notFound`` for NoSuchKey, ``ObjectStorageError/Code/configuration``
    /// for NoSuchBucket, else ``ObjectStorageError/Code/failed``.
    public static func parse(_ data: Data) throws(ObjectStorageError) -> S3CopyResult {
        guard let root = S3XMLNode.parse(data) else {
            throw ObjectStorageError(.transient, "copy answered 200 with a body that is not XML: \(S3XMLText.snippet(data))", status: 200)
        }
        if root.name == "Error" {
            let document = S3ErrorDocument(code: root.value("Code") ?? "", message: root.value("Message") ?? "")
            throw S3ErrorClassifier.error(status: 200, document: document, operation: "copy")
        }
        guard root.name == "CopyObjectResult" || root.name == "CopyPartResult" else {
            throw ObjectStorageError(.failed, "copy answered 200 with an unexpected document <\(root.name)>", status: 200)
        }
        return S3CopyResult(
            etag: root.value("ETag").map(S3XMLText.unquote), lastModified: root.value("LastModified").flatMap(S3XMLText.parseISODate))
    }
}

enum S3XMLText {
    static func unquote(_ etag: String) -> String {
        var value = etag.trimmingCharacters(in: .whitespaces)
        if value.hasPrefix("&quot;") { value = value.replacingOccurrences(of: "&quot;", with: "\"") }
        if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
        return value
    }

    static func parseISODate(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }

    /// `Wed, 12 Oct 2009 17:50:00 GMT` (RFC 7231 IMF-fixdate).
    static func parseHTTPDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }

    static func snippet(_ data: Data) -> String {
        let text = String(decoding: data.prefix(300), as: UTF8.self)
        return text.isEmpty ? "(empty)" : text
    }

    /// Escapes text for an XML element.
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// Maps S3 answers to ``ObjectStorageError`` codes.
public enum S3ErrorClassifier {
    /// NoSuchBucket → `.configuration` (the bucket the store's URL names is not there: a fault of the
    /// setup, not of one object); 404 / NoSuchKey / NoSuchUpload → `.notFound`; 403 and
    /// signature/credential errors → `.accessDenied`; 5xx, 429 and the retryable codes (SlowDown,
    /// RequestTimeout, InternalError, …) → `.transient`; anything else → `.failed`.
    public static func error(status: Int, document: S3ErrorDocument?, operation: String) -> ObjectStorageError {
        let code = document?.code ?? ""
        var message = "\(operation): HTTP \(status)"
        if let document { message += " \(document.code): \(document.message)" }
        if code == "NoSuchBucket" {
            return ObjectStorageError(.configuration, message + " (the bucket of the store's URL does not exist)", status: status)
        }
        if status == 404 || ["NoSuchKey", "NoSuchUpload", "NotFound"].contains(code) {
            return ObjectStorageError(.notFound, message, status: status)
        }
        if status == 403
            || ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken", "AllAccessDisabled"].contains(code)
        {
            return ObjectStorageError(.accessDenied, message, status: status)
        }
        if status >= 500 || status == 429 || S3ErrorDocument.retryableCodes.contains(code) {
            return ObjectStorageError(.transient, message, status: status)
        }
        return ObjectStorageError(.failed, message, status: status)
    }
}
