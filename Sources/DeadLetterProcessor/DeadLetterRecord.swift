import Broker
import ExchangerEvents
import Foundation

/// A recorded dead letter: a row of `exchanger_dead_letters` — the ``DeadLetter`` as it was
/// recorded, plus the record's own id and redrive history. The letter's fields read through
/// (`record.queue`, `record.jobID`, …).
@dynamicMemberLookup
public struct DeadLetterRecord: Sendable, Hashable {
    public var id: Int64
    /// What was recorded.
    public var letter: DeadLetter
    public var recordedAt: Date
    /// When it was last redriven; nil when never.
    public var redrivenAt: Date?
    public var redriveCount: Int

    public init(id: Int64, letter: DeadLetter, recordedAt: Date, redrivenAt: Date?, redriveCount: Int) {
        self.id = id
        self.letter = letter
        self.recordedAt = recordedAt
        self.redrivenAt = redrivenAt
        self.redriveCount = redriveCount
    }

    public subscript<Value>(dynamicMember keyPath: KeyPath<DeadLetter, Value>) -> Value { letter[keyPath: keyPath] }

    /// The record as a JSON object (for `exchanger dlq list --json` / `show --json`): the body is
    /// embedded as JSON when it is JSON, else as a string; times in ISO 8601.
    public func jsonObject() -> [String: Any] {
        var object: [String: Any] = [
            "id": id, "messageId": letter.messageID, "queue": letter.queue, "receiveCount": letter.receiveCount, "error": letter.error, "reason": letter.reason,
            "failedAt": Self.format(letter.failedAt), "recordedAt": Self.format(recordedAt), "redriveCount": redriveCount,
        ]
        object["program"] = letter.program ?? NSNull()
        object["exchangeId"] = letter.exchangeID ?? NSNull()
        object["jobId"] = letter.jobID ?? NSNull()
        object["caseId"] = letter.caseID ?? NSNull()
        object["sourceCaseId"] = letter.sourceCaseID ?? NSNull()
        object["batchId"] = letter.batchID ?? NSNull()
        object["documentId"] = letter.documentID ?? NSNull()
        object["redrivenAt"] = redrivenAt.map(Self.format) ?? NSNull()
        object["body"] = (try? JSONSerialization.jsonObject(with: Data(letter.body.utf8), options: [.fragmentsAllowed])) ?? letter.body
        var attributeObject: [String: Any] = [:]
        for (name, value) in letter.attributes {
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
    static func format(_ date: Date) -> String { EventCoding.formatTimestamp(date) }
}
