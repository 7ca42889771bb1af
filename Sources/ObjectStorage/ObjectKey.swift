/// A validated object key: non-empty `/`-separated segments, none empty, `.` or `..`, no control
/// characters, no leading or trailing `/`, at most 1024 bytes of UTF-8.
///
/// Keys for the case layouts are built by ``CaseKeys`` only; call sites never concatenate them.
public struct ObjectKey: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public let rawValue: String

    /// Validates `rawValue`; throws ``ObjectStorageError/Code/invalidKey`` with the reason.
    public init(_ rawValue: String) throws(ObjectStorageError) {
        try Self.validate(rawValue)
        self.rawValue = rawValue
    }

    /// Joins validated segments with `/`.
    public init(segments: [String]) throws(ObjectStorageError) {
        for segment in segments where segment.contains("/") {
            throw ObjectStorageError(.invalidKey, "key segment '\(segment)' contains '/'")
        }
        try self.init(segments.joined(separator: "/"))
    }

    public var description: String { rawValue }
    public static func < (lhs: ObjectKey, rhs: ObjectKey) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The key with `other` appended as further segments.
    public func appending(_ other: String) throws(ObjectStorageError) -> ObjectKey { try ObjectKey(rawValue + "/" + other) }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        try self.init(raw)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public static let maxBytes = 1024

    static func validate(_ key: String) throws(ObjectStorageError) {
        guard !key.isEmpty else { throw ObjectStorageError(.invalidKey, "key is empty") }
        guard key.utf8.count <= maxBytes else {
            throw ObjectStorageError(.invalidKey, "key is \(key.utf8.count) bytes; at most \(maxBytes) are allowed")
        }
        if let scalar = key.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f || (0x80...0x9f).contains($0.value) }) {
            throw ObjectStorageError(.invalidKey, "key contains the control character U+\(String(scalar.value, radix: 16, uppercase: true))")
        }
        for segment in key.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { throw ObjectStorageError(.invalidKey, "key '\(key)' has an empty segment (leading, trailing or doubled '/')") }
            if segment == "." || segment == ".." { throw ObjectStorageError(.invalidKey, "key '\(key)' has a '\(segment)' segment") }
        }
    }
}

/// The object-key layouts of the case buckets (as in the reference): everything of a case lives
/// under `case_{caseId}/`.
public enum CaseKeys {
    /// `case_{caseId}`
    public static func casePrefix(caseID: Int64) -> String { "case_\(caseID)" }

    /// `case_{caseId}/documents/{documentId}/{fileName}`: a document's files (PDF rendition and natives side by side).
    public static func documentFile(caseID: Int64, documentID: Int64, fileName: String) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: [casePrefix(caseID: caseID), "documents", String(documentID), fileName])
    }

    /// `case_{caseId}/documents/{documentId}/`: the prefix listing a document's files.
    public static func documentPrefix(caseID: Int64, documentID: Int64) -> String {
        "\(casePrefix(caseID: caseID))/documents/\(documentID)/"
    }

    /// `case_{caseId}/processed-files/{batchId}/txt/{documentId}/attachments/{position}/content.txt`
    public static func attachmentText(caseID: Int64, batchID: Int64, documentID: Int64, position: Int) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: [
            casePrefix(caseID: caseID), "processed-files", String(batchID), "txt", String(documentID), "attachments", String(position),
            "content.txt",
        ])
    }

    /// `case_{caseId}/processed-files/{batchId}/txt/{documentId}/content.txt`: a document's search text.
    public static func documentText(caseID: Int64, batchID: Int64, documentID: Int64) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: [casePrefix(caseID: caseID), "processed-files", String(batchID), "txt", String(documentID), "content.txt"])
    }

    /// `case_{caseId}/processed-files/{batchId}/comments/{documentId}/comments.json`: a document's comment threads.
    public static func commentThreads(caseID: Int64, batchID: Int64, documentID: Int64) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: [casePrefix(caseID: caseID), "processed-files", String(batchID), "comments", String(documentID), "comments.json"])
    }

    /// `staging/{queue}/{messageId}.json`: a message body too large for its queue.
    public static func stagedPayload(queue: String, messageID: String) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: ["staging", queue, messageID + ".json"])
    }
}
