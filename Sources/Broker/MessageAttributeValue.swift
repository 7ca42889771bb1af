/// A message attribute value, as SNS/SQS message attributes.
///
/// Its `Codable` form is the one stored in the database and must stay stable:
///
/// ```json
/// {"type":"String","value":"abc"}
/// {"type":"Number","value":"12.5"}
/// {"type":"String.Array","value":["a","b"]}
/// ```
///
/// A `Number` keeps its value as a JSON string, as SNS does; decoding rejects a string that is not
/// a finite decimal number (`"abc"`, `"NaN"`, `"inf"`, `"0x10"`, `"1e999"`) with a `DecodingError`.
public enum MessageAttributeValue: Sendable, Hashable, Codable {
    /// An SNS `String` attribute.
    case string(String)
    /// An SNS `Number` attribute.
    case number(Double)
    /// An SNS `String.Array` attribute.
    case stringArray([String])

    /// The SNS data type name of this value: `"String"`, `"Number"` or `"String.Array"`.
    public var dataType: String {
        switch self {
        case .string: return Self.stringType
        case .number: return Self.numberType
        case .stringArray: return Self.stringArrayType
        }
    }

    /// A `Number` value from its textual form (`"12"`, `"-3.5"`, `"1e6"`, `"+.5"`), or `nil` when the text
    /// is not a finite decimal number. Hexadecimal, `NaN`, `inf` and surrounding whitespace are rejected.
    public static func number(parsing text: String) -> MessageAttributeValue? {
        parseDecimalNumber(text).map(MessageAttributeValue.number)
    }

    // MARK: Codable

    private static let stringType = "String"
    private static let numberType = "Number"
    private static let stringArrayType = "String.Array"

    private enum CodingKeys: String, CodingKey {
        case type
        case value
    }

    /// Decodes the stored form `{"type": …, "value": …}`.
    ///
    /// - Throws: `DecodingError` for an unknown `type`, a `value` of the wrong JSON type, or a `Number` whose
    ///   text is not a finite decimal number.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case Self.stringType:
            self = .string(try container.decode(String.self, forKey: .value))
        case Self.numberType:
            let text = try container.decode(String.self, forKey: .value)
            guard let number = Self.parseDecimalNumber(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .value, in: container,
                    debugDescription: "Number attribute value '\(text)' is not a finite decimal number"
                )
            }
            self = .number(number)
        case Self.stringArrayType:
            self = .stringArray(try container.decode([String].self, forKey: .value))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container,
                debugDescription: "unknown message attribute type '\(type)'; expected String, Number or String.Array"
            )
        }
    }

    /// Encodes the stored form `{"type": …, "value": …}`; a `Number` as its shortest round-tripping text.
    ///
    /// - Throws: `EncodingError.invalidValue` for a `Number` that is NaN or infinite.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(dataType, forKey: .type)
        switch self {
        case .string(let value):
            try container.encode(value, forKey: .value)
        case .number(let value):
            guard value.isFinite else {
                throw EncodingError.invalidValue(
                    value,
                    EncodingError.Context(
                        codingPath: container.codingPath + [CodingKeys.value],
                        debugDescription: "Number attribute value \(value) is not finite"
                    )
                )
            }
            try container.encode(Self.formatNumber(value), forKey: .value)
        case .stringArray(let value):
            try container.encode(value, forKey: .value)
        }
    }

    // MARK: Number text

    /// Shortest text that parses back to exactly `value`: integers without a fraction (`"5"`),
    /// everything else as Swift's shortest round-tripping form (`"12.5"`, `"1e+20"`).
    static func formatNumber(_ value: Double) -> String {
        if value == value.rounded(.towardZero), abs(value) < 1e15 {
            // Exactly representable as Int64; `-0.0` prints as "0".
            return String(Int64(value))
        }
        return "\(value)"
    }

    /// Parses `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?` into a finite Double.
    static func parseDecimalNumber(_ text: String) -> Double? {
        let bytes = text.utf8
        var index = bytes.startIndex
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        func skipDigits() -> Int {
            var count = 0
            while index != bytes.endIndex, isDigit(bytes[index]) {
                bytes.formIndex(after: &index)
                count += 1
            }
            return count
        }
        if index != bytes.endIndex, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            bytes.formIndex(after: &index)
        }
        var mantissaDigits = skipDigits()
        if index != bytes.endIndex, bytes[index] == UInt8(ascii: ".") {
            bytes.formIndex(after: &index)
            mantissaDigits += skipDigits()
        }
        guard mantissaDigits > 0 else { return nil }
        if index != bytes.endIndex, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            bytes.formIndex(after: &index)
            if index != bytes.endIndex, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                bytes.formIndex(after: &index)
            }
            guard skipDigits() > 0 else { return nil }
        }
        guard index == bytes.endIndex, let value = Double(text), value.isFinite else { return nil }
        return value
    }
}

/// Message attributes by name, as SNS/SQS `MessageAttributes`.
public typealias MessageAttributes = [String: MessageAttributeValue]
