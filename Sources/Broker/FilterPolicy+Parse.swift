// Parsing, validation and compilation of filter policies.
//
// The policy text is read by a small strict JSON parser (RFC 8259) rather than JSONSerialization:
// it keeps `true`/`false` apart from numbers (JSONSerialization on Linux may hand back booleans as
// NSNumber), keeps object keys in order for deterministic error reporting, rejects duplicate keys, and
// bounds nesting depth.

extension FilterPolicy {
    /// Parses, validates and compiles a policy text.
    static func compile(_ json: String) throws(FilterPolicyError) -> Node {
        let size = json.utf8.count
        guard size <= maximumSize else {
            throw FilterPolicyError(
                .tooLarge, key: nil,
                "filter policy is \(size) bytes; at most \(maximumSize) are allowed"
            )
        }
        var parser = PolicyJSONParser(json)
        let document = try parser.parseDocument()
        guard case .object(let members) = document else {
            throw FilterPolicyError(
                .notAnObject, key: nil,
                "a filter policy must be a JSON object, found \(document.kind)"
            )
        }
        let root = try compileNode(members, path: nil)
        guard root.combinations <= maximumCombinations else {
            let count = root.combinations == Int.max ? "more than \(Int.max)" : "\(root.combinations)"
            throw FilterPolicyError(
                .tooComplex, key: nil,
                "filter policy has \(count) value combinations; at most \(maximumCombinations) are allowed"
            )
        }
        return root
    }

    /// Compiles one object level: the top level (`path == nil`) or a `$or` alternative.
    private static func compileNode(_ members: [PolicyJSON.Member], path: String?) throws(FilterPolicyError) -> Node {
        guard !members.isEmpty else {
            throw FilterPolicyError(
                .emptyPolicy, key: path,
                path == nil ? "a filter policy must name at least one attribute"
                    : "a '$or' alternative must name at least one attribute"
            )
        }
        let keyCount = members.count { $0.key != orKeyword }
        guard keyCount <= maximumKeysPerLevel else {
            throw FilterPolicyError(
                .tooManyKeys, key: path,
                "\(path == nil ? "filter policy" : "'$or' alternative") has \(keyCount) attribute keys; "
                    + "at most \(maximumKeysPerLevel) are allowed"
            )
        }

        var keys: [KeyFilter] = []
        keys.reserveCapacity(keyCount)
        var alternatives: [Node] = []
        var seen: Set<String> = []
        for member in members {
            let keyPath = path.map { "\($0).\(member.key)" } ?? member.key
            guard seen.insert(member.key).inserted else {
                throw FilterPolicyError(.duplicateKey, key: keyPath, "appears more than once in the same object")
            }
            if member.key == orKeyword {
                alternatives = try compileOr(member.value, path: keyPath)
            } else if member.key.hasPrefix("$") {
                throw FilterPolicyError(
                    .unsupportedOperator, key: keyPath,
                    "'\(member.key)' is not supported; the only '$' keyword is '$or'"
                )
            } else if member.key.isEmpty {
                throw FilterPolicyError(.invalidKey, key: keyPath, "an attribute name must not be empty")
            } else {
                keys.append(try compileKey(member.key, member.value, path: keyPath))
            }
        }

        // Combinations: the product over keys, times the sum over alternatives (saturating).
        var combinations = 1
        for key in keys {
            combinations = saturatingMultiply(combinations, key.conditionCount)
        }
        if !alternatives.isEmpty {
            var sum = 0
            for alternative in alternatives {
                let (total, overflow) = sum.addingReportingOverflow(alternative.combinations)
                sum = overflow ? Int.max : total
            }
            combinations = saturatingMultiply(combinations, sum)
        }
        return Node(keys: keys, alternatives: alternatives, combinations: combinations)
    }

    private static let orKeyword = "$or"

    private static func saturatingMultiply(_ lhs: Int, _ rhs: Int) -> Int {
        let (product, overflow) = lhs.multipliedReportingOverflow(by: rhs)
        return overflow ? Int.max : product
    }

