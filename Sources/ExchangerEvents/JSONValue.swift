import Foundation

/// Any JSON value: an event's `detail` before it is decoded into its typed form.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            // Integers stay integers on the wire (ids must not become 1.0e+15).
            if value.rounded() == value, abs(value) < 9_007_199_254_740_992 {
                try container.encode(Int64(value))
            } else {
                try container.encode(value)
            }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The value of `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The string, when this is one.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// Encodes any `Encodable` into a `JSONValue`.
    public init(encoding value: some Encodable) throws {
        self = try EventCoding.sharedDecoder.decode(JSONValue.self, from: try EventCoding.sharedEncoder.encode(value))
    }

    /// Decodes this value into `type`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try EventCoding.sharedDecoder.decode(type, from: try EventCoding.sharedEncoder.encode(self))
    }
}

/// The JSON coders every event and task body uses: ISO 8601 dates with milliseconds, sorted keys.
public enum EventCoding {
    /// A new encoder with the event settings (callers may change their copy).
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatTimestamp(date))
        }
        return encoder
    }

    /// A new decoder with the event settings.
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseTimestamp(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an ISO 8601 time")
            }
            return date
        }
        return decoder
    }

    /// `2026-11-25T12:00:00.123Z`
    public static func formatTimestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    /// Parses ISO 8601 with or without fractional seconds.
    public static func parseTimestamp(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)) { return date }
        return try? Date(text, strategy: .iso8601)
    }

    // One configured pair shared by the calls below (never changed after creation), instead of a
    // new coder per event on the workers' hot path.
    static let sharedEncoder = encoder
    static let sharedDecoder = decoder

    /// Encodes `value` as a UTF-8 JSON string.
    public static func string(_ value: some Encodable) throws -> String {
        String(decoding: try sharedEncoder.encode(value), as: UTF8.self)
    }

    /// Decodes `type` from a JSON string.
    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        try sharedDecoder.decode(type, from: Data(text.utf8))
    }
}
