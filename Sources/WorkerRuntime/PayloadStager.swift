import Broker
import Foundation
import Logging
import ObjectStorage

/// Carries message bodies larger than their queue allows through object storage (the platform's
/// "S3 data staging" pattern): the body is written under `staging/{queue}/{id}.json` and the
/// message carries a small reference; the consumer side fetches it transparently and deletes the
/// staged object once the message is acknowledged.
public struct PayloadStager: Sendable {
    /// The attribute holding the staged object's key.
    public static let attributeName = "exchanger.staged"

    /// Where staged bodies go; without a store, an oversized body is an error.
    public var store: (any ObjectStore)?

    public init(store: (any ObjectStore)?) { self.store = store }

    /// The body of a staged message.
    struct Reference: Codable {
        var stagedPayload: Staged
        struct Staged: Codable {
            var key: String
            var bytes: Int
        }
    }

    /// `message`, staged when its body is larger than `maxBytes`. Returns the message to send and
    /// the staged key (to delete if the send is rolled back).
    public func prepare(_ message: OutgoingMessage, queue: String, maxBytes: Int) async throws -> (OutgoingMessage, ObjectKey?) {
        let size = message.body.utf8.count
        guard size > maxBytes else { return (message, nil) }
        guard let store else {
            throw WorkerError.permanent(
                "message body is \(size) bytes, queue \(queue) allows \(maxBytes), and no staging store is configured (EXCHANGER_STAGING_URL)")
        }
        let key = try CaseKeys.stagedPayload(queue: queue, messageID: UUID().uuidString.lowercased())
        try await store.put(key, Data(message.body.utf8), contentType: "application/json")
        var staged = message
        let reference = Reference(stagedPayload: .init(key: key.rawValue, bytes: size))
        staged.body = String(decoding: try JSONEncoder().encode(reference), as: UTF8.self)
        staged.attributes[Self.attributeName] = .string(key.rawValue)
        return (staged, key)
    }

    /// The staged key a received message refers to, if it is a staged message.
    ///
    /// Only keys the stager itself writes are accepted (`staging/{queue}/{id}.json`): the attribute
    /// comes with the message, and a crafted one must not make a worker read, or delete after the
    /// acknowledgement, any other object such as a case document. Anything else is a permanent
    /// failure of the message.
    public static func stagedKey(of message: ReceivedMessage) throws -> ObjectKey? {
        guard case .string(let raw)? = message.attributes[attributeName] else { return nil }
        let parts = raw.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "staging", !parts[1].isEmpty, parts[2].hasSuffix(".json"), parts[2].count > 5,
            !parts.contains(where: { $0 == "." || $0 == ".." })
        else {
            throw WorkerError.permanent("message \(message.messageID) names staged payload '\(raw.prefix(200))', which is not a staging/{queue}/{id}.json key: refused")
        }
        return try ObjectKey(raw)
    }

    /// The real body of `message`: fetched from the staging store when the message is staged.
    public func resolve(_ message: ReceivedMessage) async throws -> String {
        guard let key = try Self.stagedKey(of: message) else { return message.body }
        guard let store else {
            throw WorkerError.permanent("message \(message.messageID) is staged at \(key) but no staging store is configured (EXCHANGER_STAGING_URL)")
        }
        do {
            return String(decoding: try await store.get(key), as: UTF8.self)
        } catch let error as ObjectStorageError where error.code == .notFound {
            throw WorkerError.permanent("staged payload \(key) of message \(message.messageID) is missing")
        }
    }

    /// Deletes staged objects after their messages were acknowledged (failures are logged: the
    /// `staging/` prefix has a lifecycle rule as a backstop).
    public func discard(_ keys: [ObjectKey], logger: Logger) async {
        guard let store, !keys.isEmpty else { return }
        for key in keys {
            do { try await store.delete(key) } catch {
                logger.warning("could not delete staged payload", metadata: ["key": "\(key)", "error": "\(error)"])
            }
        }
    }
}
