import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A parsed XML element: enough of a DOM for S3's small response documents.
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
        let parser = XMLParser(data: data)
        let builder = XMLTreeBuilder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = true
        guard parser.parse() else { return nil }
        return builder.root
    }
}

private final class XMLTreeBuilder: NSObject, XMLParserDelegate {
    var stack: [S3XMLNode] = []
    var root: S3XMLNode?

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
        attributes attributeDict: [String: String] = [:]
    ) {
        stack.append(S3XMLNode(name: elementName, text: "", children: []))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let element = stack.popLast() else { return }
        if stack.isEmpty {
            root = element
        } else {
            stack[stack.count - 1].children.append(element)
        }
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
    /// ``ObjectStorageError/Code/notFound`` for NoSuchKey/NoSuchBucket, else
    /// ``ObjectStorageError/Code/failed``.
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
    /// 404 / NoSuchKey / NoSuchBucket / NoSuchUpload → `.notFound`; 403 and signature/credential
    /// errors → `.accessDenied`; 5xx, 429 and the retryable codes (SlowDown, RequestTimeout,
    /// InternalError, …) → `.transient`; anything else → `.failed`.
    public static func error(status: Int, document: S3ErrorDocument?, operation: String) -> ObjectStorageError {
        let code = document?.code ?? ""
        var message = "\(operation): HTTP \(status)"
        if let document { message += " \(document.code): \(document.message)" }
        if status == 404 || ["NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound"].contains(code) {
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