    private static func compileOr(_ value: PolicyJSON, path: String) throws(FilterPolicyError) -> [Node] {
        guard case .array(let items) = value else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "'$or' must be an array of at least \(minimumOrAlternatives) policy objects, found \(value.kind)"
            )
        }
        guard items.count >= minimumOrAlternatives else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "'$or' must have at least \(minimumOrAlternatives) alternatives, found \(items.count)"
            )
        }
        var nodes: [Node] = []
        nodes.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard case .object(let members) = item else {
                throw FilterPolicyError(
                    .notAnObject, key: itemPath,
                    "a '$or' alternative must be a JSON object, found \(item.kind)"
                )
            }
            nodes.append(try compileNode(members, path: itemPath))
        }
        return nodes
    }

    private static func compileKey(
        _ name: String, _ value: PolicyJSON, path: String
    ) throws(FilterPolicyError) -> KeyFilter {
        guard case .array(let items) = value else {
            if case .object = value {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "value must be an array of conditions, found an object "
                        + "(nested properties apply to message body filtering only)"
                )
            }
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "value must be a non-empty array of conditions, found \(value.kind)"
            )
        }
        guard !items.isEmpty else {
            throw FilterPolicyError(.invalidCondition, key: path, "the array of conditions must not be empty")
        }

        var filter = KeyFilter(name: name)
        filter.conditionCount = items.count
        for item in items {
            switch item {
            case .string(let string):
                filter.exactStrings.insert(string)
            case .number(let text, let number):
                filter.exactNumbers.insert(try finite(number, text, path: path))
            case .bool(let bool):
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "\(bool) is not a valid condition; use a string, a number or an operator object"
                        + " such as {\"exists\": \(bool)}"
                )
            case .null:
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "null is not a valid condition; use a string, a number or an operator object"
                )
            case .array:
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "a nested array is not a valid condition; use a string, a number or an operator object"
                )
            case .object(let members):
                try compileOperator(members, path: path, into: &filter)
            }
        }
        return filter
    }

    private static let supportedOperators = "prefix, suffix, equals-ignore-case, anything-but, numeric, exists"

    private static func compileOperator(
        _ members: [PolicyJSON.Member], path: String, into filter: inout KeyFilter
    ) throws(FilterPolicyError) {
        guard let member = members.first else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "an operator object must have exactly one key, such as {\"prefix\": \"abc\"}; found {}"
            )
        }
        guard members.count == 1 else {
            let names = members.map { "'\($0.key)'" }.joined(separator: ", ")
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "an operator object must have exactly one key; found \(members.count) (\(names))"
            )
        }
        let operand = member.value
        switch member.key {
        case "prefix":
            filter.conditions.append(.prefix(try nonEmptyString(operand, operator: "prefix", path: path)))
        case "suffix":
            filter.conditions.append(.suffix(try nonEmptyString(operand, operator: "suffix", path: path)))
        case "equals-ignore-case":
            guard case .string(let string) = operand else {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "operator 'equals-ignore-case' must be followed by a string, found \(operand.kind)"
                )
            }
            filter.conditions.append(.equalsIgnoreCase(string.lowercased()))
        case "anything-but":
            filter.conditions.append(.anythingBut(try compileAnythingBut(operand, path: path)))
        case "numeric":
            filter.conditions.append(.numeric(try compileNumeric(operand, path: path)))
        case "exists":
            guard case .bool(let exists) = operand else {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "operator 'exists' must be followed by true or false, found \(operand.kind)"
                )
            }
            if exists {
                filter.matchesAnyPresent = true
            } else {
                filter.matchesAbsent = true
            }
        default:
            throw FilterPolicyError(
                .unsupportedOperator, key: path,
                "operator '\(member.key)' is not supported (supported: \(supportedOperators))"
            )
        }
    }

    private static func nonEmptyString(
        _ operand: PolicyJSON, operator name: String, path: String
    ) throws(FilterPolicyError) -> String {
        guard case .string(let string) = operand, !string.isEmpty else {
            let found = if case .string = operand { "an empty string" } else { operand.kind }
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "operator '\(name)' must be followed by a non-empty string, found \(found)"
            )
        }
        return string
    }

    private static func finite(_ number: Double, _ text: String, path: String) throws(FilterPolicyError) -> Double {
        guard number.isFinite else {
            throw FilterPolicyError(.invalidCondition, key: path, "number \(text) is out of range")
        }
        return number
    }

    private static func compileAnythingBut(
        _ operand: PolicyJSON, path: String
    ) throws(FilterPolicyError) -> AnythingBut {
        switch operand {
        case .string(let string):
            return .strings([string])
        case .number(let text, let number):
            return .numbers([try finite(number, text, path: path)])
        case .array(let items):
            guard let first = items.first else {
                throw FilterPolicyError(
                    .invalidCondition, key: path, "operator 'anything-but' must not have an empty array"
                )
            }
            if case .string = first {
                var strings: Set<String> = []
                for item in items {
                    guard case .string(let string) = item else {
                        throw anythingButListError(item, path: path)
                    }
                    strings.insert(string)
                }
                return .strings(strings)
            }
            if case .number = first {
                var numbers: Set<Double> = []
                for item in items {
                    guard case .number(let text, let number) = item else {
                        throw anythingButListError(item, path: path)
                    }
                    numbers.insert(try finite(number, text, path: path))
                }
                return .numbers(numbers)
            }
            throw anythingButListError(first, path: path)
        case .object(let members):
            guard members.count == 1, let member = members.first else {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "operator 'anything-but' takes an object with exactly one key, 'prefix' or 'suffix';"
                        + " found \(members.count) keys"
                )
            }
            switch member.key {
            case "prefix":
                return .prefix(try nonEmptyString(member.value, operator: "anything-but/prefix", path: path))
            case "suffix":
                return .suffix(try nonEmptyString(member.value, operator: "anything-but/suffix", path: path))
            default:
                throw FilterPolicyError(
                    .unsupportedOperator, key: path,
                    "operator 'anything-but' does not support '\(member.key)' (supported: prefix, suffix)"
                )
            }
        case .bool, .null:
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "operator 'anything-but' must be followed by a string, a number, an array of strings or of"
                    + " numbers, or a prefix/suffix object; found \(operand.kind)"
            )
        }
    }

    private static func anythingButListError(_ item: PolicyJSON, path: String) -> FilterPolicyError {
        switch item {
        case .string, .number:
            return FilterPolicyError(
                .invalidCondition, key: path,
                "operator 'anything-but' takes an array of only strings or only numbers, not both"
            )
        default:
            return FilterPolicyError(
                .invalidCondition, key: path,
                "operator 'anything-but' takes an array of only strings or only numbers, found \(item.kind)"
            )
        }
    }

    private enum Comparison: String {
        case equal = "="
        case less = "<"
        case lessOrEqual = "<="
        case greater = ">"
        case greaterOrEqual = ">="

        var isLowerBound: Bool { self == .greater || self == .greaterOrEqual }
        var isUpperBound: Bool { self == .less || self == .lessOrEqual }
        var isInclusive: Bool { self == .equal || self == .lessOrEqual || self == .greaterOrEqual }
    }

    private static func compileNumeric(_ operand: PolicyJSON, path: String) throws(FilterPolicyError) -> NumericRange {
        let usage = "such as [\">\", 0] or [\">=\", 0, \"<\", 100]"
        guard case .array(let items) = operand, !items.isEmpty else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "operator 'numeric' must be followed by a non-empty array \(usage), found \(operand.kind)"
            )
        }
        guard items.count <= 4 else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "numeric expression has \(items.count) elements; at most two comparisons are allowed, \(usage)"
            )
        }

        var terms: [(comparison: Comparison, value: Double, text: String)] = []
        var index = 0
        while index < items.count {
            guard case .string(let symbol) = items[index] else {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "numeric expression expects an operator ('=', '<', '<=', '>', '>=') at position \(index),"
                        + " found \(items[index].kind)"
                )
            }
            guard let comparison = Comparison(rawValue: symbol) else {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "numeric operator '\(symbol)' is not one of '=', '<', '<=', '>', '>='"
                )
            }
            guard index + 1 < items.count, case .number(let text, let number) = items[index + 1] else {
                throw FilterPolicyError(
                    .invalidCondition, key: path,
                    "numeric operator '\(symbol)' must be followed by a number"
                )
            }
            terms.append((comparison, try finite(number, text, path: path), text))
            index += 2
        }

        if terms.count == 1 {
            let term = terms[0]
            let bound = NumericRange.Bound(value: term.value, inclusive: term.comparison.isInclusive)
            switch term.comparison {
            case .equal: return NumericRange(lower: bound, upper: bound)
            case .greater, .greaterOrEqual: return NumericRange(lower: bound, upper: nil)
            case .less, .lessOrEqual: return NumericRange(lower: nil, upper: bound)
            }
        }

        let (lower, upper) = (terms[0], terms[1])
        guard lower.comparison != .equal, upper.comparison != .equal else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "numeric operator '=' cannot be combined with another comparison"
            )
        }
        guard lower.comparison.isLowerBound, upper.comparison.isUpperBound else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "a numeric range must be a lower bound ('>' or '>=') followed by an upper bound ('<' or '<='),"
                    + " found '\(lower.comparison.rawValue)' then '\(upper.comparison.rawValue)'"
            )
        }
        guard lower.value <= upper.value else {
            throw FilterPolicyError(
                .invalidCondition, key: path,
                "numeric range lower bound \(lower.text) is greater than upper bound \(upper.text)"
            )
        }
        return NumericRange(
            lower: .init(value: lower.value, inclusive: lower.comparison.isInclusive),
            upper: .init(value: upper.value, inclusive: upper.comparison.isInclusive)
        )
    }
}

