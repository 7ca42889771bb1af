import Broker
import Foundation

/// One event as it travels on the topic and stands in the event log.
///
/// Wire form (JSON, keys sorted):
/// ```json
/// {"batchId":7,"caseId":42,"correlationId":"…","detail":{…},"documentId":1001,"eventId":"evt-…",
///  "eventType":"DOCUMENT_COPIED","jobId":"…","source":"exchanger-s3-copy","sourceCaseId":41,
///  "time":"2026-11-25T12:00:00.123Z","version":1}
/// ```
/// `caseId` is always the destination case. Consumers reject a `version` newer than
/// ``EventEnvelope/currentVersion`` as a permanent error instead of guessing.
public struct EventEnvelope: Sendable, Hashable, Codable {
    /// The schema version this build writes and the newest it reads.
    public static let currentVersion = 1

    public var eventID: String
    public var eventType: EventType
    public var version: Int
    /// The program that published the event (`exchanger-s3-copy`, `exchanger-orchestrator`, …).
    public var source: String
    public var time: Date
    public var jobID: String?
    /// The destination case.
    public var caseID: Int64?
    public var sourceCaseID: Int64?
    public var batchID: Int64?
    public var documentID: Int64?
    /// Ties together every event caused by one request.
    public var correlationID: String?
    /// The event-specific payload; decode it with ``detail(as:)``.
    public var detail: JSONValue

    enum CodingKeys: String, CodingKey {
        case eventID = "eventId", eventType, version, source, time, jobID = "jobId", caseID = "caseId"
        case sourceCaseID = "sourceCaseId", batchID = "batchId", documentID = "documentId"
        case correlationID = "correlationId", detail
    }

    /// Builds an event. Without `eventID`, per-document facts (a `jobID` and `documentID` are
    /// given) and per-job facts (a `jobID` only) get the deterministic id of ``EventID``, so the
    /// same fact published twice is stored and delivered once; anything else gets a random id.
    public init(
        type: EventType, source: String, jobID: String?, caseID: Int64? = nil, sourceCaseID: Int64? = nil,
        batchID: Int64? = nil, documentID: Int64? = nil, correlationID: String? = nil, detail: some Encodable & Sendable,
        eventID: String? = nil, qualifier: String? = nil, time: Date = Date()
    ) throws {
        self.eventType = type
        self.version = Self.currentVersion
        self.source = source
        self.time = time
        self.jobID = jobID
        self.caseID = caseID
        self.sourceCaseID = sourceCaseID
        self.batchID = batchID
        self.documentID = documentID
        self.correlationID = correlationID
        self.detail = try JSONValue(encoding: detail)
        if let eventID {
            self.eventID = eventID
        } else if let jobID {
            self.eventID = EventID.deterministic(jobID: jobID, type: type, documentID: documentID, qualifier: qualifier)
        } else {
            self.eventID = EventID.random()
        }
    }

    /// Decodes the detail into its typed form.
    public func detail<T: Decodable>(as type: T.Type) throws -> T { try detail.decode(type) }

    /// The attributes subscriptions filter on: `eventType`, `source`, and where known `jobId`,
    /// `caseId`, `sourceCaseId`, `batchId` (all SNS `String` attributes, so exact-match policies
    /// such as `{"caseId": ["42"]}` work).
    public var filterAttributes: MessageAttributes {
        var attributes: MessageAttributes = ["eventType": .string(eventType.rawValue), "source": .string(source)]
        if let jobID { attributes["jobId"] = .string(jobID) }
        if let caseID { attributes["caseId"] = .string(String(caseID)) }
        if let sourceCaseID { attributes["sourceCaseId"] = .string(String(sourceCaseID)) }
        if let batchID { attributes["batchId"] = .string(String(batchID)) }
        return attributes
    }

    /// The event as a broker topic message (body, filter attributes, event id).
    public func topicMessage() throws -> TopicMessage {
        TopicMessage(eventID: eventID, body: try EventCoding.string(self), attributes: filterAttributes)
    }

    /// Parses and checks an event body.
    /// - Throws: ``EventError`` when the body is not an event or its version is newer than this build reads.
    public static func decode(_ body: String) throws(EventError) -> EventEnvelope {
        let envelope: EventEnvelope
        do {
            envelope = try EventCoding.decode(EventEnvelope.self, from: body)
        } catch {
            throw EventError(.malformed, "not an event envelope: \(EventError.describe(error))")
        }
        guard envelope.version >= 1, envelope.version <= currentVersion else {
            throw EventError(.unsupportedVersion, "event \(envelope.eventID) has version \(envelope.version); this build reads 1…\(currentVersion)")
        }
        return envelope
    }
}

/// A body could not be understood as an event or task.
public struct EventError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable { case malformed, unsupportedVersion, invalidField }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// Not JSON, or a required field is missing or of the wrong type.
        public static let malformed = Code(.malformed)
        /// Written by a newer build.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// A field has a value outside its range.
        public static let invalidField = Code(.invalidField)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code): \(message)" }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing field '\((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "field '\(path)': \(context.debugDescription)"
        default:
            return String(describing: error)
        }
    }
}
