import Broker
import Foundation

/// A recorded dead letter: a row of `exchanger_dead_letters`.
public struct DeadLetterRecord: Sendable, Hashable {
    public var id: Int64
    /// The original message's id.
    public var messageID: String
    /// The queue the message failed on (where a redrive sends it by default).
    public var queue: String
    public var program: String?
    public var exchangeID: String?
    public var jobID: String?
    public var caseID: Int64?
    public var sourceCaseID: Int64?
    public var batchID: Int64?
    public var documentID: Int64?
    /// The original body as it was sent.
    public var body: String
    /// The original attributes.
    public var attributes: MessageAttributes
    public var receiveCount: Int
    public var error: String
    /// `permanent`, `retriesExhausted`, `leaseExpired` (or `unknown`).
    public var reason: String
    public var failedAt: Date
    public var recordedAt: Date
    /// When it was last redriven; nil when never.
    public var redrivenAt: Date?
    public var redriveCount: Int

    /// The record as a JSON object (for `exchanger dlq list --json` / `show --json`): the body is
    /// embedded as JSON when it is JSON, else as a string; times in ISO 8601.
    public func jsonObject() -> [String: Any] {
        var object: [String: Any] = [
            "id": id, "messageId": messageID, "queue": queue, "receiveCount": receiveCount, "error": error, "reason": reason,
            "failedAt": Self.format(failedAt), "recordedAt": Self.format(recordedAt), "redriveCount": redriveCount,
        ]
        object["program"] = program ?? NSNull()
        object["exchangeId"] = exchangeID ?? NSNull()
        object["jobId"] = jobID ?? NSNull()
        object["caseId"] = caseID ?? NSNull()
        object["sourceCaseId"] = sourceCaseID ?? NSNull()
        object["batchId"] = batchID ?? NSNull()
        object["documentId"] = documentID ?? NSNull()
        object["redrivenAt"] = redrivenAt.map(Self.format) ?? NSNull()
        object["body"] = (try? JSONSerialization.jsonObject(with: Data(body.utf8), options: [.fragmentsAllowed])) ?? body
        var attributeObject: [String: Any] = [:]
        for (name, value) in attributes {
            switch value {
            case .string(let text): attributeObject[name] = text
            case .number(let number): attributeObject[name] = number
            case .stringArray(let texts): attributeObject[name] = texts
            }
        }
        object["attributes"] = attributeObject
        return object
    }

    /// `2026-11-25T12:00:00.123Z`.
    static func format(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}