// MARK: - JSON

/// A parsed JSON value. Objects keep their members in order, duplicates included (the compiler rejects
/// duplicate keys, naming their path); numbers keep their literal text for messages.
private enum PolicyJSON {
    typealias Member = (key: String, value: PolicyJSON)

    case object([Member])
    case array([PolicyJSON])
    case string(String)
    /// The literal text and its value (which is infinite when the literal overflows a Double).
    case number(String, Double)
    case bool(Bool)
    case null

    /// The kind of value, for messages: "an object", "a string", "true", …
    var kind: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number(let text, _): return "the number \(text)"
        case .bool(let bool): return "\(bool)"
        case .null: return "null"
        }
    }
}

/// A strict RFC 8259 JSON parser over UTF-8 bytes, bounded by `FilterPolicy.maximumNestingDepth`.
private struct PolicyJSONParser {
    private let bytes: [UInt8]
    private var index = 0
    private var depth = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    mutating func parseDocument() throws(FilterPolicyError) -> PolicyJSON {
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else {
            throw syntaxError("unexpected \(describeCurrent()) after the JSON value")
        }
        return value
    }

    private mutating func parseValue() throws(FilterPolicyError) -> PolicyJSON {
        guard index < bytes.count else {
            throw syntaxError("unexpected end of input, expected a value")
        }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            return try parseObject()
        case UInt8(ascii: "["):
            return try parseArray()
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw syntaxError("unexpected \(describeCurrent()), expected a value")
        }
    }

    private mutating func enterContainer() throws(FilterPolicyError) {
        depth += 1
        guard depth <= FilterPolicy.maximumNestingDepth else {
            throw FilterPolicyError(
                .tooComplex, key: nil,
                "filter policy nests arrays and objects more than \(FilterPolicy.maximumNestingDepth) deep"
            )
        }
        index += 1
        skipWhitespace()
    }

    private mutating func parseObject() throws(FilterPolicyError) -> PolicyJSON {
        try enterContainer()
        defer { depth -= 1 }
        var members: [PolicyJSON.Member] = []
        if consume(UInt8(ascii: "}")) {
            return .object(members)
        }
        while true {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw syntaxError("unexpected \(describeCurrent()), expected a string key")
            }
            let key = try parseString()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else {
                throw syntaxError("unexpected \(describeCurrent()), expected ':'")
            }
            skipWhitespace()
            let value = try parseValue()
            members.append((key, value))
            skipWhitespace()
            if consume(UInt8(ascii: ",")) {
                skipWhitespace()
                continue
            }
            if consume(UInt8(ascii: "}")) {
                return .object(members)
            }
            throw syntaxError("unexpected \(describeCurrent()), expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws(FilterPolicyError) -> PolicyJSON {
        try enterContainer()
        defer { depth -= 1 }
        var items: [PolicyJSON] = []
        if consume(UInt8(ascii: "]")) {
            return .array(items)
        }
        while true {
            items.append(try parseValue())
            skipWhitespace()
            if consume(UInt8(ascii: ",")) {
                skipWhitespace()
                continue
            }
            if consume(UInt8(ascii: "]")) {
                return .array(items)
            }
            throw syntaxError("unexpected \(describeCurrent()), expected ',' or ']'")
        }
    }

    private mutating func parseString() throws(FilterPolicyError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let string = String(decoding: bytes[start..<index], as: UTF8.self)
                index += 1
                return string
            }
            if byte == UInt8(ascii: "\\") {
                break
            }
            guard byte >= 0x20 else {
                throw syntaxError("control character U+\(hex(UInt32(byte))) must be escaped in a string")
            }
            index += 1
        }
        var buffer = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { break }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): buffer.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "/"): buffer.append(UInt8(ascii: "/"))
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"):
                    let scalar = try parseUnicodeEscape()
                    buffer.append(contentsOf: String(Character(scalar)).utf8)
                default:
                    index -= 1
                    throw syntaxError("invalid escape sequence '\\\(describeByte(escape))' in a string")
                }
            default:
                guard byte >= 0x20 else {
                    throw syntaxError("control character U+\(hex(UInt32(byte))) must be escaped in a string")
                }
                buffer.append(byte)
                index += 1
            }
        }
        throw syntaxError("unterminated string")
    }

    /// After `\u`: four hex digits, combining a UTF-16 surrogate pair when one follows.
    private mutating func parseUnicodeEscape() throws(FilterPolicyError) -> Unicode.Scalar {
        let first = try parseHex4()
        if (0xD800...0xDBFF).contains(first) {
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else {
                throw syntaxError("high surrogate \\u\(hex(first)) is not followed by a low surrogate")
            }
            index += 2
            let second = try parseHex4()
            guard (0xDC00...0xDFFF).contains(second) else {
                throw syntaxError("high surrogate \\u\(hex(first)) is not followed by a low surrogate")
            }
            let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            guard let scalar = Unicode.Scalar(combined) else {
                throw syntaxError("invalid surrogate pair in a string")
            }
            return scalar
        }
        guard let scalar = Unicode.Scalar(first) else {
            throw syntaxError("lone low surrogate \\u\(hex(first)) in a string")
        }
        return scalar
    }

    private mutating func parseHex4() throws(FilterPolicyError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard index < bytes.count else {
                throw syntaxError("unexpected end of input in a \\u escape")
            }
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw syntaxError("invalid hex digit \(describeCurrent()) in a \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    private mutating func parseNumber() throws(FilterPolicyError) -> PolicyJSON {
        let start = index
        _ = consume(UInt8(ascii: "-"))
        if consume(UInt8(ascii: "0")) {
            if index < bytes.count, isDigit(bytes[index]) {
                throw syntaxError("leading zeros are not allowed in a number")
            }
        } else {
            guard skipDigits() > 0 else {
                throw syntaxError("unexpected \(describeCurrent()), expected a digit")
            }
        }
        if consume(UInt8(ascii: ".")) {
            guard skipDigits() > 0 else {
                throw syntaxError("unexpected \(describeCurrent()), expected a digit after '.'")
            }
        }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            if !consume(UInt8(ascii: "+")) {
                _ = consume(UInt8(ascii: "-"))
            }
            guard skipDigits() > 0 else {
                throw syntaxError("unexpected \(describeCurrent()), expected a digit in the exponent")
            }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        // The grammar above is a subset of what Double(_:) accepts, so this cannot fail; it may overflow to ±inf.
        guard let value = Double(text) else {
            throw syntaxError("invalid number \(text)")
        }
        return .number(text, value)
    }

    // MARK: Helpers

    private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private mutating func skipDigits() -> Int {
        let start = index
        while index < bytes.count, isDigit(bytes[index]) {
            index += 1
        }
        return index - start
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(FilterPolicyError) {
        let expected = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in expected {
            guard index < bytes.count, bytes[index] == byte else {
                throw syntaxError("unexpected \(describeCurrent()), expected '\(literal)'")
            }
            index += 1
        }
    }

    private func describeByte(_ byte: UInt8) -> String {
        if byte >= 0x21, byte < 0x7F {
            return String(UnicodeScalar(byte))
        }
        return "U+\(hex(UInt32(byte)))"
    }

    private func describeCurrent() -> String {
        guard index < bytes.count else { return "end of input" }
        return "character '\(describeByte(bytes[index]))'"
    }

    private func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// "line L, column C" of the current position (1-based, columns in bytes).
    private func position() -> String {
        var line = 1
        var column = 1
        for byte in bytes[..<min(index, bytes.count)] {
            if byte == 0x0A {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return "line \(line), column \(column)"
    }

    private func syntaxError(_ reason: String) -> FilterPolicyError {
        FilterPolicyError(.invalidJSON, key: nil, "invalid JSON at \(position()): \(reason)")
    }
}
