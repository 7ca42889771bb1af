import Crypto
import Foundation

/// Event ids. Facts about one document (or one job) get an id derived from what they are, so a
/// re-delivered message that publishes the same fact again publishes nothing new: the broker
/// stores and delivers an event id once.
public enum EventID {
    /// `evt-` + the first 32 hex digits of SHA-256 over `jobId`, type, document id and qualifier
    /// (for facts a document can have several of, such as one NATIVE_DOCUMENT_COPIED per file).
    public static func deterministic(jobID: String, type: EventType, documentID: Int64?, qualifier: String? = nil) -> String {
        var input = "exchanger-event/v1\u{1F}\(jobID)\u{1F}\(type.rawValue)\u{1F}"
        if let documentID { input += String(documentID) }
        input += "\u{1F}" + (qualifier ?? "")
        let digest = SHA256.hash(data: Data(input.utf8))
        return "evt-" + digest.prefix(16).map { String(format: "%02x", $0) }.joined()
    }

    /// A random id, for events that are not repeatable facts.
    public static func random() -> String { "evt-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "") }
}
