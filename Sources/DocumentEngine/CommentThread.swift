import Foundation

/// One comment thread of a document: the root annotation (`isCommentThreadRoot`, usually a
/// `pspdfkit/markup/highlight` or a `pspdfkit/comment-marker`) and its comments, oldest first.
///
/// Comments are kept in Nutrient's Instant JSON comment form (`{"id":…,"rootId":…,"text":{…},
/// "creatorName":…,"createdAt":…}`), canonical like annotations.
public struct CommentThread: Sendable, Hashable {
    /// The id of the thread's root annotation.
    public var rootID: String
    /// The comments, oldest first.
    public var comments: [InstantJSONAnnotation]

    /// A thread of `comments` under root annotation `rootID`.
    public init(rootID: String, comments: [InstantJSONAnnotation]) {
        self.rootID = rootID
        self.comments = comments
    }

    /// The threads as one JSON document, `{"commentThreads":[{"rootId":…,"comments":[…]}]}`
    /// (threads in root-id order): what the pre-uploader writes to the destination's storage.
    public static func documentData(_ threads: [CommentThread]) -> Data {
        let body = threads.sorted { $0.rootID < $1.rootID }.map { thread in
            let root = (try? InstantJSONAnnotation.canonical([thread.rootID])).map { String($0.dropFirst().dropLast()) } ?? "\"\""
            return "{\"comments\":[" + thread.comments.map(\.json).joined(separator: ",") + "],\"rootId\":" + root + "}"
        }
        return Data(("{\"commentThreads\":[" + body.joined(separator: ",") + "]}").utf8)
    }

    /// Parses ``documentData(_:)``; throws ``DocumentEngineError/Code/invalidAnnotations`` for anything else.
    public static func threads(document data: Data) throws(DocumentEngineError) -> [CommentThread] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw DocumentEngineError(.invalidAnnotations, "not a comment-thread document: \(error.localizedDescription)")
        }
        guard let root = parsed as? [String: Any], let list = root["commentThreads"] as? [Any] else {
            throw DocumentEngineError(.invalidAnnotations, "a comment-thread document is {\"commentThreads\":[…]}")
        }
        var threads: [CommentThread] = []
        for item in list {
            guard let entry = item as? [String: Any], let rootID = entry["rootId"] as? String, let comments = entry["comments"] as? [Any] else {
                throw DocumentEngineError(.invalidAnnotations, "a comment thread needs rootId and comments")
            }
            threads.append(CommentThread(rootID: rootID, comments: try comments.map { item throws(DocumentEngineError) in
                try InstantJSONAnnotation(object: item)
            }))
        }
        return threads
    }
}
